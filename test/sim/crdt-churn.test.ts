/**
 * Bounded swarm state under churn, through the real SwarmDoc (web/src/sim/crdt-churn.ts):
 * departed peers' entries leave every replica once expired, what a departed peer leaves behind
 * is a small Yjs tombstone (not its entry), a joiner downloads the hub's state, and a seed
 * replays the same figures.
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { CrdtChurnSim } from '../../web/src/sim/crdt-churn.ts'
import { SimConfigError } from '../../web/src/sim/errors.ts'

/** Bytes a departed peer may leave in the doc: its Yjs client, its key (a 52-char peer id) and a deleted-range record. */
const TOMBSTONE_BYTES_MAX = 100

async function run (seed: number, observers: number, rounds: number): Promise<{ sim: CrdtChurnSim, rows: Awaited<ReturnType<CrdtChurnSim['step']>>[] }> {
  const sim = new CrdtChurnSim({ livePeers: 20, seed, observers, churnPerRound: 0.2 })
  await sim.join(20)
  const rows = []
  for (let r = 0; r < rounds; r++) rows.push(await sim.step())
  return { sim, rows }
}

describe('swarm doc under churn', () => {
  it('removes departed entries from every replica; each departed peer leaves < 100 B', async () => {
    const { sim, rows } = await run(5, 2, 10)
    const last = rows[rows.length - 1]
    expect(last.live).toBe(20)
    expect(last.everJoined).toBe(20 + 10 * 4)
    expect(last.staleHeld).toBe(0)
    // Live entries plus the departed ones still inside TTL + skew (≤ 3 rounds of 4 leavers).
    expect(last.hubEntries).toBeLessThanOrEqual(20 + 3 * 4)
    // From round 4 on the map holds a steady set; the doc grows only by the leavers' tombstones.
    const grown = last.hubBytes - rows[3].hubBytes
    const leftSince = (last.round - rows[3].round) * 4
    expect(grown / leftSince).toBeLessThan(TOMBSTONE_BYTES_MAX)
    const join = await sim.joinSync()
    expect(join.bytes).toBe(last.hubBytes)
    expect(join.entries).toBeGreaterThanOrEqual(20)
    expect(join.entries).toBeLessThanOrEqual(last.hubEntries)
  }, 120_000)

  it('without a sweep the departed entries stay (the figure above is the sweep\'s doing)', async () => {
    const { rows } = await run(5, 0, 6)
    const last = rows[rows.length - 1]
    expect(last.staleHeld).toBeGreaterThan(0)
    expect(last.hubEntries).toBe(last.everJoined)
  }, 120_000)

  it('replays the same figures for a seed', async () => {
    const a = await run(11, 1, 3)
    const b = await run(11, 1, 3)
    expect(b.rows).toEqual(a.rows)
  }, 120_000)

  it('merging a round\'s writes into one hub update ends in the same doc as applying each', async () => {
    const states: Uint8Array[] = []
    for (const hubMerge of ['round', 'each'] as const) {
      const sim = new CrdtChurnSim({ livePeers: 12, seed: 4, observers: 1, churnPerRound: 0.25, hubMerge })
      await sim.join(12)
      for (let r = 0; r < 4; r++) await sim.step()
      expect(sim.hub.peersMap.size).toBeGreaterThanOrEqual(12)
      states.push(Y.encodeStateAsUpdate(sim.hub.doc))
    }
    expect(states[0]).toEqual(states[1])
  }, 120_000)

  it('with doc generations the hub\'s bytes stay bounded by the live peers, where without them they grow with every departure', async () => {
    const rows: Record<string, Awaited<ReturnType<CrdtChurnSim['step']>>> = {}
    for (const generations of [false, { minHistoryBytes: 2048 }] as const) {
      const sim = new CrdtChurnSim({ livePeers: 20, seed: 8, observers: 1, churnPerRound: 0.2, generations })
      await sim.join(20)
      let last
      for (let r = 0; r < 24; r++) last = await sim.step()
      rows[generations === false ? 'off' : 'on'] = last!
      const live = await sim.hub.peers()
      if (generations !== false) {
        // Every live writer's entry survived every rotation (each writer re-seeded and refreshed).
        expect(live.size).toBeGreaterThanOrEqual(20)
        expect((await sim.joinSync()).entries).toBeGreaterThanOrEqual(20)
      }
    }
    const { off, on } = rows
    expect(on.rotations).toBeGreaterThanOrEqual(2)
    expect(off.rotations).toBe(0)
    expect(on.staleHeld).toBe(0)
    // 24 rounds × 4 leavers × ~77 B of history without generations; with them, at most the
    // history since the last rotation (≤ minHistoryBytes, the policy's trigger, + one round).
    expect(off.hubBytes - on.hubBytes).toBeGreaterThan(24 * 4 * 40)
    expect(on.bytesPerLivePeer).toBeLessThan(off.bytesPerLivePeer)
  }, 120_000)

  it('refuses a bad configuration by name', () => {
    expect(() => new CrdtChurnSim({ livePeers: 0 })).toThrow(SimConfigError)
    expect(() => new CrdtChurnSim({ livePeers: 5, churnPerRound: 2 })).toThrow(/churnPerRound/)
  })
})

describe('CrdtSync.prune (the sweep every peer runs)', () => {
  it('deletes expired entries of its doc and counts them', async () => {
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const { SwarmDoc } = await import('../../web/src/net/crdt/swarm-doc.ts')
    const { CrdtSync } = await import('../../web/src/net/crdt/sync.ts')
    let now = Date.UTC(2026, 0, 1)
    const key = await generateKeyPair('Ed25519')
    const doc = new SwarmDoc('sim', peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: 0, now: () => now })
    await doc.setSelf({ a: 1 }, 60_000)
    // prune() touches only the doc; the node is needed by start(), which this test does not call.
    const sync = new CrdtSync({} as ConstructorParameters<typeof CrdtSync>[0], doc, { log: () => {} })
    expect(sync.prune()).toBe(0)
    now += 60_000 + 31_000
    expect(sync.prune()).toBe(1)
    expect(doc.peersMap.size).toBe(0)
    expect(sync.stats.pruned).toBe(1)
  })
})
