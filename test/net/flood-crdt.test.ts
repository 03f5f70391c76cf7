/**
 * Flooding the swarm doc (issue #13 item 3): identities without proof of work, a stolen stamp,
 * oversized values and too-fast updates are refused and counted, and the honest peers' state is
 * intact. Difficulty 8 bits keeps minting cheap here; the rules do not depend on it.
 */
import { describe, expect, it } from 'vitest'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { CrdtSync, GOSSIP_UPDATE, SwarmDoc, signEntry } from '../../web/src/net/crdt/index.ts'
import { GOSSIP_AWARENESS } from '../../web/src/net/crdt/sync.ts'
import { PeerBuckets, oversizedItem } from '../../web/src/net/crdt/limits.ts'
import { ForgedEntryError, LimitExceededError } from '../../web/src/net/errors.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const SWARM = 'default'
const BITS = 8

async function docFor (key: PrivateKey, powBits = BITS): Promise<SwarmDoc> {
  return new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits })
}

/** The update that brings `to` up to `from`. */
const diff = (from: SwarmDoc, to: SwarmDoc): Uint8Array => Y.encodeStateAsUpdate(from.doc, Y.encodeStateVector(to.doc))

describe('identity proof of work on swarm-doc entries', () => {
  it('identities created in a loop without a stamp are refused and counted; honest stamped ones are kept', async () => {
    const receiver = await docFor(await generateKeyPair('Ed25519'))
    const honest = await Promise.all([0, 1].map(async () => await docFor(await generateKeyPair('Ed25519'))))
    for (const h of honest) {
      await h.setSelf({ gflops: 1 })
      expect(await receiver.applyRemote(diff(h, receiver))).toBe('applied')
    }
    for (let i = 0; i < 12; i++) {
      const sybil = await docFor(await generateKeyPair('Ed25519'), 0) // writes entries with no stamp
      await sybil.setSelf({ gflops: 1e6 })
      await expect(receiver.applyRemote(diff(sybil, receiver))).rejects.toThrow(/without proof of work: no proof-of-work stamp/)
    }
    expect(receiver.refusedPow).toBe(12)
    expect(receiver.rejected).toBe(12)
    expect([...(await receiver.peers()).keys()].sort()).toEqual(honest.map(h => h.selfId).sort())
  })

  it("an older relay's stored doc: unstamped entries are pruned, and peers accept that deletion; stamped ones stay", async () => {
    const keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
    const old = await docFor(keys[0], 0) // a relay from before stamps wrote this doc
    const unstamped = await docFor(keys[1], 0)
    await unstamped.setSelf({ gflops: 1 })
    Y.applyUpdate(old.doc, Y.encodeStateAsUpdate(unstamped.doc))
    const honest = await docFor(keys[2])
    await honest.setSelf({ gflops: 2 })
    Y.applyUpdate(old.doc, Y.encodeStateAsUpdate(honest.doc))
    // the relay reopens that doc with stamps required; a peer already holds both entries
    const relay = new SwarmDoc(SWARM, 'relay', undefined, old.doc, { powBits: BITS })
    const peerStamps = new SwarmDoc(SWARM, 'peer2', undefined, undefined, { powBits: BITS })
    Y.applyUpdate(peerStamps.doc, Y.encodeStateAsUpdate(old.doc)) // trusted local copy (no merge check)
    const before = Y.encodeStateVector(peerStamps.doc)
    expect(relay.pruneExpired()).toBe(1)
    expect([...(await relay.peers()).keys()]).toEqual([honest.selfId])
    // the deletion of the unstamped, unexpired entry is not a forged delete for a peer that asks for stamps
    expect(await peerStamps.applyRemote(Y.encodeStateAsUpdate(relay.doc, before))).toBe('applied')
    expect([...(await peerStamps.peers()).keys()]).toEqual([honest.selfId])
    // …and a stamped, unexpired entry still cannot be deleted
    const relay2 = new SwarmDoc(SWARM, 'relay2', undefined, undefined, { powBits: BITS })
    Y.applyUpdate(relay2.doc, Y.encodeStateAsUpdate(peerStamps.doc))
    const sv = Y.encodeStateVector(relay2.doc)
    relay2.peersMap.delete(honest.selfId)
    await expect(peerStamps.applyRemote(Y.encodeStateAsUpdate(relay2.doc, sv))).rejects.toThrow(/deleted an unexpired peers entry/)
  })

  it('a stamp copied from another identity, or too weak, is refused', async () => {
    const [kh, ks] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const honest = await docFor(kh)
    const receiver = await docFor(await generateKeyPair('Ed25519'))
    const stolen = await honest.ownStamp()
    const thief = await docFor(ks, 0)
    const sybilId = thief.selfId
    thief.peersMap.set(sybilId, await signEntry(ks, SWARM, { peer: sybilId, seq: 1, expiresAt: Date.now() + 60_000, data: {}, pow: stolen }))
    await expect(receiver.applyRemote(diff(thief, receiver))).rejects.toBeInstanceOf(ForgedEntryError)
    // a stamp minted at 8 bits is worth nothing to a swarm that asks for more. A fixed key and day
    // make the stamp the same every run (random ones had a 2^-12 chance of reaching 20 bits).
    const day = Date.UTC(2026, 11, 5, 12, 0, 0)
    const fixed = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7))
    const weak = new SwarmDoc(SWARM, peerIdFromPrivateKey(fixed).toString(), fixed, undefined, { powBits: BITS, now: () => day })
    const strict = new SwarmDoc(SWARM, 'x', undefined, undefined, { powBits: 20, now: () => day })
    await weak.setSelf({})
    await expect(strict.applyRemote(diff(weak, strict))).rejects.toThrow(/leading zero bits, 20 required/)
    expect(strict.refusedPow).toBe(1)
  })

  it('the owner re-mints its stamp on a new day; an entry with yesterday\'s stamp still merges', async () => {
    let now = Date.UTC(2026, 11, 5, 23, 59, 0)
    const key = await generateKeyPair('Ed25519')
    const a = new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: BITS, now: () => now })
    const s1 = await a.ownStamp()
    expect(await a.ownStamp()).toBe(s1)
    await a.setSelf({ v: 1 })
    now += 120_000 // the next UTC day
    const receiver = new SwarmDoc(SWARM, 'r', undefined, undefined, { powBits: BITS, now: () => now })
    expect(await receiver.applyRemote(diff(a, receiver))).toBe('applied')
    const s2 = await a.ownStamp()
    expect(s2.split(':')[0]).toBe(String(Number(s1.split(':')[0]) + 1))
  })
})

