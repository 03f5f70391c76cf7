import { describe, expect, it } from 'vitest'
import { ALLREDUCE, EXPERT, INFER, SWARM_PROTOCOLS } from '../../web/src/net/protocols.ts'
import { PeerTimeoutError, SwarmArgumentError } from '../../web/src/swarm/errors.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { maxTensorsOf } from '../../web/src/swarm/wire/schema.ts'
import { INFER_MESSAGES, writeInfer } from '../../web/src/swarm/wire/infer.ts'
import { EXPERT_MESSAGES } from '../../web/src/swarm/wire/expert.ts'
import { MAX_MESSAGE_BYTES } from '../../web/src/swarm/constants.ts'
import { MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../../web/src/swarm/train/constants.ts'
import { channelLimits, specOf } from '../../web/src/swarm/transport/libp2p.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'

describe('the libp2p transport enforces the registry', () => {
  it('each protocol\'s channels take their bytes, message count, stream counts and relay rule from its declaration', () => {
    for (const spec of Object.values(SWARM_PROTOCOLS)) {
      expect(specOf(spec.id)).toBe(spec)
      expect(channelLimits(spec)).toMatchObject({
        maxMessageBytes: spec.maxMessageBytes,
        maxMessages: spec.maxMessagesPerStream,
        maxInboundStreams: spec.maxInboundStreams,
        maxOutboundStreams: spec.maxOutboundStreams,
        runOnLimitedConnection: spec.runOnLimitedConnection,
        maxTensors: spec.maxTensors,
        maxMetaBytes: spec.maxMetaBytes
      })
    }
    expect(channelLimits(INFER, true).runOnLimitedConnection).toBe(true)
  })

  it('refuses a protocol declared nowhere', () => {
    expect(() => specOf('/webswarm/nothing/1.0.0')).toThrow(SwarmArgumentError)
  })

  it('the declared sizes hold the largest message each codec writes', () => {
    expect(INFER.maxMessageBytes).toBeGreaterThanOrEqual(MAX_MESSAGE_BYTES)
    expect(EXPERT.maxMessageBytes).toBeGreaterThanOrEqual(MAX_MESSAGE_BYTES)
    // the payload tensor, and the JSON header as metadata
    expect(ALLREDUCE.maxMessageBytes).toBeGreaterThanOrEqual(MAX_PAYLOAD_BYTES)
    expect(ALLREDUCE.maxMetaBytes).toBeGreaterThanOrEqual(MAX_HEADER_BYTES)
    // each schema's most tensors in one message is what its channels allow
    expect(maxTensorsOf(INFER_MESSAGES)).toBe(INFER.maxTensors)
    expect(maxTensorsOf(EXPERT_MESSAGES)).toBe(EXPERT.maxTensors)
    expect(ALLREDUCE.maxTensors).toBe(1)
    // the largest metadata an INFO_OK may carry (64 spans of 64-byte model ids) fits
    const spans = Array.from({ length: 64 }, () => ({ model: 'm'.repeat(64), start: 1_000_000, end: 1_000_001 }))
    expect(JSON.stringify(writeInfer({ type: 'infoOk', spans, throughput: 1e6, cacheTokensLeft: 8192 }).meta).length).toBeLessThanOrEqual(INFER.maxMetaBytes)
  })
})

/** One u8 tensor of `n` bytes. */
const bytes = (n: number): TensorMessage => ({ tensors: [{ name: 'x', dtype: 'u8', shape: [n], data: new Uint8Array(n) }] })
const length = (m: TensorMessage): number => m.tensors[0].data.byteLength

describe('the memory transport enforces the same limits', () => {
  it('a request or reply over the protocol\'s declared size resets the exchange; ad-hoc test protocols are not capped', async () => {
    const net = new MemoryNetwork({ seed: 3 })
    const a = net.endpoint('A')
    const b = net.endpoint('B')
    const big = bytes(ALLREDUCE.maxMessageBytes + 1)
    b.handle(ALLREDUCE.id, async (_from, body) => length(body) === 1 ? big : body)
    b.handle('/test/echo/1.0.0', async (_from, body) => body)
    await expect(a.request('B', ALLREDUCE.id, big, { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: request of/)
    await expect(a.request('B', ALLREDUCE.id, bytes(1), { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: reply of/)
    expect(length(await a.request('B', ALLREDUCE.id, bytes(8), { timeoutMs: 5000 }))).toBe(8)
    expect(length(await a.request('B', '/test/echo/1.0.0', big, { timeoutMs: 5000 }))).toBe(big.tensors[0].data.byteLength)
  })

  it('more tensors or metadata than declared reset the exchange; what arrives is a copy', async () => {
    const net = new MemoryNetwork({ seed: 4 })
    const a = net.endpoint('A')
    net.endpoint('B').handle(INFER.id, async (_from, body) => body)
    const two: TensorMessage = { tensors: [bytes(1).tensors[0], { ...bytes(1).tensors[0], name: 'y' }] }
    await expect(a.request('B', INFER.id, two, { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: request of .*2 tensors > limit 1/)
    await expect(a.request('B', INFER.id, { meta: { s: 'x'.repeat(INFER.maxMetaBytes) }, tensors: [] }, { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: request of .*metadata/)
    const sent = bytes(4)
    const got = await a.request('B', INFER.id, { meta: { k: [1, 'two'] }, tensors: sent.tensors }, { timeoutMs: 5000 })
    expect(got).toEqual({ meta: { k: [1, 'two'] }, tensors: sent.tensors })
    expect(got.tensors[0].data).not.toBe(sent.tensors[0].data)
  })

  it('a request times out on the injected clock, not on real time', async () => {
    const clock = new ManualClock()
    const net = new MemoryNetwork({ seed: 5, clock })
    const a = net.endpoint('A')
    net.endpoint('B').handle(INFER.id, async () => await new Promise<TensorMessage>(() => {})) // never answers
    let err: unknown
    const p = a.request('B', INFER.id, bytes(1), { timeoutMs: 1000 }).catch((e: unknown) => { err = e })
    await new Promise(resolve => setImmediate(resolve))
    clock.advance(999)
    await new Promise(resolve => setImmediate(resolve))
    expect(err).toBeUndefined()
    clock.advance(1)
    await p
    expect(err).toBeInstanceOf(PeerTimeoutError)
  })
})
