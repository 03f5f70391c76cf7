/**
 * The simulator's DHT is the real one: 8 libp2p nodes with the swarm's kad-dht configuration
 * over @libp2p/memory; a provider record put by one node is found by others, through the query
 * walk (hops counted), also after a churn round replaced a quarter of the nodes.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { DhtSwarm } from '../../web/src/sim/dht-swarm.ts'
import { SimConfigError } from '../../web/src/sim/errors.ts'
import { NetModel } from '../../web/src/sim/model.ts'

describe('simulated DHT swarm (real kad-dht over the in-memory transport)', () => {
  let swarm: DhtSwarm | undefined
  afterAll(async () => { await swarm?.stop() })

  it('provide then find from other nodes, before and after churn', async () => {
    swarm = await DhtSwarm.create(8, { model: new NetModel({ seed: 3, minLatencyMs: 1, medianLatencyMs: 2 }) })
    const ids = new Set(swarm.live.map(p => p.id))
    expect(ids.size).toBe(8)
    const [a, b, c] = swarm.live
    expect(await swarm.provide(a, '/sim/key-1')).toBe(true)
    for (const finder of [b, c]) {
      const r = await swarm.findProvider(finder, '/sim/key-1', a.id)
      expect(r.found).toBe(true)
      expect(r.hops).toBeLessThanOrEqual(3) // ⌈log2 8⌉
    }
    const { left, joined } = await swarm.churn(0.25)
    expect(left.length).toBe(2)
    expect(joined.length).toBe(2)
    expect(swarm.live.length).toBe(8)
    const provider = swarm.live.find(p => !joined.includes(p))!
    expect(await swarm.provide(provider, '/sim/key-2')).toBe(true)
    const r = await swarm.findProvider(joined[0], '/sim/key-2', provider.id)
    expect(r.found).toBe(true)
  }, 240_000)

  it('the same seed gives the same peer ids and latencies', async () => {
    const m1 = new NetModel({ seed: 9 })
    const m2 = new NetModel({ seed: 9 })
    expect([m1.keySeed(0), m1.latencyMs(), m1.pick(10, 3)]).toEqual([m2.keySeed(0), m2.latencyMs(), m2.pick(10, 3)])
    await expect(DhtSwarm.create(1)).rejects.toThrow(SimConfigError)
    expect(() => new NetModel({ dialLoss: 1 })).toThrow(/dialLoss/)
  })
})
