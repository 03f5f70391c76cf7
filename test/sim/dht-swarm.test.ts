/**
 * The simulator's DHT is the real one: 8 libp2p nodes with the swarm's kad-dht configuration
 * over @libp2p/memory; a provider record put by one node is found by others, through the query
 * walk (hops counted), also after a churn round replaced a quarter of the nodes.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { DhtSwarm, type SimPeer } from '../../web/src/sim/dht-swarm.ts'
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
    // The sim's default connection encrypter is plaintext (no noise handshake per connection).
    expect(new Set(swarm.live.flatMap(p => p.node.getConnections().map(conn => conn.encryption)))).toEqual(new Set(['/plaintext/2.0.0']))
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

  it('a swarm started in several batches is one DHT: every node connected, every lookup found', async () => {
    // Regression: joiners of a new swarm used to bootstrap from their own batch only, so 12 nodes
    // started 4 at a time formed 3 separate DHTs and lookups across them never found anything
    // (they ran to their timeout: the "stalled" queries of the session-6 bench).
    const s = await DhtSwarm.create(12, { model: new NetModel({ seed: 5, minLatencyMs: 1, medianLatencyMs: 2 }), startConcurrency: 4, swarm: 'sim-batches' })
    try {
      expect(s.connectedGroups()).toBe(1)
      for (const p of s.live) expect(routingTableSize(p)).toBeGreaterThan(0)
      // Providers and finders from different start batches (nodes 0–3 started before 4–11).
      for (const [a, b] of [[0, 11], [11, 1], [5, 10]]) {
        const key = `/sim/batch/${a}-${b}`
        expect(await s.provide(s.peers[a], key)).toBe(true)
        const r = await s.findProvider(s.peers[b], key, s.peers[a].id)
        expect(r.found).toBe(true)
        expect(r.hops).toBeLessThanOrEqual(4) // ⌈log2 12⌉
      }
    } finally {
      await s.stop()
    }
  }, 240_000)

  it("encrypter 'noise' runs the swarm's own encrypter and the DHT still answers", async () => {
    const s = await DhtSwarm.create(3, { model: new NetModel({ seed: 4, minLatencyMs: 1, medianLatencyMs: 2 }), encrypter: 'noise', swarm: 'sim-noise' })
    try {
      const [a, b] = s.live
      expect(a.node.getConnections().map(conn => conn.encryption)).toContain('/noise')
      expect(await s.provide(a, '/sim/noise')).toBe(true)
      expect((await s.findProvider(b, '/sim/noise', a.id)).found).toBe(true)
    } finally {
      await s.stop()
    }
  }, 120_000)

  it('the same seed gives the same peer ids and latencies', async () => {
    const m1 = new NetModel({ seed: 9 })
    const m2 = new NetModel({ seed: 9 })
    expect([m1.keySeed(0), m1.latencyMs(), m1.pick(10, 3)]).toEqual([m2.keySeed(0), m2.latencyMs(), m2.pick(10, 3)])
    await expect(DhtSwarm.create(1)).rejects.toThrow(SimConfigError)
    expect(() => new NetModel({ dialLoss: 1 })).toThrow(/dialLoss/)
  })
})

function routingTableSize (p: SimPeer): number {
  return (p.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
}