describe('stamps are judged at the entry\'s write time', () => {
  it('an old entry lingering in a doc still merges days later; a post-dated one is refused', async () => {
    const written = Date.UTC(2026, 11, 1, 12, 0, 0)
    const key = await generateKeyPair('Ed25519')
    const old = new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: BITS, now: () => written })
    await old.setSelf({ v: 1 }) // stamped on Dec 1, expired 10 min later, never pruned
    const later = Date.UTC(2026, 11, 4, 12, 0, 0)
    const newcomer = new SwarmDoc(SWARM, 'n', undefined, undefined, { powBits: BITS, now: () => later })
    expect(await newcomer.applyRemote(diff(old, newcomer))).toBe('applied')
    // post-dating an entry (to keep a stamp's day alive for a month) is refused
    const k2 = await generateKeyPair('Ed25519')
    const cheat = new SwarmDoc(SWARM, peerIdFromPrivateKey(k2).toString(), k2, undefined, { powBits: BITS, now: () => later })
    await cheat.setSelf({ v: 1 }, 30 * 86_400_000)
    await expect(newcomer.applyRemote(diff(cheat, newcomer))).rejects.toThrow(/more than the 600 s lifetime/)
  })
})

describe('per-entry size and per-peer rate caps', () => {
  it('an update inserting an oversized value is refused and counted; small ones pass', async () => {
    const receiver = new SwarmDoc(SWARM, 'r', undefined, undefined, { powBits: 0, maxItemBytes: 4096 })
    const flooder = new SwarmDoc(SWARM, 'f', undefined, undefined, { powBits: 0 })
    flooder.map('train').set('run/x', { text: 'a'.repeat(10_000) })
    expect(oversizedItem(diff(flooder, receiver), 4096)?.where).toBe('train[run/x]')
    await expect(receiver.applyRemote(diff(flooder, receiver))).rejects.toBeInstanceOf(LimitExceededError)
    expect(receiver.refusedSize).toBe(1)
    const honest = new SwarmDoc(SWARM, 'h', undefined, undefined, { powBits: 0 })
    honest.map('train').set('run/y', { text: 'fine' })
    expect(await receiver.applyRemote(diff(honest, receiver))).toBe('applied')
    expect(receiver.map('train').get('run/y')).toEqual({ text: 'fine' })
    expect(receiver.map('train').has('run/x')).toBe(false)
  })

  it('token buckets: a burst, then the sustained rate; a refused message charges nothing', () => {
    const clock = new ManualClock(1000)
    const b = new PeerBuckets({ messagesPerSecond: 2, messageBurst: 3, bytesPerSecond: 100, byteBurst: 250 }, clock)
    expect([b.take('p', 10), b.take('p', 10), b.take('p', 10), b.take('p', 10)]).toEqual([true, true, true, false])
    expect(b.take('q', 10)).toBe(true) // another peer has its own bucket
    clock.advance(500) // +1 message
    expect([b.take('p', 10), b.take('p', 10)]).toEqual([true, false])
    clock.advance(10_000)
    expect(b.take('p', 251)).toBe(false) // over the byte burst: refused, not charged
    expect(b.take('p', 250)).toBe(true)
    expect(b.refused).toBe(3)
    expect(() => new PeerBuckets({ messagesPerSecond: 0 })).toThrow(/messagesPerSecond/)
  })

  it('a peer gossiping too fast is dropped past its burst and counted; an honest peer\'s updates all land', async () => {
    const clock = new ManualClock(0)
    const receiver = new SwarmDoc(SWARM, 'r', undefined, undefined, { powBits: 0 })
    const sync = new CrdtSync({} as unknown as WebSwarmNode, receiver, { clock, limits: { messagesPerSecond: 5, messageBurst: 20 }, log: () => {} })
    const validate = (sync as unknown as { validateGossip: (from: unknown, msg: Message) => Promise<TopicValidatorResult> }).validateGossip
    const gossip = async (author: SwarmDoc, from: string, write: () => void): Promise<TopicValidatorResult> => {
      const sv = Y.encodeStateVector(author.doc)
      write()
      const u = Y.encodeStateAsUpdate(author.doc, sv)
      const data = new Uint8Array(u.length + 1); data[0] = GOSSIP_UPDATE; data.set(u, 1)
      const id = { toString: () => from }
      return await validate(id, { type: 'signed', from: id, data, topic: sync.topic } as unknown as Message)
    }
    const flooder = new SwarmDoc(SWARM, 'f', undefined, undefined, { powBits: 0 })
    const honest = new SwarmDoc(SWARM, 'h', undefined, undefined, { powBits: 0 })
    const results: TopicValidatorResult[] = []
    for (let i = 0; i < 100; i++) results.push(await gossip(flooder, 'flooder', () => { flooder.map('spam').set(`k${i}`, i) }))
    for (let i = 0; i < 10; i++) {
      expect(await gossip(honest, 'honest', () => { honest.map('models').set(`m${i}`, { i }) })).toBe(TopicValidatorResult.Accept)
      clock.advance(100)
    }
    expect(results.filter(r => r === TopicValidatorResult.Accept).length).toBe(20)
    expect(results.filter(r => r === TopicValidatorResult.Ignore).length).toBe(80)
    expect(sync.stats.rateLimited).toBe(80)
    expect(receiver.map('models').size).toBe(10) // every honest update kept
    // the flooder's refused updates are not applied later by themselves (they wait for anti-entropy at its rate)
    expect(receiver.map('spam').size).toBe(20)
  })
})

