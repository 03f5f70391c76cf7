/**
 * The simulator's DHT is the real one: libp2p nodes with the swarm's kad-dht configuration over
 * an in-process transport (web/src/sim/latency-transport.ts), on virtual time (web/src/sim/virtual-time.ts); a provider record put by one
 * node is found by others through the query walk (hops counted), also after a churn round
 * replaced a quarter of the nodes.
 */
import { describe, expect, it } from 'vitest'
import { DhtSwarm, type SimPeer } from '../../web/src/sim/dht-swarm.ts'
import { SimConfigError, SimStateError } from '../../web/src/sim/errors.ts'
import { NetModel } from '../../web/src/sim/model.ts'
import { withVirtualTime } from '../../web/src/sim/virtual-time.ts'

/** A fresh swarm of `n` on virtual time, stopped after `fn` whether it passed or threw. */
async function withSwarm<T> (n: number, init: Parameters<typeof DhtSwarm.create>[1], fn: (s: DhtSwarm) => Promise<T>): Promise<T> {
  return await withVirtualTime(async () => {
    const s = await DhtSwarm.create(n, init)
    try {
      return await fn(s)
    } finally {
      await s.stop()
    }
  })
}

describe('simulated DHT swarm (real kad-dht over the in-memory transport, virtual time)', () => {
  it('provide then find from other nodes, before and after churn', async () => {
    await withSwarm(8, { model: new NetModel({ seed: 3, minLatencyMs: 1, medianLatencyMs: 2 }) }, async swarm => {
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
    })
  }, 60_000)

  it('16 nodes started in batches are one healthy DHT: every lookup found within ⌈log₂ N⌉ hops', async () => {
    // Regression: joiners of a new swarm used to bootstrap from their own batch only (separate
    // DHTs), and on real time identify and kad's contact pings timed out with CPU lag, leaving
    // connected nodes with empty routing tables.
    await withSwarm(16, { model: new NetModel({ seed: 5, minLatencyMs: 2, medianLatencyMs: 10 }), startConcurrency: 4, swarm: 'sim-batches' }, async s => {
      expect(s.connectedGroups()).toBe(1)
      // Each node's table holds most of the swarm, not a handful of peers.
      for (const p of s.live) expect(routingTableSize(p)).toBeGreaterThanOrEqual(8)
      expect(s.meanRoutingTableSize()).toBeGreaterThanOrEqual(12)
      // Providers and finders from different start batches (nodes 0–3 started before 4–15).
      for (const [a, b] of [[0, 15], [15, 1], [5, 10]]) {
        const key = `/sim/batch/${a}-${b}`
        expect(await s.provide(s.peers[a], key)).toBe(true)
        const r = await s.findProvider(s.peers[b], key, s.peers[a].id)
        expect(r.found).toBe(true)
        expect(r.hops).toBeLessThanOrEqual(4) // ⌈log2 16⌉
      }
    })
  }, 120_000)

  it('a seed replays the same swarm: same routing tables, same lookups, same virtual times', async () => {
    const run = async (): Promise<unknown> => await withVirtualTime(async vt => {
      const model = new NetModel({ seed: 11, minLatencyMs: 2, medianLatencyMs: 10 })
      const s = await DhtSwarm.create(8, { model, startConcurrency: 4, swarm: 'sim-replay' })
      try {
        const tables = s.peers.map(p => routingTableSize(p))
        const lookups = []
        for (let i = 0; i < 2; i++) {
          const [a, b] = model.pick(s.live.length, 2).map(j => s.live[j])
          const provided = await s.provide(a, `/sim/replay/${i}`)
          lookups.push({ provided, ...(await s.findProvider(b, `/sim/replay/${i}`, a.id)), at: vt.elapsedMs() })
        }
        return { tables, lookups, startedAt: vt.elapsedMs() }
      } finally {
        await s.stop()
      }
    })
    const first = await run()
    expect(await run()).toEqual(first)
  }, 120_000)

  it("encrypter 'noise' runs the swarm's own encrypter and the DHT still answers", async () => {
    await withSwarm(3, { model: new NetModel({ seed: 4, minLatencyMs: 1, medianLatencyMs: 2 }), encrypter: 'noise', swarm: 'sim-noise' }, async s => {
      const [a, b] = s.live
      expect(a.node.getConnections().map(conn => conn.encryption)).toContain('/noise')
      expect(await s.provide(a, '/sim/noise')).toBe(true)
      expect((await s.findProvider(b, '/sim/noise', a.id)).found).toBe(true)
    })
  }, 60_000)

  it("transport 'memory' (@libp2p/memory, kept to compare) answers too, and the same provide takes it more network time", async () => {
    // Same seed, same nodes and lookups: only the transport differs. A provide's walk sends bursts
    // of frames on each connection; @libp2p/memory delivers them one latency apart, so the same
    // walk takes more network time than over the pipelined path.
    const timed = async (transport: 'latency' | 'memory'): Promise<{ found: boolean[], ms: number }> => await withSwarm(12, { model: new NetModel({ seed: 6, minLatencyMs: 5, medianLatencyMs: 10 }), transport, swarm: `sim-${transport}` }, async s => {
      const [a, b, c] = s.live
      const t0 = Date.now()
      expect(await s.provide(a, '/sim/transport')).toBe(true)
      const ms = Date.now() - t0
      return { found: [(await s.findProvider(b, '/sim/transport', a.id)).found, (await s.findProvider(c, '/sim/transport', a.id)).found], ms }
    })
    const pipelined = await timed('latency')
    const memory = await timed('memory')
    expect(pipelined.found).toEqual([true, true])
    expect(memory.found).toEqual([true, true])
    expect(pipelined.ms).toBeLessThan(memory.ms)
  }, 60_000)

  it('a slow uplink (the latency transport\'s bandwidth) makes the same provide take longer, and it still answers', async () => {
    const timed = async (uplinkBytesPerS?: number): Promise<{ found: boolean, ms: number }> => await withSwarm(10, { model: new NetModel({ seed: 8, minLatencyMs: 5, medianLatencyMs: 10 }), uplinkBytesPerS, swarm: 'sim-uplink' }, async s => {
      const [a, b] = s.live
      const t0 = Date.now()
      expect(await s.provide(a, '/sim/uplink')).toBe(true)
      return { ms: Date.now() - t0, found: (await s.findProvider(b, '/sim/uplink', a.id)).found }
    })
    const fast = await timed()
    const slow = await timed(20_000)
    expect(fast.found && slow.found).toBe(true)
    expect(slow.ms).toBeGreaterThan(fast.ms)
  }, 60_000)

  it('bad input and real time are refused with a clear error; the seed gives the same ids and latencies', async () => {
    const m1 = new NetModel({ seed: 9 })
    const m2 = new NetModel({ seed: 9 })
    expect([m1.keySeed(0), m1.latencyMs(), m1.pick(10, 3)]).toEqual([m2.keySeed(0), m2.latencyMs(), m2.pick(10, 3)])
    await expect(withVirtualTime(async () => await DhtSwarm.create(1))).rejects.toThrow(SimConfigError)
    await expect(withVirtualTime(async () => await DhtSwarm.create(4, { uplinkBytesPerS: 0 }))).rejects.toThrow(/uplinkBytesPerS 0 must be > 0/)
    await expect(withVirtualTime(async () => await DhtSwarm.create(4, { transport: 'memory', uplinkBytesPerS: 1e6 }))).rejects.toThrow(/needs transport 'latency'/)
    await expect(DhtSwarm.create(4)).rejects.toThrow(SimStateError)
    await expect(DhtSwarm.create(4)).rejects.toThrow(/virtual time/)
    expect(() => new NetModel({ dialLoss: 1 })).toThrow(/dialLoss/)
  })
})

function routingTableSize (p: SimPeer): number {
  return (p.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
}
