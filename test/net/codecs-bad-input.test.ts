import { describe, expect, it } from 'vitest'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeSyncFrame, encodeSyncFrame, SYNC_STEP1, SYNC_STEP2 } from '../../web/src/net/crdt/sync.ts'
import { blockKey, signRecord, verifyRecord } from '../../web/src/net/dht/index.ts'
import { InvalidRecordError, MalformedMessageError, UnsupportedMessageError } from '../../web/src/net/errors.ts'
import { DHT_NAMESPACES } from '../../web/src/net/protocols.ts'
import { Writer } from '../../web/src/net/wire.ts'

/** Bad input for the net layer's byte codecs: malformed, truncated, oversized, wrong version. */
describe('crdt-sync frames', () => {
  const good = encodeSyncFrame({ type: SYNC_STEP2, swarm: 'default', payload: new Uint8Array([1, 2, 3]) })

  it('round-trip', () => {
    expect(decodeSyncFrame(good)).toEqual({ type: SYNC_STEP2, swarm: 'default', generation: { n: 0, tag: 0 }, payload: new Uint8Array([1, 2, 3]) })
  })

  it('refuse every truncation, trailing bytes, an unknown frame type and an oversized swarm name', () => {
    for (let n = 0; n < good.length; n++) expect(() => decodeSyncFrame(good.subarray(0, n)), `cut at ${n}`).toThrow(n === 0 ? MalformedMessageError : /malformed message/)
    expect(() => decodeSyncFrame(Uint8Array.from([...good, 0]))).toThrow(/trailing/)
    expect(() => decodeSyncFrame(Uint8Array.from([9, ...good.subarray(1)]))).toThrow(UnsupportedMessageError)
    expect(() => decodeSyncFrame(encodeSyncFrame({ type: SYNC_STEP1, swarm: 's'.repeat(65), payload: new Uint8Array(0) }))).toThrow(/swarm: length 65 exceeds cap 64/)
    expect(() => decodeSyncFrame(new Writer().u8(SYNC_STEP1).string('default').varuint(0).varuint(0).varuint(2 ** 30).finish())).toThrow(/payload: length .* exceeds cap/)
  })
})

describe('signed DHT record values', () => {
  it('refuse every truncation, trailing bytes, another version and an oversized payload, as InvalidRecordError', async () => {
    const key = await generateKeyPair('Ed25519')
    const k = blockKey('tiny', 1, peerIdFromPrivateKey(key).toString())
    const now = 1_000_000
    const v = await signRecord(key, k, new TextEncoder().encode('x'), 60_000, now)
    await expect(verifyRecord(k, v, now)).resolves.toMatchObject({ key: k })
    for (let n = 0; n < v.length; n++) await expect(verifyRecord(k, v.subarray(0, n), now), `cut at ${n}`).rejects.toThrow(InvalidRecordError)
    await expect(verifyRecord(k, Uint8Array.from([...v, 0]), now)).rejects.toThrow(/trailing/)
    const v2 = v.slice(); v2[0] = 2
    await expect(verifyRecord(k, v2, now)).rejects.toThrow(/record version 2, expected 1/)
    // A payload over the namespace's cap is refused on its length, before the bytes are read.
    const big = new Writer().u8(1).bytes(publicKeyToProtobuf(key.publicKey)).f64(now).f64(now + 1000).varuint(DHT_NAMESPACES.blocks.maxValueBytes + 1).finish()
    await expect(verifyRecord(k, big, now)).rejects.toThrow(/payload: length 4097 exceeds cap 4096/)
  })

  it('refuse a key longer than a signer may sign, whatever the value', async () => {
    const key = await generateKeyPair('Ed25519')
    const now = 1_000_000
    const long = blockKey('m'.repeat(600), 1, peerIdFromPrivateKey(key).toString())
    await expect(signRecord(key, long, new Uint8Array(1), 60_000, now)).rejects.toThrow(/longer than 512 bytes/)
    const ok = await signRecord(key, blockKey('tiny', 1, peerIdFromPrivateKey(key).toString()), new Uint8Array(1), 60_000, now)
    await expect(verifyRecord(long, ok, now)).rejects.toThrow(/key is longer than 512 bytes/)
  })
})