describe('malformed gossip', () => {
  it('is rejected and counted — empty, unknown type, over 1 MiB, too many or foreign presence states — and the doc goes on', async () => {
    const receiver = new SwarmDoc(SWARM, 'r', undefined, undefined, { powBits: 0 })
    const sync = new CrdtSync({} as unknown as WebSwarmNode, receiver, { clock: new ManualClock(0), log: () => {} })
    const validate = (sync as unknown as { validateGossip: (from: unknown, msg: Message) => Promise<TopicValidatorResult> }).validateGossip
    const send = async (from: string, data: Uint8Array): Promise<TopicValidatorResult> => {
      const id = { toString: () => from }
      return await validate(id, { type: 'signed', from: id, data, topic: sync.topic } as unknown as Message)
    }
    const tagged = (type: number, body: Uint8Array): Uint8Array => Uint8Array.from([type, ...body])
    /** A presence update of `n` states, each claiming `peer`. */
    const presence = (n: number, peer: string): Uint8Array => {
      const all = new awarenessProtocol.Awareness(new Y.Doc())
      for (let i = 0; i < n; i++) {
        const one = new awarenessProtocol.Awareness(new Y.Doc())
        one.setLocalState({ peer })
        awarenessProtocol.applyAwarenessUpdate(all, awarenessProtocol.encodeAwarenessUpdate(one, [one.clientID]), 'test')
      }
      return awarenessProtocol.encodeAwarenessUpdate(all, [...all.getStates().keys()].filter(c => c !== all.clientID))
    }
    const bad: Array<[string, Uint8Array]> = [
      ['empty', new Uint8Array(0)],
      ['unknown type', Uint8Array.of(7, 1, 2, 3)],
      ['over 1 MiB', new Uint8Array(1024 * 1024 + 1)],
      ['5 presence states', tagged(GOSSIP_AWARENESS, presence(5, 'p'))],
      ['a state naming another peer', tagged(GOSSIP_AWARENESS, presence(1, 'someone-else'))],
      ['presence that is not JSON', tagged(GOSSIP_AWARENESS, Uint8Array.of(1, 5, 1, 3, 0x7b, 0x7b, 0x7b))]
    ]
    for (const [what, data] of bad) expect([what, await send('p', data)]).toEqual([what, TopicValidatorResult.Reject])
    expect(sync.stats.rejected).toBe(bad.length)
    // The same peer's honest presence and updates still land.
    expect(await send('p', tagged(GOSSIP_AWARENESS, presence(1, 'p')))).toBe(TopicValidatorResult.Accept)
    const author = new SwarmDoc(SWARM, 'a', undefined, undefined, { powBits: 0 })
    author.map('models').set('m', { ok: true })
    expect(await send('p', tagged(GOSSIP_UPDATE, Y.encodeStateAsUpdate(author.doc)))).toBe(TopicValidatorResult.Accept)
    expect(receiver.map('models').get('m')).toEqual({ ok: true })
    expect(sync.stats.rejected).toBe(bad.length)
  })
})

