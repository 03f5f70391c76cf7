/**
 * A peer flooding the swarm doc over the real transport (libp2p gossipsub through a relay, issue
 * #13 item 3): the relay's per-peer token bucket (on a ManualClock that never refills, so the
 * count does not depend on the machine's speed) lets the flooder's first burst through and drops
 * the rest unforwarded, counted; two honest peers' updates all reach the relay and each other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CrdtSync, SwarmDoc } from '../../web/src/net/crdt/index.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'
import { crdtTopic } from '../../web/src/net/protocols.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { startSwarm, until, untilMeshed, type TestSwarm } from './peers-harness.ts'

const SWARM = 'default'
const BURST = 30
const FLOOD = 120

describe('a CRDT flood over gossip', () => {
  let s: TestSwarm
  let syncs: CrdtSync[]
  let docs: SwarmDoc[]
  let relayDoc: SwarmDoc
  let relaySync: CrdtSync

  beforeAll(async () => {
    s = await startSwarm(3, { connect: false })
    relayDoc = new SwarmDoc(SWARM, s.relay.peerId.toString(), undefined, undefined, { powBits: 0 })
    relaySync = new CrdtSync(s.relay as unknown as WebSwarmNode, relayDoc, { log: () => {}, antiEntropyIntervalMs: 0, clock: new ManualClock(), limits: { messageBurst: BURST } })
    await relaySync.start()
    docs = s.peers.map((p, i) => new SwarmDoc(SWARM, p.peerId.toString(), s.keys[i], undefined, { powBits: 0 }))
    syncs = s.peers.map((p, i) => new CrdtSync(p, docs[i], { log: () => {}, antiEntropyIntervalMs: 0 }))
    for (const x of syncs) await x.start()
    await Promise.all(s.peers.map(async p => { await p.dial(s.relay.getMultiaddrs()[0]) }))
    // Anti-entropy is off here (it would deliver a message gossip missed): wait for the meshes.
    await untilMeshed(s, crdtTopic(SWARM))
  }, 60_000)
  afterAll(async () => {
    for (const x of syncs ?? []) await x.stop()
    await relaySync?.stop()
    await s?.stop()
  })

  it('the flooder is cut at its burst and counted; honest updates all land everywhere', async () => {
    const [a, b, flooder] = docs
    for (let i = 0; i < FLOOD; i++) flooder.map('spam').set(`k${i}`, i) // one gossip message each
    for (let i = 0; i < 3; i++) { a.map('models').set(`a${i}`, i); b.map('models').set(`b${i}`, i) }
    await until('honest updates at the relay', () => ['a0', 'a1', 'a2', 'b0', 'b1', 'b2'].every(k => relayDoc.map('models').has(k)), 20_000)
    await until('honest updates at the other honest peer', () => ['a0', 'a1', 'a2'].every(k => b.map('models').has(k)) && ['b0', 'b1', 'b2'].every(k => a.map('models').has(k)), 20_000)
    await until('the flood to be refused', () => relaySync.stats.rateLimited >= FLOOD - BURST, 20_000)
    const spam = relayDoc.map('spam').size
    expect(spam).toBeLessThanOrEqual(BURST)
    expect(spam).toBeGreaterThan(0)
    // what the relay dropped it did not forward: the honest peers hold no more than it does
    expect(a.map('spam').size).toBeLessThanOrEqual(spam)
    expect(relaySync.stats.rateLimited).toBeGreaterThanOrEqual(FLOOD - BURST)
  }, 60_000)
})
