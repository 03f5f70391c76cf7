import { describe, expect, it } from 'vitest'
import { ALLREDUCE, EXPERT, INFER, SWARM_PROTOCOLS } from '../../web/src/net/protocols.ts'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'
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
        maxTensors: 1
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
    // version + type + u32 header length, the header, the payload
    expect(ALLREDUCE.maxMessageBytes).toBeGreaterThanOrEqual(6 + MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES)
  })
})

describe('the memory transport enforces the same byte caps', () => {
  it('a request or reply over the protocol\'s declared size resets the exchange; ad-hoc test protocols are not capped', async () => {
    const net = new MemoryNetwork({ seed: 3 })
    const a = net.endpoint('A')
    const b = net.endpoint('B')
    const big = new Uint8Array(ALLREDUCE.maxMessageBytes + 1)
    b.handle(ALLREDUCE.id, async (_from, body) => body.length === 1 ? big : body)
    b.handle('/test/echo/1.0.0', async (_from, body) => body)
    await expect(a.request('B', ALLREDUCE.id, big, { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: request of/)
    await expect(a.request('B', ALLREDUCE.id, new Uint8Array(1), { timeoutMs: 5000 })).rejects.toThrow(/LimitExceededError: reply of/)
    expect((await a.request('B', ALLREDUCE.id, new Uint8Array(8), { timeoutMs: 5000 })).length).toBe(8)
    expect((await a.request('B', '/test/echo/1.0.0', big, { timeoutMs: 5000 })).length).toBe(big.length)
  })
})
