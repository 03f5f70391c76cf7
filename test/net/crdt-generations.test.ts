/**
 * Doc generations (web/src/net/crdt/generation.ts): a rotation keeps only live entries (as their
 * owners signed them), a peer on an older generation re-seeds and re-inserts its own entry, updates
 * of other generations are refused and counted, frames name their generation, and the relay's log
 * holds the current generation only. Time is a hand-moved clock.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { parseConfig } from '../../relay/config.ts'
import { CrdtStore } from '../../relay/crdt-store.ts'
import { startRelay } from '../../relay/relay.ts'
import { GENERATION_EPOCH_MS, GENESIS, compareGenerations, rotationPolicy } from '../../web/src/net/crdt/generation.ts'
import { signEntry } from '../../web/src/net/crdt/entries.ts'
import { SwarmDoc } from '../../web/src/net/crdt/swarm-doc.ts'
import { CrdtSync, SYNC_STEP2, decodeSyncFrame, encodeSyncFrame } from '../../web/src/net/crdt/sync.ts'
import { ForgedEntryError, GenerationMismatchError, LimitExceededError, MalformedMessageError, NetConfigError } from '../../web/src/net/errors.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'
import { crdtTopic } from '../../web/src/net/protocols.ts'
import { Writer } from '../../web/src/net/wire.ts'
import { startSwarm, until, untilMeshed } from './peers-harness.ts'

const SWARM = 'gen'
const POW = 4
const T0 = Date.UTC(2026, 0, 1)

/** Docs sharing one hand-moved clock. */
class World {
  now = T0
  doc (key?: PrivateKey, selfId?: string): SwarmDoc {
    const id = selfId ?? (key !== undefined ? peerIdFromPrivateKey(key).toString() : 'relay')
    return new SwarmDoc(SWARM, id, key, undefined, { powBits: POW, now: () => this.now })
  }
}

/** `from`'s state `to` lacks, through `to`'s checks in `from`'s generation. */
async function send (from: SwarmDoc, to: SwarmDoc): Promise<void> {
  await to.applyRemoteIn(from.generation, Y.encodeStateAsUpdate(from.doc, Y.encodeStateVector(to.doc)))
}

const bytes = (d: SwarmDoc): number => Y.encodeStateAsUpdate(d.doc).byteLength

/** A hub (the relay's doc) that saw `departed` peers come and go, and holds `live` live ones. */
async function history (w: World, live: number, departed: number): Promise<{ hub: SwarmDoc, peers: SwarmDoc[] }> {
  const hub = w.doc()
  const peers: SwarmDoc[] = []
  for (let i = 0; i < departed; i++) {
    const d = w.doc(await generateKeyPair('Ed25519'))
    await d.setSelf({ gflops: i }, 60_000)
    await send(d, hub)
  }
  for (let i = 0; i < live; i++) {
    const p = w.doc(await generateKeyPair('Ed25519'))
    peers.push(p)
  }
  w.now += 2 * 60_000 // the departed entries expired (+ skew)
  for (const p of peers) {
    await p.setSelf({ live: true })
    await send(p, hub)
  }
  expect(hub.pruneExpired()).toBe(departed)
  return { hub, peers }
}

