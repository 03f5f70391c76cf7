/** Routing under churn with the real planner (web/src/sim/routing.ts): small N, seeded. */
import { describe, expect, it } from 'vitest'
import { RoutingSim } from '../../web/src/sim/routing.ts'

describe('routing under churn (real planRoute)', () => {
  it('every request completes; routes cost at least the global best; a seed replays', () => {
    const a = new RoutingSim({ servers: 60, seed: 4, numBlocks: 16, churnPerRequest: 0.1 }).run(40)
    expect(a.succeeded).toBe(a.requests)
    expect(a.failovers).toBeGreaterThan(0) // churn really hit planned routes
    for (const r of a.ratios) expect(r).toBeGreaterThanOrEqual(1 - 1e-9)
    const b = new RoutingSim({ servers: 60, seed: 4, numBlocks: 16, churnPerRequest: 0.1 }).run(40)
    expect(b).toEqual(a)
  })

  it('without churn the stale directory is the live one: every route is the best', () => {
    const r = new RoutingSim({ servers: 30, seed: 2, numBlocks: 8, churnPerRequest: 0 }).run(10)
    expect(r.failovers).toBe(0)
    for (const x of r.ratios) expect(x).toBeCloseTo(1, 9)
  })
})