describe('doc size cap', () => {
  it('writes outside the signed maps from ever-new authors stop at the cap; stamped entries and deletions still apply', async () => {
    const CAP = 64 * 1024
    const receiver = new SwarmDoc(SWARM, 'relay', undefined, undefined, { powBits: BITS, maxDocBytes: CAP })
    const honest = await docFor(await generateKeyPair('Ed25519'))
    await honest.setSelf({ gflops: 1 })
    expect(await receiver.applyRemote(diff(honest, receiver))).toBe('applied')
    // A Sybil: each 4 KiB write from a fresh author (a fresh Yjs client) into a free map.
    let applied = 0
    let refused = 0
    for (let i = 0; i < 40; i++) {
      const sybil = new SwarmDoc(SWARM, `sybil${i}`, undefined, undefined, { powBits: 0 })
      sybil.map('free').set(`k${i}`, 'x'.repeat(4096))
      try {
        await receiver.applyRemote(Y.encodeStateAsUpdate(sybil.doc))
        applied++
      } catch (e) {
        expect(e).toBeInstanceOf(LimitExceededError)
        expect((e as Error).message).toMatch(/would pass its 65536 B cap/)
        refused++
      }
    }
    expect(applied).toBeGreaterThan(5)
    expect(refused).toBeGreaterThan(20)
    expect(receiver.refusedDocSize).toBe(refused)
    expect(Y.encodeStateAsUpdate(receiver.doc).byteLength).toBeLessThanOrEqual(CAP)
    // The honest peer's refreshed (stamped) entry still lands at the cap…
    await honest.setSelf({ gflops: 2 })
    expect(await receiver.applyRemote(diff(honest, receiver))).toBe('applied')
    expect((await receiver.peers()).get(honest.selfId)?.data).toEqual({ gflops: 2 })
    // …and so does a deletion (what pruning sends), after which writes fit again.
    const holder = new SwarmDoc(SWARM, 'holder', undefined, undefined, { powBits: 0 })
    Y.applyUpdate(holder.doc, Y.encodeStateAsUpdate(receiver.doc))
    const sv = Y.encodeStateVector(holder.doc)
    holder.doc.transact(() => { for (const k of [...holder.map('free').keys()]) holder.map('free').delete(k) })
    expect(await receiver.applyRemote(Y.encodeStateAsUpdate(holder.doc, sv))).toBe('applied')
    const late = new SwarmDoc(SWARM, 'late', undefined, undefined, { powBits: 0 })
    late.map('free').set('k', 'x'.repeat(4096))
    expect(await receiver.applyRemote(Y.encodeStateAsUpdate(late.doc))).toBe('applied')
  })

  it('refuses a cap that is not positive', () => {
    expect(() => new SwarmDoc(SWARM, 'x', undefined, undefined, { maxDocBytes: 0 })).toThrow(/maxDocBytes must be positive/)
  })
})
