import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SwarmDht, blockKey, modelKey, signRecord, verifyRecord } from '../../web/src/net/dht/index.ts'
import { selectRecord, type SignedRecord } from '../../web/src/net/dht/records.ts'
import { InvalidRecordError, NetConfigError, RecordNotFoundError } from '../../web/src/net/errors.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { startSwarm, until, type TestSwarm } from './peers-harness.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

describe('signed DHT records (codec)', () => {
  it('round-trips and rejects tampering, expiry, future issue and foreign owner keys', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const me = peerIdFromPrivateKey(key).toString()
    const k = blockKey('tiny', 3, me)
    const now = 1_000_000
    const v = await signRecord(key, k, enc.encode('hello'), 60_000, now)
    const rec = await verifyRecord(k, v, now + 1)
    expect(dec.decode(rec.payload)).toBe('hello')
    expect(rec.signer).toBe(me)

    const flipped = v.slice(); flipped[flipped.length - 5] ^= 1
    await expect(verifyRecord(k, flipped, now)).rejects.toThrow(/bad signature/)
    await expect(verifyRecord(k, v, now + 60_001)).rejects.toThrow(/expired/)
    await expect(verifyRecord(k, v, now - 60_000)).rejects.toThrow(/future/)
    // Same bytes replayed under another key: the signature binds the key.
    const k2 = blockKey('tiny', 4, me)
    await expect(verifyRecord(k2, v, now)).rejects.toThrow(/bad signature/)
    // Owner-keyed namespace: another peer cannot sign under my key, nor can I sign under theirs.
    await expect(signRecord(other, k, enc.encode('x'), 60_000, now)).rejects.toBeInstanceOf(NetConfigError)
    const theirs = await signRecord(other, blockKey('tiny', 3, peerIdFromPrivateKey(other).toString()), enc.encode('x'), 60_000, now)
    await expect(verifyRecord(k, theirs, now)).rejects.toThrow(/signer's peer id|bad signature/)
    // Garbage, truncation, wrong version, trailing bytes, unknown namespace.
    await expect(verifyRecord(k, new Uint8Array([1, 2, 3]), now)).rejects.toBeInstanceOf(InvalidRecordError)
    await expect(verifyRecord(k, v.subarray(0, v.length - 1), now)).rejects.toBeInstanceOf(InvalidRecordError)
    const badVersion = v.slice(); badVersion[0] = 9
    await expect(verifyRecord(k, badVersion, now)).rejects.toThrow(/version 9/)
    await expect(verifyRecord(k, new Uint8Array([...v, 0]), now)).rejects.toThrow(/trailing/)
    await expect(verifyRecord('/nope/x', v, now)).rejects.toThrow(/namespace/)
  })

  it('selector picks the newest valid record and never an invalid one', async () => {
    const key = await generateKeyPair('Ed25519')
    const k = modelKey('m1')
    const now = Date.now()
    const old = await signRecord(key, k, enc.encode('old'), 60_000, now - 1000)
    const fresh = await signRecord(key, k, enc.encode('new'), 60_000, now)
    const forged = fresh.slice(); forged[forged.length - 1] ^= 0xff
    expect(await selectRecord(enc.encode(k), [old, fresh])).toBe(1)
    expect(await selectRecord(enc.encode(k), [fresh, old])).toBe(0)
    expect(await selectRecord(enc.encode(k), [old, forged])).toBe(0)
  })
})

