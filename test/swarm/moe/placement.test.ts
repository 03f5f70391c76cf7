/** The expert scheduler (web/src/swarm/moe/placement.ts): coverage first, affinity among equals, safe moves. */
import { describe, expect, it } from 'vitest'
import { chooseExperts, clearlyBetter, placementQuality, proposeMove, type Placement } from '../../../web/src/swarm/moe/placement.ts'
import type { Affinity } from '../../../web/src/swarm/moe/summary.ts'
import type { ExpertRecord } from '../../../web/src/swarm/records.ts'
import { SwarmArgumentError } from '../../../web/src/swarm/errors.ts'

const rec = (peer: string, layer: number, experts: number[], extra: Partial<ExpertRecord> = {}): ExpertRecord =>
  ({ peer, model: 'm', layer, experts, throughput: 1, version: 1, expiresAt: Infinity, state: 'online', ...extra })

/** E × E symmetric rates from a list of [i, j, rate]. */
function affinity (E: number, layers: Record<number, Array<[number, number, number]>>): Affinity {
  return new Map(Object.entries(layers).map(([l, pairs]) => {
    const m = new Float64Array(E * E)
    for (const [i, j, r] of pairs) { m[i * E + j] = r; m[j * E + i] = r }
    return [Number(l), m]
  }))
}

const obj = (p: Placement): Record<number, number[]> => Object.fromEntries(p)

describe('chooseExperts', () => {
  it('without records or affinity: one layer filled in id order (coverage only, stays in a layer)', () => {
    expect(obj(chooseExperts({ numExperts: 4, layers: [0, 1], slots: 3, records: [], self: 's' }))).toEqual({ 0: [0, 1, 2] })
  })

  it('coverage first: uncovered experts before covered ones, fewest hosts first', () => {
    const records = [rec('a', 0, [0, 1, 2]), rec('b', 0, [0, 1]), rec('c', 1, [0, 1, 2, 3])]
    // Layer 0: 0,1 have 2 hosts, 2 has 1, 3 none; layer 1 all 1.
    expect(obj(chooseExperts({ numExperts: 4, layers: [0, 1], slots: 2, records, self: 's' }))).toEqual({ 0: [2, 3] })
  })

  it('among equally covered experts, keeps the ones the router picks together', () => {
    const aff = affinity(4, { 0: [[0, 3, 0.4], [1, 2, 0.35], [0, 1, 0.05], [2, 3, 0.05]] })
    const first = chooseExperts({ numExperts: 4, layers: [0], slots: 2, records: [], self: 'p1', affinity: aff })
    expect(obj(first)).toEqual({ 0: [0, 3] })
    const second = chooseExperts({ numExperts: 4, layers: [0], slots: 2, records: [rec('p1', 0, first.get(0)!)], self: 'p2', affinity: aff })
    expect(obj(second)).toEqual({ 0: [1, 2] })
  })

  it('odd counts: the leftover expert comes first, then its best partner among the once-covered', () => {
    const aff = affinity(5, { 0: [[0, 1, 0.3], [2, 3, 0.3], [4, 2, 0.2], [4, 0, 0.05]] })
    const records = [rec('a', 0, [0, 1]), rec('b', 0, [2, 3])]
    expect(obj(chooseExperts({ numExperts: 5, layers: [0], slots: 2, records, self: 's', affinity: aff }))).toEqual({ 0: [2, 4] })
    // The third slot: 3 pairs best with 2, but b already holds {2, 3} together; 0 pairs with 4.
    expect(obj(chooseExperts({ numExperts: 5, layers: [0], slots: 3, records, self: 's', affinity: aff }))).toEqual({ 0: [0, 2, 4] })
  })

  it('ignores withdrawn and own records, counts joining hosts as coverage', () => {
    const records = [rec('gone', 0, [0, 1], { state: 'offline' }), rec('s', 0, [2, 3]), rec('new', 0, [2], { state: 'joining' })]
    expect(obj(chooseExperts({ numExperts: 4, layers: [0], slots: 3, records, self: 's' }))).toEqual({ 0: [0, 1, 3] })
  })

  it('replicas pair experts differently from the copies already held together', () => {
    const aff = affinity(4, { 0: [[0, 1, 0.3], [0, 2, 0.25], [1, 3, 0.25], [2, 3, 0.1]] })
    const records = [rec('a', 0, [0, 1]), rec('b', 0, [2, 3])]
    expect(obj(chooseExperts({ numExperts: 4, layers: [0], slots: 2, records, self: 's', affinity: aff }))).toEqual({ 0: [0, 2] })
  })

  it('lower announced throughput breaks ties', () => {
    const records = [rec('a', 0, [0, 1], { throughput: 100 }), rec('b', 0, [2, 3], { throughput: 5 })]
    expect(obj(chooseExperts({ numExperts: 4, layers: [0], slots: 2, records, self: 's' }))).toEqual({ 0: [2, 3] })
  })

  it('rejects impossible requests with a clear error', () => {
    expect(() => chooseExperts({ numExperts: 4, layers: [0], slots: 5, records: [], self: 's' })).toThrow(SwarmArgumentError)
    expect(() => chooseExperts({ numExperts: 4, layers: [], slots: 1, records: [], self: 's' })).toThrow(/at least one MoE layer/)
    expect(() => chooseExperts({ numExperts: 4, layers: [1, 1], slots: 1, records: [], self: 's' })).toThrow(/distinct/)
    expect(() => chooseExperts({ numExperts: 0, layers: [0], slots: 1, records: [], self: 's' })).toThrow(/numExperts/)
  })
})