describe('doc generations', () => {
  it('a rotation leaves a doc bounded by the live peers, whatever the history; signed entries still verify', async () => {
    const w = new World()
    const { hub, peers } = await history(w, 5, 60)
    // Yjs keeps every departed key and client: the doc carries its history.
    const fresh = w.doc()
    for (const p of peers) await send(p, fresh)
    const liveBytes = bytes(fresh)
    expect(bytes(hub)).toBeGreaterThan(liveBytes + 60 * 50)
    expect(await hub.rotationDue(rotationPolicy({ historyShare: 0.5 }), w.now)).toBe(true)

    const before = new Map([...hub.peersMap.entries()].map(([k, v]) => [k, JSON.stringify(v)]))
    const g = await hub.rotate(w.now, 7)
    expect(g).toEqual({ n: Math.floor(w.now / GENERATION_EPOCH_MS), tag: 7 })
    expect(hub.rotations).toBe(1)
    // Bounded by the live peers: the same bytes as a doc that only ever held them, ± Yjs framing.
    expect(bytes(hub)).toBeLessThan(liveBytes * 1.1)
    // The very values their owners signed (not re-signed), and they verify on a newcomer.
    expect(new Map([...hub.peersMap.entries()].map(([k, v]) => [k, JSON.stringify(v)]))).toEqual(before)
    const joiner = w.doc(undefined, 'joiner')
    await joiner.adopt(hub.generation, Y.encodeStateAsUpdate(hub.doc))
    expect([...(await joiner.peers()).keys()].sort()).toEqual(peers.map(p => p.selfId).sort())
    // No history, no rotation; and one per epoch at most.
    expect(await hub.rotationDue(rotationPolicy(), w.now + GENERATION_EPOCH_MS)).toBe(false)
    await expect(hub.rotate(w.now)).rejects.toThrow(NetConfigError)
  }, 60_000)

  it('a peer on an older generation re-seeds and re-inserts its own newer entry; nothing live is lost', async () => {
    const w = new World()
    const { hub, peers } = await history(w, 3, 10)
    const [a, b] = peers
    for (const p of peers) await send(hub, p)
    w.now += GENERATION_EPOCH_MS
    await hub.rotate(w.now, 11)
    // Written after the rotation, on the old generation: the hub refuses it as stale.
    await a.setSelf({ live: true, v: 2 })
    const refused = hub.refusedGeneration
    await expect(send(a, hub)).rejects.toThrow(GenerationMismatchError)
    expect(hub.refusedGeneration).toBe(refused + 1)
    expect((await hub.peers()).get(a.selfId)?.data).toEqual({ live: true })

    const seqBefore = (await a.peers()).get(a.selfId)!.seq
    await a.adopt(hub.generation, Y.encodeStateAsUpdate(hub.doc))
    expect(a.generation).toEqual(hub.generation)
    // Its own entry (seq 2) replaced the seed's older one; re-inserted as signed, not re-signed.
    expect((await a.peers()).get(a.selfId)).toMatchObject({ seq: seqBefore, data: { live: true, v: 2 } })
    await send(a, hub)
    expect((await hub.peers()).get(a.selfId)?.data).toEqual({ live: true, v: 2 })
    // b re-seeds too: every live entry is where it was.
    await b.adopt(hub.generation, Y.encodeStateAsUpdate(hub.doc))
    await send(b, hub)
    expect([...(await hub.peers()).keys()].sort()).toEqual(peers.map(p => p.selfId).sort())
    // Peers of one generation exchange updates as before.
    await b.setSelf({ live: true, v: 3 })
    await send(b, a)
    expect((await a.peers()).get(b.selfId)?.data).toEqual({ live: true, v: 3 })
  }, 60_000)

  it('code still holding a map of the earlier generation reads and writes the live state (mirrored), unless mirroring is off', async () => {
    for (const mirroredGenerations of [undefined, 0]) {
      const w = new World()
      const { hub, peers: [p] } = await history(w, 1, 2)
      const q = new SwarmDoc(SWARM, p.selfId, undefined, undefined, { powBits: POW, now: () => w.now, mirroredGenerations })
      await send(hub, q)
      hub.map('train').set('run', { round: 1 })
      await send(hub, q)
      const train = q.map('train') // held across the re-seed, as a run board holds it
      let oldUpdates = 0
      q.doc.on('update', () => { oldUpdates++ })
      w.now += GENERATION_EPOCH_MS
      await hub.rotate(w.now, 21)
      await q.adopt(hub.generation, Y.encodeStateAsUpdate(hub.doc))
      hub.map('train').set('run', { round: 2 })
      await send(hub, q)
      train.set('member', 'q') // written through the old map
      await send(q, hub).catch(() => {})
      if (mirroredGenerations === 0) {
        expect(train.get('run')).toEqual({ round: 1 })
        expect(hub.map('train').get('member')).toBeUndefined()
      } else {
        expect(train.get('run')).toEqual({ round: 2 })
        expect(oldUpdates).toBeGreaterThan(0)
        expect(hub.map('train').get('member')).toBe('q')
        expect(q.map('train').get('member')).toBe('q')
      }
    }
  }, 60_000)

  it('two relays that rotate in one epoch converge on the higher tag', async () => {
    const w = new World()
    const { hub: r1, peers } = await history(w, 2, 5)
    const r2 = w.doc(undefined, 'relay-2')
    await send(r1, r2)
    w.now += GENERATION_EPOCH_MS
    await r1.rotate(w.now, 5)
    await r2.rotate(w.now, 9)
    expect(compareGenerations(r2.generation, r1.generation)).toBe(1)
    await expect(r2.adopt(r1.generation, Y.encodeStateAsUpdate(r1.doc))).rejects.toThrow(GenerationMismatchError)
    await r1.adopt(r2.generation, Y.encodeStateAsUpdate(r2.doc))
    expect(r1.generation).toEqual(r2.generation)
    expect([...(await r1.peers()).keys()].sort()).toEqual(peers.map(p => p.selfId).sort())
  }, 60_000)

  it('refuses old, future and malformed generations, forged and partial seeds, with typed errors and counts, leaving the doc as it was', async () => {
    const w = new World()
    const { hub, peers } = await history(w, 2, 3)
    w.now += GENERATION_EPOCH_MS
    await hub.rotate(w.now, 3)
    const p = peers[0]
    const state = Y.encodeStateAsUpdate(hub.doc)
    const epoch = Math.floor(w.now / GENERATION_EPOCH_MS)
    const keep = Y.encodeStateAsUpdate(p.doc)
    const cases: Array<[() => Promise<unknown>, abstract new (...a: any[]) => Error, RegExp]> = [
      [async () => await p.adopt({ n: epoch + 2, tag: 1 }, state), LimitExceededError, /from the future/],
      [async () => await p.adopt({ n: epoch, tag: 2 ** 33 }, state), MalformedMessageError, /out of range/],
      [async () => await p.adopt({ n: 0, tag: 5 }, state), MalformedMessageError, /genesis/],
      [async () => await p.adopt(GENESIS, state), GenerationMismatchError, /stale doc generation 0\.0/],
      [async () => await p.applyRemoteIn({ n: epoch + 3, tag: 1 }, state), LimitExceededError, /future/]
    ]
    for (const [call, type, msg] of cases) {
      const before = p.refusedGeneration
      await expect(call()).rejects.toThrow(type)
      await expect(call()).rejects.toThrow(msg)
      expect(p.refusedGeneration).toBe(before + 2)
    }
    // A seed whose entry someone else signed; one that is not a whole state (lacks its start).
    const forger = await generateKeyPair('Ed25519')
    const evil = new Y.Doc()
    evil.getMap('peers').set(peers[1].selfId, await signEntry(forger, SWARM, { peer: peers[1].selfId, seq: 9, expiresAt: w.now + 60_000, data: {} }))
    await expect(p.adopt(hub.generation, Y.encodeStateAsUpdate(evil))).rejects.toThrow(ForgedEntryError)
    const sv = Y.encodeStateVector(hub.doc)
    hub.map('models').set('late', 1)
    await expect(p.adopt(hub.generation, Y.encodeStateAsUpdate(hub.doc, sv))).rejects.toThrow(/not a whole state/)
    expect(p.generation).toEqual(GENESIS)
    expect(Y.encodeStateAsUpdate(p.doc)).toEqual(keep)
  }, 60_000)

  it('sync frames carry the generation; a frame with a bad one is refused by the codec', () => {
    const f = { type: SYNC_STEP2, swarm: 'default', generation: { n: 29_000_000, tag: 0xffff_ffff }, payload: new Uint8Array([1, 2]) }
    expect(decodeSyncFrame(encodeSyncFrame(f))).toEqual(f)
    expect(decodeSyncFrame(encodeSyncFrame({ type: SYNC_STEP2, swarm: 'x', payload: new Uint8Array(0) })).generation).toEqual(GENESIS)
    const tagTooBig = new Writer().u8(SYNC_STEP2).string('x').varuint(5).varuint(2 ** 32).bytes(new Uint8Array(0)).finish()
    expect(() => decodeSyncFrame(tagTooBig)).toThrow(/generation tag/)
    const cut = encodeSyncFrame(f).subarray(0, 1 + 1 + 7 + 2)
    expect(() => decodeSyncFrame(cut)).toThrow(MalformedMessageError)
  })
})