describe('DHT across relay + 4 Node peers', () => {
  let s: TestSwarm
  let dhts: SwarmDht[]
  beforeAll(async () => {
    s = await startSwarm(4)
    dhts = s.peers.map((p, i) => new SwarmDht(p, s.keys[i]))
  })
  afterAll(async () => { await s?.stop() })

  it('put on one peer, get on every other', async () => {
    const me = s.peers[0].peerId.toString()
    const k = blockKey('tiny', 0, me)
    await dhts[0].put(k, enc.encode('block 0 @ peer 0'))
    for (const d of dhts.slice(1)) {
      const rec = await d.get(k)
      expect(dec.decode(rec.payload)).toBe('block 0 @ peer 0')
      expect(rec.signer).toBe(me)
    }
    expect(() => new SwarmDht(s.peers[0], s.keys[0], undefined, { queryTimeoutMs: 0 })).toThrow(NetConfigError)
  })

  it('newest valid wins; a forged or expired record stored on the relay is rejected by readers', async () => {
    const k = modelKey('shared-model')
    await dhts[1].put(k, enc.encode('v1'))
    await dhts[2].put(k, enc.encode('v2'))
    expect(dec.decode((await dhts[3].get(k)).payload)).toBe('v2')

    // A validly-signed but expired record cannot even be stored (the relay's validator refuses it)…
    const expired = await signRecord(s.keys[3], modelKey('expired'), enc.encode('x'), 1000, Date.now() - 5000)
    await expect(dhts[3].putSigned(modelKey('expired'), expired)).rejects.toThrow()
    await expect(dhts[0].get(modelKey('expired'))).rejects.toBeInstanceOf(RecordNotFoundError)
    // …and a record whose signature was tampered with is refused the same way.
    const good = await signRecord(s.keys[3], modelKey('forged'), enc.encode('x'), 60_000)
    const forged = good.slice(); forged[forged.length - 1] ^= 1
    await expect(dhts[3].putSigned(modelKey('forged'), forged)).rejects.toThrow()
    await expect(dhts[0].get(modelKey('forged'))).rejects.toBeInstanceOf(RecordNotFoundError)
    // kad-dht kept the forged value in the writer's own datastore unvalidated; its reader still refuses it.
    await expect(dhts[3].get(modelKey('forged'))).rejects.toBeInstanceOf(RecordNotFoundError)
  })

  it('provider records: every provider is found', async () => {
    await Promise.all(dhts.slice(0, 3).map(async d => { await d.provide('/ws-blocks/tiny/1') }))
    const found = await dhts[3].findProviders('/ws-blocks/tiny/1')
    expect(found.sort()).toEqual(s.peers.slice(0, 3).map(p => p.peerId.toString()).sort())
  })
})

/**
 * Record lifetimes on a ManualClock: the announcer signs and re-announces on it and every node's
 * DHT validators and selectors check lifetimes against it, so "two lifetimes later" and "after
 * it expired" are clock steps, not real waits a loaded machine could stretch past a refresh.
 * Only the network's own work is waited for (each step polls until the put has landed).
 */
describe('DHT announcements on an injected clock', () => {
  const clock = new ManualClock(Date.now())
  let s: TestSwarm
  let dhts: SwarmDht[]
  beforeAll(async () => {
    s = await startSwarm(3, { relay: { now: clock.now }, peer: { now: clock.now } })
    dhts = s.peers.map((p, i) => new SwarmDht(p, s.keys[i], clock))
  })
  afterAll(async () => { await s?.stop() })

  /** The record `reader` finds under `k` once it is newer than `after` (polls: a put is in flight). */
  async function newer (reader: SwarmDht, k: string, after: number): Promise<SignedRecord> {
    let rec: SignedRecord | undefined
    await until(`a record of ${k} issued after ${after}`, async () => {
      rec = await reader.get(k).catch(() => undefined)
      return rec !== undefined && rec.issuedAt > after
    }, 60_000)
    return rec!
  }

  it('an announcement is refreshed before it expires, and expires once stopped', async () => {
    const me = s.peers[2].peerId.toString()
    const k = blockKey('tiny', 7, me)
    let n = 0
    const ttlMs = 60_000
    const ann = dhts[2].announce(k, () => enc.encode(`gen ${n++}`), { ttlMs })
    try {
      const first = await newer(dhts[0], k, -Infinity)
      // Two lifetimes in half-lifetime steps: each step's refresh lands before the next.
      let later = first
      for (let i = 0; i < 4; i++) {
        // The announcer schedules its next refresh once its put has finished.
        await until('the next refresh to be scheduled', () => clock.pending === 1, 60_000)
        clock.advance(ttlMs / 2)
        later = await newer(dhts[0], k, later.issuedAt)
      }
      expect(later.issuedAt).toBeGreaterThan(first.issuedAt)
      expect(later.expiresAt).toBeGreaterThan(clock.now())
      expect(clock.now() - first.issuedAt).toBeGreaterThanOrEqual(2 * ttlMs)
    } finally {
      ann.stop()
    }
    // Stopped: nothing refreshes it, and once its lifetime passes readers stop seeing it.
    expect(clock.pending).toBe(0)
    clock.advance(ttlMs + 1)
    await expect(dhts[0].get(k)).rejects.toBeInstanceOf(RecordNotFoundError)
  })
})