describe('placementQuality and moves', () => {
  it('measures uncovered experts, least host count and pairs kept together', () => {
    const aff = affinity(4, { 0: [[0, 1, 0.5], [2, 3, 0.5]] })
    const q = placementQuality([rec('a', 0, [0, 1]), rec('b', 0, [2])], [0], 4, aff)
    expect(q).toEqual({ uncovered: 1, minHosts: 0, togetherShare: 0.5 })
    expect(clearlyBetter({ uncovered: 0, minHosts: 1, togetherShare: 0 }, q)).toBe(true)
    expect(clearlyBetter({ uncovered: 1, minHosts: 0, togetherShare: 0.55 }, q)).toBe(false)
    expect(clearlyBetter({ uncovered: 1, minHosts: 0, togetherShare: 0.65 }, q)).toBe(true)
  })

  const base = { numExperts: 4, layers: [0], slots: 2, model: 'm', throughput: 1 }

  it('two peers that picked the same experts: only the larger id moves, to the uncovered ones', () => {
    const records = [rec('a', 0, [0, 1]), rec('b', 0, [0, 1])]
    const current = new Map([[0, [0, 1]]])
    expect(proposeMove({ ...base, records, self: 'a', current }).move).toBe(false)
    const d = proposeMove({ ...base, records, self: 'b', current })
    expect(d.move).toBe(true)
    expect(obj(d.to!)).toEqual({ 0: [2, 3] })
  })

  it('never drops an expert nobody else (with a smaller id, online) holds', () => {
    // 'b' alone holds 2; 'c' (joining) also lists 3: neither may be dropped by b.
    const records = [rec('a', 0, [0, 1]), rec('b', 0, [2, 3]), rec('c', 0, [3], { state: 'joining' })]
    expect(proposeMove({ ...base, records, self: 'b', current: new Map([[0, [2, 3]]]) }).move).toBe(false)
  })

  it('moves for affinity only when the gain is clear', () => {
    // a holds {0, 1} and {2, 3}'s partner structure is {0, 3} | {1, 2}; b holds {0, 1} too, 2 and 3 are held by c.
    const aff = affinity(4, { 0: [[0, 3, 0.4], [1, 2, 0.4], [0, 1, 0.02]] })
    const records = [rec('a', 0, [0, 1]), rec('b', 0, [0, 1]), rec('c', 0, [2, 3])]
    const d = proposeMove({ ...base, records, self: 'b', current: new Map([[0, [0, 1]]]), affinity: aff })
    // b may drop 0 and 1 (a holds them); {0, 3} or {1, 2} together keeps 0.4 of 0.82 more pairs on one peer.
    expect(d.move).toBe(true)
    expect([[0, 3], [1, 2]].map(x => x.join(','))).toContain(d.to!.get(0)!.join(','))
    expect(proposeMove({ ...base, records, self: 'b', current: new Map([[0, [0, 1]]]), affinity: aff, minAffinityGain: 0.6 }).move).toBe(false)
  })

  it('stale records (withdrawn) do not count as backups', () => {
    const records = [rec('a', 0, [0, 1], { state: 'offline' }), rec('b', 0, [0, 1])]
    expect(proposeMove({ ...base, records, self: 'b', current: new Map([[0, [0, 1]]]) }).move).toBe(false)
  })
})
