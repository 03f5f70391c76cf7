/**
 * Old and new peers refuse each other cleanly. The swarm protocols' ids went up a major version
 * when their messages became framed-stream metadata + typed tensors (infer and expert 1 → 2,
 * allreduce 3 → 4): a peer of the old version serves only the old ids, so either side's request
 * fails protocol negotiation at once, with an error naming the protocol, instead of trading
 * messages the other cannot parse or waiting for a timeout. An old message that reached a new
 * decoder anyway is refused by its version.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { createRelay, type RelayNode } from '../../web/src/net/node.ts'
import { ALLREDUCE, EXPERT, INFER } from '../../web/src/net/protocols.ts'
import { handleStream, openStream, type TensorMessage } from '../../web/src/net/stream/index.ts'
import { MalformedMessageError, PeerTimeoutError, PeerUnreachableError } from '../../web/src/swarm/errors.ts'
import { AllReduceProtocolError } from '../../web/src/swarm/train/errors.ts'
import { decodeMsg } from '../../web/src/swarm/train/wire.ts'
import { readExpert } from '../../web/src/swarm/wire/expert.ts'
import { readInfer, writeInfer } from '../../web/src/swarm/wire/infer.ts'
import { joinTestPeer, type SwarmTestPeer } from './libp2p-peer.ts'

/** Each protocol's id before this version, and a message of that version (one u8 tensor `msg`). */
const OLD = [
  { id: '/webswarm/infer/1.0.0', now: INFER.id, msg: [1, 7] }, // INFO
  { id: '/webswarm/expert/1.0.0', now: EXPERT.id, msg: [1, 15, 1, 0] }, // ERROR
  { id: '/webswarm/allreduce/3.0.0', now: ALLREDUCE.id, msg: [3, 10, 2, 0, 0, 0, 0x7b, 0x7d] } // ACK
]
const wrapped = (bytes: number[]): TensorMessage => ({ tensors: [{ name: 'msg', dtype: 'u8', shape: [bytes.length], data: Uint8Array.from(bytes) }] })
/** Far beyond a refusal's round trip: a request that took this long would have hung. */
const TIMEOUT_MS = 60_000

let relay: RelayNode
let fresh: SwarmTestPeer
let old: SwarmTestPeer

beforeAll(async () => {
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  fresh = await joinTestPeer(relay, 1)
  old = await joinTestPeer(relay, 1)
  // The new peer serves the new ids (echoing an INFO as the swarm would answer anything).
  for (const p of [INFER, EXPERT, ALLREDUCE]) fresh.transport.handle(p.id, async () => writeInfer({ type: 'error', code: 1, message: 'new' }))
  // The old peer serves only the old ids, answering its old wire form.
  for (const o of OLD) await handleStream(old.node, o.id, async (ch) => { for await (const m of ch) await ch.send(m) }, { maxTensors: 1, maxMetaBytes: 0 })
}, 60_000)

afterAll(async () => {
  fresh?.transport.close()
  old?.transport.close()
  await fresh?.node.stop()
  await old?.node.stop()
  await relay?.stop()
})

describe('protocol versions', () => {
  it('a new peer asking an old one is refused at negotiation, naming the protocol, without waiting for the timeout', async () => {
    for (const o of OLD) {
      const t0 = Date.now()
      const err = await fresh.transport.request(old.node.peerId.toString(), o.now, writeInfer({ type: 'info' }), { timeoutMs: TIMEOUT_MS }).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(PeerUnreachableError)
      expect(err).not.toBeInstanceOf(PeerTimeoutError)
      expect(String(err)).toMatch(/protocol/i)
      expect(Date.now() - t0).toBeLessThan(TIMEOUT_MS)
    }
  }, 120_000)

  it('an old peer asking a new one is refused at negotiation', async () => {
    await fresh.transport.connect(old.node.peerId.toString(), TIMEOUT_MS)
    for (const o of OLD) {
      const err = await openStream(old.node, peerIdFromString(fresh.node.peerId.toString()), o.id, { openTimeoutMs: TIMEOUT_MS })
        .then(async ch => { await ch.send(wrapped(o.msg)); return await ch.read() }).then(() => undefined, (e: unknown) => e)
      expect(err, o.id).toBeInstanceOf(Error)
      expect(String(err)).toMatch(/protocol/i)
    }
  }, 120_000)

  it('an old message that reaches a new decoder is refused by its version, with a typed error', () => {
    expect(() => readInfer(wrapped(OLD[0].msg))).toThrow(MalformedMessageError)
    expect(() => readInfer(wrapped(OLD[0].msg))).toThrow(/unsupported version undefined \(expected 2\)/)
    expect(() => readExpert(wrapped(OLD[1].msg))).toThrow(/unsupported version/)
    expect(() => decodeMsg(wrapped(OLD[2].msg))).toThrow(AllReduceProtocolError)
    expect(() => decodeMsg(wrapped(OLD[2].msg))).toThrow(/unsupported version undefined \(expected 4\)/)
  })
})