describe('relay log across generations', () => {
  it('compacts to the new generation at once and reloads it with its generation', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'webswarm-gen-'))
    try {
      const w = new World()
      const { hub: src } = await history(w, 3, 30)
      const ydoc = new Y.Doc()
      const store = await CrdtStore.open(dir, SWARM, ydoc, { compactIntervalMs: 0, log: () => {} })
      const hub = new SwarmDoc(SWARM, 'relay', undefined, ydoc, { powBits: POW, now: () => w.now, generation: store.generation })
      hub.onGeneration((g) => { void store.rebind(hub.doc, g) })
      await send(src, hub)
      await store.flush()
      const historyFile = (await readFile(store.file)).byteLength
      w.now += GENERATION_EPOCH_MS
      const g = await hub.rotate(w.now, 42)
      await store.flush() // after the rebind's compaction
      const file = (await readFile(store.file)).byteLength
      expect(file).toBeLessThan(historyFile * 0.6)
      expect(file).toBeLessThan(bytes(hub) + 64)
      hub.map('models').set('after', 1) // appended in the new generation
      await store.close()

      const again = new Y.Doc()
      const reopened = await CrdtStore.open(dir, SWARM, again, { compactIntervalMs: 0, log: () => {} })
      expect(reopened.generation).toEqual(g)
      const back = new SwarmDoc(SWARM, 'relay', undefined, again, { powBits: POW, now: () => w.now, generation: reopened.generation })
      expect([...(await back.peers()).keys()].sort()).toEqual([...(await hub.peers()).keys()].sort())
      expect(back.map('models').get('after')).toBe(1)
      await reopened.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('generations over libp2p (relay + 2 peers, CrdtSync)', () => {
  it('peers re-seed at their next sync or on the first newer gossip; stale gossip is refused and counted; no live entry is lost', async () => {
    const s = await startSwarm(2, { connect: false })
    const logs: string[] = []
    const log = (l: string): void => { logs.push(l) }
    const opts = { powBits: POW }
    const relayDoc = new SwarmDoc(SWARM, s.relay.peerId.toString(), undefined, undefined, opts)
    const docs = s.peers.map((p, i) => new SwarmDoc(SWARM, p.peerId.toString(), s.keys[i], undefined, opts))
    const relaySync = new CrdtSync(s.relay as unknown as WebSwarmNode, relayDoc, { log, antiEntropyIntervalMs: 0, pruneIntervalMs: 0 })
    const syncs = s.peers.map((p, i) => new CrdtSync(p, docs[i], { log, antiEntropyIntervalMs: 0, pruneIntervalMs: 0 }))
    try {
      await relaySync.start()
      for (const x of syncs) await x.start()
      await Promise.all(s.peers.map(async p => { await p.dial(s.relay.getMultiaddrs()[0]) }))
      await untilMeshed(s, crdtTopic(SWARM)) // anti-entropy is off: gossip must reach everyone
      for (const d of docs) await d.setSelf({ v: 1 })
      await until('entries at the relay', async () => (await relayDoc.peers()).size === 2)

      const g = await relayDoc.rotate()
      // Peer 0 writes on the generation the relay left: the relay refuses it as stale, and counts it.
      await docs[0].setSelf({ v: 2 })
      await until('stale gossip refused', () => relaySync.stats.staleGeneration >= 1)
      expect(relayDoc.refusedGeneration).toBeGreaterThanOrEqual(1)
      expect((await relayDoc.peers()).get(docs[0].selfId)?.data).toEqual({ v: 1 })
      expect(logs.some(l => /stale doc generation 0\.0/.test(l))).toBe(true)
      // Its next sync re-seeds it; its own newer entry goes on to the relay in the new generation.
      await syncs[0].syncWith(s.relay.peerId)
      expect(docs[0].generation).toEqual(g)
      expect(syncs[0].stats.reseeded).toBe(1)
      await until('peer 0\'s newer entry at the relay', async () => (await relayDoc.peers()).get(docs[0].selfId)?.data.v === 2)
      // Peer 1 hears gossip of the newer generation and syncs with its forwarder at once.
      relayDoc.map('models').set('after-rotation', true)
      await until('peer 1 re-seeded', () => docs[1].generation.tag === g.tag, 10_000)
      await until('peer 1 holds the relay\'s state', () => docs[1].map('models').get('after-rotation') === true)
      expect([...(await relayDoc.peers()).keys()].sort()).toEqual(docs.map(d => d.selfId).sort())
      await docs[1].setSelf({ v: 3 })
      await until('peer 0 hears peer 1 in the new generation', async () => (await docs[0].peers()).get(docs[1].selfId)?.data.v === 3)
    } finally {
      for (const x of [...syncs, relaySync]) await x.stop()
      await s.stop()
    }
  }, 60_000)
})

describe('relay process', () => {
  it('starts a new generation once departed peers outweigh the live state, and keeps it across a restart', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'webswarm-gen-relay-'))
    const config = { ...parseConfig(['--port', '0', '--ice-server', 'none', '--crdt-pow-bits', String(POW)], {})!, dataDir: dir, staticDir: dir, compactIntervalMs: 1000 }
    const logs: string[] = []
    let relay = await startRelay(config, (l) => { logs.push(l) })
    try {
      const { sdoc, store } = relay.swarms.get('default')!
      // 70 peers wrote entries that expired 5 min ago (their clocks were behind), one is live.
      const past = { now: Date.now() - 15 * 60_000 }
      for (let i = 0; i < 71; i++) {
        const key = await generateKeyPair('Ed25519')
        const d = new SwarmDoc('default', peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: POW, now: () => i < 70 ? past.now : Date.now() })
        await d.setSelf({ i })
        await sdoc.applyRemote(Y.encodeStateAsUpdate(d.doc))
      }
      await until('the relay pruned and rotated', () => sdoc.generation.n > 0, 20_000).catch((e: Error) => { throw new Error(`${e.message}: ${logs.filter(l => l.includes('crdt')).join(' | ')}`) })
      await until('its log compacted to the generation', () => store.generation.tag === sdoc.generation.tag && store.stats.records <= 3, 10_000)
      expect((await sdoc.peers()).size).toBe(1)
      const g = sdoc.generation
      await relay.stop()
      relay = await startRelay(config, () => {})
      const again = relay.swarms.get('default')!.sdoc
      expect(again.generation).toEqual(g)
      expect((await again.peers()).size).toBe(1)
      expect(Y.encodeStateAsUpdate(again.doc).byteLength).toBeLessThan(1024)
    } finally {
      await relay.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }, 90_000)
})
