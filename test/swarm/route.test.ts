import { describe, expect, it } from 'vitest'
import { planRoute, routeCostMs } from '../../web/src/swarm/route.ts'
import { NoRouteError } from '../../web/src/swarm/errors.ts'
import type { BlockRecord } from '../../web/src/swarm/records.ts'

function rec (peer: string, start: number, end: number, extra: Partial<BlockRecord> = {}): BlockRecord {
  return { peer, model: 'm', start, end, state: 'online', throughput: 100, cacheTokensLeft: 1000, version: 1, expiresAt: Infinity, ...extra }
}

describe('min-latency route planning', () => {
  it('covers all blocks with the fewest hops when servers are alike', () => {
    const r = planRoute([rec('a', 0, 2), rec('b', 2, 4), rec('c', 0, 4)], 0, 4)
    expect(r).toEqual([{ peer: 'c', start: 0, end: 4 }])
  })

  it('trades hops against RTT and throughput', () => {
    const records = [rec('a', 0, 2), rec('b', 2, 4), rec('c', 0, 4, { throughput: 10 })]
    // c is slow: 4 blocks × 100 ms beats two 1 ms hops? No: a + b cost 2×(rtt+1) + 4×10 ms.
    const rtt = new Map([['a', 5], ['b', 5], ['c', 5]])
    expect(planRoute(records, 0, 4, { rttMs: rtt }).map(s => s.peer)).toEqual(['a', 'b'])
    // A far-away b: a's fast blocks then c's slow ones (6 + 20 + 6 + 200 ms) beat c alone (406 ms) and a → b (1032 ms).
    const far = new Map([['a', 5], ['b', 1000], ['c', 5]])
    expect(planRoute(records, 0, 4, { rttMs: far })).toEqual([{ peer: 'a', start: 0, end: 2 }, { peer: 'c', start: 2, end: 4 }])
    expect(planRoute(records, 0, 4, { rttMs: far, exclude: new Set(['a']) }).map(s => s.peer)).toEqual(['c'])
    expect(routeCostMs([{ peer: 'c', start: 0, end: 4 }], records, far)).toBeCloseTo(5 + 1 + 400)
  })

  it('skips banned, offline and cache-full servers, and plans sub-ranges', () => {
    const records = [rec('a', 0, 4), rec('b', 0, 4, { state: 'joining' }), rec('c', 0, 4, { cacheTokensLeft: 3 }), rec('d', 0, 2), rec('e', 2, 4)]
    expect(planRoute(records, 0, 4, { exclude: new Set(['a']), cacheTokens: 10 }).map(s => s.peer)).toEqual(['d', 'e'])
    expect(planRoute(records, 1, 3, { exclude: p => p === 'a', cacheTokens: 10 })).toEqual([{ peer: 'd', start: 1, end: 2 }, { peer: 'e', start: 2, end: 3 }])
    expect(planRoute(records, 2, 4, { cacheTokens: 3, exclude: new Set(['a', 'e']) })).toEqual([{ peer: 'c', start: 2, end: 4 }])
  })

  it('names the first block nobody can serve', () => {
    expect(() => planRoute([rec('a', 0, 2), rec('b', 3, 4)], 0, 4)).toThrow(NoRouteError)
    expect(() => planRoute([rec('a', 0, 2), rec('b', 3, 4)], 0, 4)).toThrow(/block 2/)
  })
})
