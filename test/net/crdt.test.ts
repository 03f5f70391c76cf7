import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import * as Y from 'yjs'
import { CrdtSync, GOSSIP_UPDATE, SwarmDoc, encodeSyncFrame, SYNC_STEP1, signEntry } from '../../web/src/net/crdt/index.ts'
import { ForgedEntryError, MalformedMessageError } from '../../web/src/net/errors.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'
import { CRDT_SYNC, crdtTopic } from '../../web/src/net/protocols.ts'
import { startSwarm, until, untilMeshed, type TestSwarm } from './peers-harness.ts'

const SWARM = 'default'

async function docFor (key: PrivateKey): Promise<SwarmDoc> {
  return new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key)
}

/** Canonical doc content (sorted keys: Y.Map iteration order differs between replicas). */
function stateOf (d: SwarmDoc): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon)
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map(k => [k, canon((v as Record<string, unknown>)[k])]))
    return v
  }
  // Root types appear in toJSON() only once instantiated on this replica.
  d.map('models'); void d.peersMap
  return JSON.stringify(canon(d.doc.toJSON()))
}

describe('SwarmDoc: signed peers map', () => {
  it('accepts the owner\'s entries and ignores forged, replayed and deleting updates', async () => {
    const [ka, kb, kc] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const a = await docFor(ka); const b = await docFor(kb); const attacker = await docFor(kc)
    await a.setSelf({ gflops: 1 })
    const firstA = Y.encodeStateAsUpdate(a.doc)
    expect(await b.applyRemote(firstA)).toBe('applied')
    await a.setSelf({ gflops: 2 })
    expect(await b.applyRemote(Y.encodeStateAsUpdate(a.doc, Y.encodeStateVector(b.doc)))).toBe('applied')
    expect((await b.peers()).get(a.selfId)?.data).toEqual({ gflops: 2 })
    const before = stateOf(b)

    // 1. Forged: the attacker writes peers[A] signed with its own key.
    Y.applyUpdate(attacker.doc, Y.encodeStateAsUpdate(b.doc))
    const sv = Y.encodeStateVector(attacker.doc)
    const forged = await signEntry(kc, SWARM, { peer: a.selfId, seq: 99, expiresAt: Date.now() + 60_000, data: { gflops: 1e9 } })
    attacker.peersMap.set(a.selfId, forged)
    await expect(b.applyRemote(Y.encodeStateAsUpdate(attacker.doc, sv))).rejects.toBeInstanceOf(ForgedEntryError)
    expect(stateOf(b)).toBe(before)

    // 2. Replay: A's own first (validly signed, older seq) entry re-inserted as a new Yjs item.
    const replay = await docFor(kc)
    Y.applyUpdate(replay.doc, Y.encodeStateAsUpdate(b.doc))
    const sv2 = Y.encodeStateVector(replay.doc)
    const old = new Y.Doc(); Y.applyUpdate(old, firstA)
    replay.peersMap.set(a.selfId, old.getMap<any>('peers').get(a.selfId))
    await expect(b.applyRemote(Y.encodeStateAsUpdate(replay.doc, sv2))).rejects.toThrow(/replayed/)

    // 3. Deleting someone's unexpired entry.
    const del = await docFor(kc)
    Y.applyUpdate(del.doc, Y.encodeStateAsUpdate(b.doc))
    const sv3 = Y.encodeStateVector(del.doc)
    del.peersMap.delete(a.selfId)
    await expect(b.applyRemote(Y.encodeStateAsUpdate(del.doc, sv3))).rejects.toThrow(/deleted an unexpired/)

    // 4. Non-entry value and garbage bytes.
    const junk = await docFor(kc)
    Y.applyUpdate(junk.doc, Y.encodeStateAsUpdate(b.doc))
    const sv4 = Y.encodeStateVector(junk.doc)
    junk.doc.getMap('peers').set(kc.publicKey.toString(), 42 as any)
    await expect(b.applyRemote(Y.encodeStateAsUpdate(junk.doc, sv4))).rejects.toBeInstanceOf(ForgedEntryError)
    await expect(b.applyRemote(new Uint8Array([1, 2, 3, 250, 7]))).rejects.toBeInstanceOf(MalformedMessageError)

    expect(stateOf(b)).toBe(before)
    expect(b.rejected).toBe(5)
    // Other maps are free-form and still sync.
    b.map('models').set('tiny', { layers: 2 })
    expect(await a.applyRemote(Y.encodeStateAsUpdate(b.doc, Y.encodeStateVector(a.doc)))).toBe('applied')
    expect(a.map('models').get('tiny')).toEqual({ layers: 2 })
    // Nested types and overwrites outside `peers` take the fast path and still arrive.
    const nested = new Y.Map<number>()
    b.map<Y.Map<number>>('runs').set('r1', nested)
    nested.set('round', 1)
    let sv5 = Y.encodeStateVector(a.doc)
    expect(await a.applyRemote(Y.encodeStateAsUpdate(b.doc, sv5))).toBe('applied')
    sv5 = Y.encodeStateVector(a.doc)
    nested.set('round', 2)
    b.map('models').set('tiny', { layers: 3 })
    expect(await a.applyRemote(Y.encodeStateAsUpdate(b.doc, sv5))).toBe('applied')
    expect(a.map<Y.Map<number>>('runs').get('r1')?.get('round')).toBe(2)
    expect(a.map('models').get('tiny')).toEqual({ layers: 3 })
    // …while a forged peers write bundled with such edits is still refused whole.
    const mixed = await docFor(kc)
    Y.applyUpdate(mixed.doc, Y.encodeStateAsUpdate(b.doc))
    const sv6 = Y.encodeStateVector(mixed.doc)
    mixed.doc.transact(() => {
      mixed.map('models').set('tiny', { layers: 99 })
      mixed.peersMap.set(a.selfId, forged)
    })
    const beforeMixed = stateOf(b)
    await expect(b.applyRemote(Y.encodeStateAsUpdate(mixed.doc, sv6))).rejects.toBeInstanceOf(ForgedEntryError)
    expect(stateOf(b)).toBe(beforeMixed)
  })

  it('an expired entry may be deleted by anyone; out-of-order updates wait for their dependencies', async () => {
    const [ka, kb] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const a = await docFor(ka); const b = await docFor(kb)
    await a.setSelf({ x: 1 }, 1) // expires after 1 ms
    Y.applyUpdate(b.doc, Y.encodeStateAsUpdate(a.doc))
    const sv = Y.encodeStateVector(b.doc)
    await new Promise(resolve => setTimeout(resolve, 5)) // lets the 1 ms lifetime pass; a longer wait (load) changes nothing below 30 s
    // expired, but within the 30 s skew allowance, so not yet deletable…
    const c = await docFor(kb); Y.applyUpdate(c.doc, Y.encodeStateAsUpdate(b.doc)); c.peersMap.delete(a.selfId)
    await expect(b.applyRemote(Y.encodeStateAsUpdate(c.doc, sv))).rejects.toThrow(/unexpired/)
    // …an entry that expired long ago is.
    await a.setSelf({ x: 2 }, -60_000)
    Y.applyUpdate(b.doc, Y.encodeStateAsUpdate(a.doc, Y.encodeStateVector(b.doc)))
    const sv2 = Y.encodeStateVector(b.doc)
    expect(b.pruneExpired()).toBe(1)
    const prune = Y.encodeStateAsUpdate(b.doc, sv2)
    expect(await a.applyRemote(prune)).toBe('applied')
    expect(a.peersMap.has(a.selfId)).toBe(false)

    // Two consecutive edits delivered in reverse order: the second waits, then both apply.
    const src = new SwarmDoc(SWARM, 'x'); const dst = new SwarmDoc(SWARM, 'y')
    const u: Uint8Array[] = []
    src.doc.on('update', (x: Uint8Array) => u.push(x))
    src.map('m').set('k', 1); src.map('m').set('k', 2)
    expect(await dst.applyRemote(u[1])).toBe('pending')
    expect(dst.map('m').get('k')).toBeUndefined()
    expect(await dst.applyRemote(u[0])).toBe('applied')
    expect(dst.map('m').get('k')).toBe(2)
    expect(dst.pendingCount).toBe(0)
  })

  it('updates that visibly lack dependencies wait without the full O(doc) check, however often they are retried', async () => {
    const dst = new SwarmDoc(SWARM, 'y')
    // A flooder's updates whose first edits never arrive: each continues a history we lack.
    const held: Uint8Array[] = []
    for (let i = 0; i < 20; i++) {
      const src = new SwarmDoc(SWARM, `f${i}`)
      const u: Uint8Array[] = []
      src.doc.on('update', (x: Uint8Array) => u.push(x))
      src.map('free').set(`k${i}`, 1); src.map('free').set(`k${i}`, 2)
      held.push(u[0])
      expect(await dst.applyRemote(u[1])).toBe('pending')
    }
    // An honest update applies; retrying the 20 waiting ones costs no full check.
    const honest = new SwarmDoc(SWARM, 'h', undefined, undefined, { powBits: 0 })
    const hu: Uint8Array[] = []
    honest.doc.on('update', (x: Uint8Array) => hu.push(x))
    honest.map('m').set('a', 1)
    const before = dst.fullChecks
    expect(await dst.applyRemote(hu[0])).toBe('applied')
    expect(dst.fullChecks - before).toBeLessThanOrEqual(1)
    expect(dst.pendingCount).toBe(20)
    // Once a missing edit arrives, its waiting successor applies.
    expect(await dst.applyRemote(held[3])).toBe('applied')
    expect(dst.pendingCount).toBe(19)
    expect(dst.map('free').get('k3')).toBe(2)

    // Items of one update that point at each other across clients are not mistaken for missing.
    const a = new Y.Doc(); const b = new Y.Doc()
    a.getArray('arr').insert(0, ['a'])
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    b.getArray('arr').insert(1, ['b'])
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b))
    a.getArray('arr').insert(2, ['c'])
    const both = Y.encodeStateAsUpdate(a)
    const fresh = new SwarmDoc(SWARM, 'z')
    expect(await fresh.applyRemote(both)).toBe('applied')
    expect(fresh.doc.getArray('arr').toArray()).toEqual(['a', 'b', 'c'])
  })
})

