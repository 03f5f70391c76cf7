import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SwarmDht, blockKey, modelKey, signRecord, verifyRecord } from '../../web/src/net/dht/index.ts'
import { selectRecord } from '../../web/src/net/dht/records.ts'
import { InvalidRecordError, NetConfigError, RecordNotFoundError } from '../../web/src/net/errors.ts'
import { startSwarm, type TestSwarm } from './peers-harness.ts'

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

  it('an announcement is refreshed before it expires', async () => {
    const me = s.peers[2].peerId.toString()
    const k = blockKey('tiny', 7, me)
    let n = 0
    const ttlMs = 800
    const ann = dhts[2].announce(k, () => enc.encode(`gen ${n++}`), { ttlMs })
    try {
      const first = await waitFor(async () => await dhts[0].get(k).catch(() => undefined))
      // After 2 lifetimes the record must still be readable and newer than the first.
      await new Promise(resolve => setTimeout(resolve, 2 * ttlMs))
      const later = await dhts[0].get(k)
      expect(later.issuedAt).toBeGreaterThan(first.issuedAt)
      expect(later.expiresAt).toBeGreaterThan(Date.now())
    } finally {
      ann.stop()
    }
    // Stopped: the last record expires and readers stop seeing it.
    await new Promise(resolve => setTimeout(resolve, ttlMs + 100))
    await expect(dhts[0].get(k)).rejects.toBeInstanceOf(RecordNotFoundError)
  })

  it('provider records: every provider is found', async () => {
    await Promise.all(dhts.slice(0, 3).map(async d => { await d.provide('/ws-blocks/tiny/1') }))
    const found = await dhts[3].findProviders('/ws-blocks/tiny/1')
    expect(found.sort()).toEqual(s.peers.slice(0, 3).map(p => p.peerId.toString()).sort())
  })
})

async function waitFor<T> (f: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error('waitFor: timed out')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
