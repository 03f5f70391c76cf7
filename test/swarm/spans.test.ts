import { describe, expect, it } from 'vitest'
import { Rng } from '../../web/src/util/rng.ts'
import { blockThroughputs, chooseBestStart, chooseSpan, shouldRebalance, type Span } from '../../web/src/swarm/spans.ts'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'

describe('span selection (Petals block_selection)', () => {
  it('sums announced throughput per block', () => {
    const t = blockThroughputs([{ peer: 'a', start: 0, end: 2, throughput: 3 }, { peer: 'b', start: 1, end: 4, throughput: 1 }], 4)
    expect(Array.from(t)).toEqual([3, 4, 1, 1])
  })

  it('joins the window holding the least-served blocks', () => {
    expect(chooseBestStart([5, 5, 0, 0, 5, 5], 2)).toBe(2)
    // Uncovered block 5 wins over block 0 that has some throughput.
    expect(chooseBestStart([1, 3, 3, 3, 3, 0], 2)).toBe(4)
    // Equal minima: the next-least-served block breaks the tie (lowest total among them).
    expect(chooseBestStart([0, 9, 9, 0, 1, 9], 2)).toBe(3)
    expect(chooseSpan([], 6, 2)).toEqual({ start: 0, end: 2 })
    expect(chooseSpan([{ peer: 'a', start: 0, end: 2, throughput: 1 }], 6, 2)).toEqual({ start: 2, end: 4 })
    expect(() => chooseBestStart([1, 2], 3)).toThrow(SwarmArgumentError)
  })

  it('three servers joining one after another cover a 6-block model', () => {
    const spans: Span[] = []
    for (const peer of ['a', 'b', 'c']) {
      const s = chooseSpan(spans, 6, 2)
      spans.push({ peer, ...s, throughput: 1 })
    }
    expect(Math.min(...blockThroughputs(spans, 6))).toBe(1)
  })
})

describe('rebalancing (Petals should_choose_other_blocks)', () => {
  it('moves a redundant server onto an under-served span', () => {
    // a and b both hold [0, 2); c holds [2, 4) alone, slowly: min is c's 0.1.
    const spans: Span[] = [
      { peer: 'a', start: 0, end: 2, throughput: 1 },
      { peer: 'b', start: 0, end: 2, throughput: 1 },
      { peer: 'c', start: 2, end: 4, throughput: 0.1 }
    ]
    const d = shouldRebalance('b', spans, 4)
    expect(d.move).toBe(true)
    expect(d.start).toBe(2)
    expect(d.minBefore).toBeCloseTo(0.1)
    expect(d.minAfter).toBeCloseTo(1)
  })

  it('never leaves a block uncovered, and stays when the gain is below the quality threshold', () => {
    const alone: Span[] = [{ peer: 'a', start: 0, end: 2, throughput: 1 }, { peer: 'b', start: 2, end: 4, throughput: 5 }]
    const d1 = shouldRebalance('a', alone, 4)
    expect(d1.move).toBe(false)
    expect(d1.reason).toMatch(/uncovered/)
    // Gain 0.8 → 0.9 is 89%, above 75%: stay.
    const small: Span[] = [
      { peer: 'a', start: 0, end: 2, throughput: 1 },
      { peer: 'b', start: 0, end: 2, throughput: 0.1 },
      { peer: 'c', start: 2, end: 4, throughput: 0.8 }
    ]
    const d2 = shouldRebalance('b', small, 4)
    expect(d2.move).toBe(false)
    expect(d2.quality).toBeGreaterThan(0.75)
    expect(shouldRebalance('b', small, 4, { balanceQuality: 0.95 }).move).toBe(true)
  })

  it('seeded swarms: servers that follow the rule keep every block covered and never lower the minimum', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rng = new Rng(seed)
      const blocks = 4 + rng.int(8)
      const spans: Span[] = []
      const n = 2 + rng.int(6)
      for (let i = 0; i < n; i++) {
        const len = 1 + rng.int(blocks)
        // Random (bad) initial placement.
        const start = rng.int(blocks - len + 1)
        spans.push({ peer: `p${i}`, start, end: start + len, throughput: 0.1 + rng.next() * 5 })
      }
      for (let round = 0; round < 10; round++) {
        const peer = spans[rng.int(spans.length)].peer
        const before = blockThroughputs(spans, blocks)
        const d = shouldRebalance(peer, spans, blocks, { seed: round })
        if (!d.move) continue
        const s = spans.find(x => x.peer === peer)!
        const len = s.end - s.start
        s.start = d.start
        s.end = d.start + len
        const after = blockThroughputs(spans, blocks)
        // The mover alone may not lower coverage of a block to zero that had coverage.
        for (let b = 0; b < blocks; b++) if (before[b] > 0) expect(after[b], `seed ${seed} block ${b}`).toBeGreaterThan(0)
      }
    }
  })
})