describe('CRDT over relay + 4 Node peers', () => {
  let s: TestSwarm
  let docs: SwarmDoc[]
  let syncs: CrdtSync[]
  let relayDoc: SwarmDoc
  const logs: string[] = []

  beforeAll(async () => {
    s = await startSwarm(4, { connect: false })
    relayDoc = new SwarmDoc(SWARM, s.relay.peerId.toString())
    const relaySync = new CrdtSync(s.relay as unknown as WebSwarmNode, relayDoc, { log: l => logs.push(l) })
    await relaySync.start()
    docs = s.peers.map((p, i) => new SwarmDoc(SWARM, p.peerId.toString(), s.keys[i]))
    syncs = s.peers.map((p, i) => new CrdtSync(p, docs[i], { log: l => logs.push(l) }))
    for (const x of syncs) await x.start()
    // Pre-connect state must arrive through SyncStep1/2 at connect.
    await docs[0].setSelf({ early: true })
    await Promise.all(s.peers.map(async p => { await p.dial(s.relay.getMultiaddrs()[0]) }))
    await untilMeshed(s, crdtTopic(SWARM))
  })
  afterAll(async () => {
    for (const x of syncs ?? []) await x.stop()
    await s?.stop()
  })

  const converged = (): boolean => docs.every(d => stateOf(d) === stateOf(relayDoc))

  it('initial sync at connect, then concurrent edits converge everywhere', async () => {
    await until('initial sync', async () => (await docs[3].peers()).has(docs[0].selfId))
    await Promise.all(docs.map(async (d, i) => {
      await d.setSelf({ gflops: i + 1 })
      d.map('models').set(`m${i}`, i)
      d.map('models').set('contended', i) // same key written concurrently everywhere
    }))
    await until('convergence', converged, 10_000)
    for (const d of docs) {
      expect((await d.peers()).size).toBe(4)
      expect(Object.keys(d.map('models').toJSON()).length).toBe(5)
    }
    // Presence (awareness over gossip): everyone sees everyone online, before y-protocols' 15 s renewal.
    const ids = docs.map(d => d.selfId)
    await until('presence', () => syncs.every(x => ids.every(id => x.presentPeers().includes(id))), 10_000)
  })

  it('a forged write over gossip and garbage on crdt-sync are refused; nodes keep running; no state change', async () => {
    const before = stateOf(docs[1])
    // Peer 3 turns malicious: overwrites peer 1's entry with its own signature and publishes raw.
    const evil = new SwarmDoc(SWARM, docs[3].selfId, s.keys[3])
    Y.applyUpdate(evil.doc, Y.encodeStateAsUpdate(docs[3].doc))
    const sv = Y.encodeStateVector(evil.doc)
    evil.peersMap.set(docs[1].selfId, await signEntry(s.keys[3], SWARM, { peer: docs[1].selfId, seq: 1e6, expiresAt: Date.now() + 1e6, data: { owned: true } }))
    const forged = Y.encodeStateAsUpdate(evil.doc, sv)
    await s.peers[3].services.pubsub.publish(crdtTopic(SWARM), new Uint8Array([GOSSIP_UPDATE, ...forged]))
    await until('forged gossip rejected by the relay', () => logs.some(l => l.includes('rejected gossip') && l.includes('ForgedEntryError')))

    // Garbage, oversized and wrong-swarm frames on the sync protocol: each stream is reset.
    const conn = s.peers[3].getConnections(s.relay.peerId)[0]
    for (const bad of [new Uint8Array([7, 7, 7]), encodeSyncFrame({ type: SYNC_STEP1, swarm: 'other', payload: new Uint8Array([0]) })]) {
      const stream = await conn.newStream(CRDT_SYNC.id)
      const lp = lpStream(stream)
      await lp.write(bad)
      await until('stream reset', () => stream.status === 'reset' || stream.status === 'aborted' || stream.status === 'closed', 5000)
    }
    // A future protocol version is refused at negotiation; nothing reaches the handler.
    await expect(conn.newStream(CRDT_SYNC.id.replace('2.0.0', '3.0.0'))).rejects.toThrow(/protocol/i)
    const big = await conn.newStream(CRDT_SYNC.id)
    const lpBig = lpStream(big, { maxDataLength: 64 * 1024 * 1024 })
    await lpBig.write(new Uint8Array(CRDT_SYNC.maxMessageBytes + 1)).catch(() => {})
    await until('oversized stream reset', () => big.status !== 'open', 5000)
    await until('three sync rejections logged', () => logs.filter(l => l.startsWith('crdt-sync: reset stream')).length >= 3)

    expect(logs.some(l => /UnsupportedMessageError: .*frame type 7/.test(l))).toBe(true)
    expect(logs.some(l => /swarm other/.test(l))).toBe(true)
    // Nothing changed, anywhere, and the relay still serves syncs.
    expect(stateOf(docs[1])).toBe(before)
    expect((await relayDoc.peers()).get(docs[1].selfId)?.data).toEqual({ gflops: 2 })
    docs[2].map('models').set('after-attack', true)
    await until('convergence after attack', converged)
  })

  it('converges after a partition heals', async () => {
    // Cut peers 0 and 1 off the relay (their only link); both sides edit while apart.
    await Promise.all([s.peers[0].hangUp(s.relay.peerId), s.peers[1].hangUp(s.relay.peerId)])
    await docs[0].setSelf({ side: 'A' })
    docs[0].map('models').set('during-partition-A', 1)
    docs[2].map('models').set('during-partition-B', 1)
    docs[2].map('models').set('contended', 'B')
    docs[1].map('models').set('contended', 'A')
    await until('side B converges without A', () => stateOf(docs[2]) === stateOf(relayDoc) && stateOf(docs[3]) === stateOf(relayDoc))
    expect(relayDoc.map('models').get('during-partition-A')).toBeUndefined()
    await Promise.all([s.peers[0].dial(s.relay.getMultiaddrs()[0]), s.peers[1].dial(s.relay.getMultiaddrs()[0])])
    await until('convergence after heal', converged, 10_000)
    expect(relayDoc.map('models').get('during-partition-A')).toBe(1)
    expect((await docs[3].peers()).get(docs[0].selfId)?.data).toEqual({ side: 'A' })
  })
})
