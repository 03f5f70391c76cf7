import { describe, expect, it } from 'vitest'
import type { PeerEntry } from '../../web/src/net/crdt/entries.ts'
import { blocksText, blockThroughputText, expertCoverage, modelCoverage, parseHosted, roleText, servingRole } from '../../web/src/ui/swarm-summary.ts'

const entry = (peer: string, data: Record<string, unknown>): PeerEntry => ({ peer, seq: 1, expiresAt: Date.now() + 60_000, data })
const serving = (peer: string, model: string, start: number, end: number, extra: Record<string, unknown> = {}): PeerEntry =>
  entry(peer, { serving: { model, start, end, state: 'online', throughput: 2.5, ...extra } })

describe('swarm map summary', () => {
  it('counts servers per block and finds the gaps (a known model nobody serves is one gap)', () => {
    const cov = modelCoverage([
      serving('a', 'm', 0, 2, { blocks: 6 }),
      serving('b', 'm', 1, 3),
      serving('c', 'm', 4, 5, { state: 'joining' }),
      serving('d', 'm', 5, 6, { state: 'offline' })
    ], new Map([['other', 3]]))
    expect(cov.map(c => c.model)).toEqual(['m', 'other'])
    const [m, other] = cov
    expect(m.numBlocks).toBe(6)
    expect(m.blocks.map(b => b.servers.length)).toEqual([1, 2, 1, 0, 0, 0])
    expect(m.blocks[1].servers).toEqual([{ peer: 'a', throughput: 2.5 }, { peer: 'b', throughput: 2.5 }])
    expect(m.blocks[4].joining).toEqual(['c'])
    expect(m.gaps).toEqual([{ start: 3, end: 6 }])
    expect(m.peers).toBe(3)
    expect(other.gaps).toEqual([{ start: 0, end: 3 }])
  })

  it('ignores malformed roles from peers instead of breaking the map', () => {
    for (const bad of [{ model: 'm', start: 2, end: 1 }, { model: 'm', start: -1, end: 1 }, { model: 5, start: 0, end: 1 }, { model: 'm', start: 0, end: 1e9 }, 'x', null]) {
      expect(servingRole(entry('p', { serving: bad }))).toBeUndefined()
    }
    expect(servingRole(serving('p', 'm', 0, 2, { throughput: Number.NaN }))?.throughput).toBe(0)
    // A `blocks` smaller than the span's end is ignored (the span's end is the depth seen).
    expect(servingRole(serving('p', 'm', 0, 4, { blocks: 2 }))?.blocks).toBeUndefined()
    expect(modelCoverage([entry('p', { serving: { model: 'm', start: 'x' } })])).toEqual([])
  })

  it('parses expert placements and builds per-layer expert coverage from online hosts', () => {
    expect([...parseHosted('0:1,2;1:3;bad;2:')]).toEqual([[0, [1, 2]], [1, [3]]])
    const cov = expertCoverage([
      entry('a', { experts: { model: 'moe', hosted: '0:0,1;1:0', state: 'online', throughput: 1 } }),
      entry('b', { experts: { model: 'moe', hosted: '0:1', state: 'online' } }),
      entry('c', { experts: { model: 'moe', hosted: '0:2', state: 'joining' } })
    ])
    expect(cov).toHaveLength(1)
    expect(cov[0].layers.get(0)).toEqual(new Map([[0, ['a']], [1, ['a', 'b']]]))
    expect(cov[0].layers.get(1)).toEqual(new Map([[0, ['a']]]))
  })

  it('an entry without a throughput reads as not measured, never as a number (writers leave it out until a step was timed)', () => {
    const unmeasured = entry('u', { serving: { model: 'm', start: 0, end: 2, state: 'online' } })
    expect(servingRole(unmeasured)?.throughput).toBeUndefined()
    expect(roleText(unmeasured)).toBe('serves m blocks 0–1 · throughput not measured yet')
    const [m] = modelCoverage([unmeasured, serving('a', 'm', 1, 2)])
    expect(blockThroughputText(m.blocks[0].servers)).toBe('not measured')
    // A block with a measured server shows the measured sum only.
    expect(blockThroughputText(m.blocks[1].servers)).toBe('2.5 tok/s')
    expect(blockThroughputText([{ throughput: 6 }, { throughput: 7 }])).toBe('13 tok/s')
    // A loading server is not expected to have a speed: nothing said.
    expect(roleText(entry('j', { serving: { model: 'm', start: 0, end: 2, state: 'joining' } }))).toBe('joining m blocks 0–1')
  })

  it('words a span one way: "blocks A–B" inclusive, "block A" for one (never "blocks 1–1")', () => {
    expect(blocksText(0, 3)).toBe('blocks 0–2')
    expect(blocksText(1, 2)).toBe('block 1')
    expect(roleText(serving('a', 'tiny-mixtral', 1, 2))).toBe('serves tiny-mixtral block 1 · 2.5 tok/s')
  })

  it('describes roles in words', () => {
    expect(roleText(serving('a', 'm', 0, 2))).toBe('serves m blocks 0–1 · 2.5 tok/s')
    expect(roleText(entry('b', {}))).toBe('idle')
    expect(roleText(entry('c', { training: 'page' }))).toBe('trains page')
    expect(roleText(entry('d', { chatting: 'm', training: 'r' }))).toBe('trains r; chats with m')
  })
})
