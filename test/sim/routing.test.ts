/**
 * Routing under churn: the planner alone (web/src/sim/routing.ts) and the real client/server
 * stack in virtual time (web/src/sim/inference-routing.ts): small N, seeded.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { InferenceRoutingSim } from '../../web/src/sim/inference-routing.ts'
import { RoutingSim } from '../../web/src/sim/routing.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { hasErrorCode } from '../../web/src/util/errors.ts'

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

describe('inference routing under churn (real client, block servers, tiny model; virtual time)', () => {
  const sims: InferenceRoutingSim[] = []
  const sim = (init: ConstructorParameters<typeof InferenceRoutingSim>[0]): InferenceRoutingSim => {
    const s = new InferenceRoutingSim(init)
    sims.push(s)
    return s
  }
  afterEach(() => { for (const s of sims.splice(0)) s.stop() })

  it('completions through churn equal the local reference; departed route servers are failed over; a seed replays the figures', async () => {
    const init = { servers: 40, seed: 3, numBlocks: 8, churnPerRequest: 0.15, churnPerMinute: 3, newTokens: 8 }
    const a = await sim(init).run(4)
    expect(a.errors).toEqual([])
    expect(a.succeeded).toBe(a.requests)
    // Churn really hit: servers on a route left mid-completion, the client found them gone and failed over.
    expect(a.killedOnRoute).toBeGreaterThan(0)
    expect(a.requestsToGone).toBeGreaterThan(0)
    expect(a.failovers).toBeGreaterThan(0)
    for (const r of a.ratios) expect(r).toBeGreaterThanOrEqual(1 - 1e-9)
    expect(await sim(init).run(4)).toEqual(a)
  })

  it('without churn every decode step takes exactly the best route\'s cost, and the client measured the true RTTs', async () => {
    const s = sim({ servers: 30, seed: 2, numBlocks: 8, churnPerRequest: 0, churnPerMinute: 0, newTokens: 6 })
    const r = await s.run(3)
    expect(r.succeeded).toBe(3)
    expect(r.failovers).toBe(0)
    expect(r.ratios).toHaveLength(3)
    for (const x of r.ratios) expect(x).toBeCloseTo(1, 9)
    // RTTs timed on the sim's clock (InferenceClient `clock`) over per-link latency (MemoryNetwork `linkLatencyMs`).
    expect(s.client.rttMs.size).toBe(30)
    for (const [peer, ms] of s.client.rttMs) expect(ms).toBe(s.rttMs.get(peer))
  })

  it('a route server killed mid-completion: the client fails over, same tokens, and the step costs more than the best route', async () => {
    const s = sim({ servers: 30, seed: 3, numBlocks: 8, churnPerRequest: 0, churnPerMinute: 0, newTokens: 8 })
    const c = await s.complete({ killRouteAt: { token: 4, hop: 0 } })
    expect(c.error).toBeUndefined()
    expect(c.ok).toBe(true)
    expect(c.killedOnRoute).toBe(1)
    expect(c.failovers).toBe(1)
    expect(c.ratio).toBeGreaterThan(1) // the replacement's replay is paid in the decode step
  })

  it('a bad config is refused, naming the option', () => {
    const refused = (f: () => unknown, what: string): void => {
      let err: unknown
      try { f() } catch (e) { err = e }
      expect(hasErrorCode(err, 'sim.config'), String(err)).toBe(true)
      expect((err as Error).message).toContain(what)
    }
    refused(() => new InferenceRoutingSim({ servers: 0 }), 'servers')
    refused(() => new InferenceRoutingSim({ servers: 10, churnPerRequest: 1 }), 'churnPerRequest')
    refused(() => new InferenceRoutingSim({ servers: 10, churnPerMinute: -1 }), 'churnPerMinute')
    refused(() => new InferenceRoutingSim({ servers: 10, newTokens: 1 }), 'newTokens')
    refused(() => new InferenceRoutingSim({ servers: 10, numBlocks: 2.5 }), 'numBlocks')
  })

  it('the memory network refuses a link latency that is not a finite number of ms ≥ 0', async () => {
    const net = new MemoryNetwork({ linkLatencyMs: (a, b) => a === 'x' || b === 'x' ? -1 : 0 })
    net.endpoint('x').handle('/p', async () => ({ tensors: [] }))
    await expect(net.endpoint('z').request('x', '/p', { tensors: [] }, { timeoutMs: 1000 })).rejects.toThrow(/link latency z → x must be a finite number of ms ≥ 0, got -1/)
  })
})
