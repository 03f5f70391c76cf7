import { readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  ALLREDUCE, CRDT_SYNC, KAD_PROTOCOL, SHARD_PROTOCOL, SWARM_PROTOCOLS, TENSOR_ECHO_PROTOCOL
} from '../../web/src/net/protocols.ts'
import { MAX_MESSAGE_BYTES, WIRE_VERSION } from '../../web/src/swarm/constants.ts'
import { MalformedMessageError, MessageTooLargeError } from '../../web/src/swarm/errors.ts'
import { fillProtocolDoc } from '../../web/src/swarm/protocol-doc.ts'
import { ALLREDUCE_MESSAGES, decodeMsg, encodeMsg, MsgType, type AllReduceMsg } from '../../web/src/swarm/train/wire.ts'
import { ALLREDUCE_WIRE_VERSION, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../../web/src/swarm/train/constants.ts'
import { AllReduceProtocolError } from '../../web/src/swarm/train/errors.ts'
import { ByteWriter } from '../../web/src/swarm/wire/bytes.ts'
import { EXPERT_MESSAGES, readExpert, writeExpert, type ExpertMsg } from '../../web/src/swarm/wire/expert.ts'
import { INFER_MESSAGES, INFER_TYPES, readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'

const t = (r: number, c: number): { shape: number[], data: Float32Array } => ({ shape: [r, c], data: Float32Array.from({ length: r * c }, (_, i) => i * 0.5 - 1) })

/**
 * Bytes of the hand-written codecs these schemas replaced (captured from them before the change):
 * the declared schemas write the same bytes, so peers on either side of the change interoperate
 * under the same protocol ids.
 */
const INFER_GOLDEN: Array<[InferMsg, string]> = [
  [{ type: 'open', model: 'm/x', start: 2, end: 5, maxTokens: 300 }, '0101036d2f780205ac02'],
  [{ type: 'opened', session: 'abc', cacheTokensLeft: 123456 }, '010203616263c0c407'],
  [{ type: 'step', session: 's', position: 7, hidden: t(2, 3) }, '010301730701020203000080bf000000bf000000000000003f0000803f0000c03f'],
  [{ type: 'output', session: 's', position: 7, hidden: t(1, 2) }, '010401730701020102000080bf000000bf'],
  [{ type: 'close', session: 's' }, '01050173'],
  [{ type: 'closed', session: 's' }, '01060173'],
  [{ type: 'info' }, '0107'],
  [{ type: 'infoOk', spans: [{ model: 'a', start: 0, end: 2 }, { model: 'b', start: 1, end: 9 }], throughput: 12.345, cacheTokensLeft: 99 }, '0108020161000201620109b96063'],
  [{ type: 'chain', session: 's', position: 3, tokens: 1, input: { hidden: t(1, 2) }, next: { peer: 'P', session: 'Q' } }, '0109017303010101020102000080bf000000bf0101500151'],
  [{ type: 'chain', session: 's', position: 3, tokens: 2, input: { from: 'F' } }, '01090173030202014600'],
  [{ type: 'chained', session: 's', position: 3, hidden: t(1, 2), pushError: 'no' }, '010a01730301020102000080bf000000bf026e6f'],
  [{ type: 'push', session: 's', position: 4, hidden: t(1, 1) }, '010b01730401020101000080bf'],
  [{ type: 'pushed', session: 's', position: 4 }, '010c017304'],
  [{ type: 'error', code: 5, message: 'full' }, '010f050466756c6c']
]
const EXPERT_GOLDEN: Array<[ExpertMsg, string]> = [
  [{ type: 'call', model: 'm', layer: 3, items: [{ expert: 1, rows: t(2, 2) }, { expert: 7, rows: t(1, 2) }] }, '0101016d03020101020202000080bf000000bf000000000000003f0701020102000080bf000000bf'],
  [{ type: 'result', items: [{ expert: 1, rows: t(2, 2) }] }, '0102010101020202000080bf000000bf000000000000003f'],
  [{ type: 'error', code: 8, message: 'x' }, '010f080178']
]

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const allreduceSamples: AllReduceMsg[] = [
  { type: MsgType.READY, run: 'r', round: 2, failedAttempt: -1, suspects: [] },
  { type: MsgType.START, run: 'r', round: 2, attempt: 0, key: 'a:2:0', members: ['a', 'b'] },
  { type: MsgType.REDUCE, run: 'r', round: 2, key: 'a:2:0', members: ['a', 'b'], part: 1, n: 64, partElements: 64, norm: 2.5, payload: new Uint8Array(68).fill(3) },
  { type: MsgType.RESULT, part: 1, n: 64, accepted: 2, rejected: [], clipped: ['b'], payload: new Uint8Array(68).fill(4) },
  { type: MsgType.STATE, run: 'r', round: 2, hash: 'h', momentumHash: 'm', total: 8, offset: 0, meta: '{}', payload: new Uint8Array(8) },
  { type: MsgType.ACK }
]

describe('declared wire schemas', () => {
  it('write the bytes the hand-written codecs wrote (same protocol ids, old and new peers interoperate)', () => {
    for (const [m, h] of INFER_GOLDEN) {
      expect(hex(writeInfer(m)), m.type).toBe(h)
      expect(readInfer(Buffer.from(h, 'hex'))).toEqual(m)
    }
    for (const [m, h] of EXPERT_GOLDEN) {
      expect(hex(writeExpert(m)), m.type).toBe(h)
      expect(readExpert(Buffer.from(h, 'hex'))).toEqual(m)
    }
    expect(INFER_GOLDEN.map(([m]) => m.type).filter((x, i, a) => a.indexOf(x) === i)).toEqual(Object.keys(INFER_MESSAGES))
    expect(EXPERT_GOLDEN.map(([m]) => m.type)).toEqual(Object.keys(EXPERT_MESSAGES))
    expect(INFER_TYPES).toMatchObject({ open: 1, chain: 9, error: 15 })
  })

  it('refuse every truncation, a wrong version, an unknown type and trailing bytes, with a typed error', () => {
    const cases = [...INFER_GOLDEN.map(([, h]) => ({ h, read: readInfer as (b: Uint8Array) => unknown })), ...EXPERT_GOLDEN.map(([, h]) => ({ h, read: readExpert }))]
    for (const { h, read } of cases) {
      const bytes = Buffer.from(h, 'hex')
      for (let n = 0; n < bytes.length; n++) expect(() => read(bytes.subarray(0, n)), `${hex(bytes)} cut at ${n}`).toThrow(MalformedMessageError)
      expect(() => read(Uint8Array.from([WIRE_VERSION + 1, ...bytes.subarray(1)]))).toThrow(/unsupported version 2/)
      expect(() => read(Uint8Array.from([...bytes, 0]))).toThrow(/trailing/)
    }
    expect(() => readInfer(Uint8Array.from([WIRE_VERSION, 13]))).toThrow(/unknown message type 13/)
    expect(() => readExpert(Uint8Array.from([WIRE_VERSION, 3]))).toThrow(/unknown message type 3/)
  })

  it('refuse oversized messages and fields before allocating', () => {
    expect(() => readInfer(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toThrow(MessageTooLargeError)
    // an INFO_OK listing 65 spans (cap 64), a CALL naming expert 256 (cap 255) or with 513 rows (cap 512)
    expect(() => readInfer(new ByteWriter().u8(1).u8(8).varint(65).finish())).toThrow(/span count = 65 exceeds 64/)
    expect(() => writeInfer({ type: 'infoOk', spans: Array.from({ length: 65 }, () => ({ model: 'm', start: 0, end: 1 })), throughput: 1, cacheTokensLeft: 1 })).toThrow(MessageTooLargeError)
    expect(() => readExpert(new ByteWriter().u8(1).u8(2).varint(1).varint(256).finish())).toThrow(/expert = 256 exceeds 255/)
    expect(() => readExpert(writeExpert({ type: 'result', items: [{ expert: 0, rows: t(513, 1) }] }))).toThrow(/513 rows exceed 512/)
    expect(() => readExpert(writeExpert({ type: 'result', items: [{ expert: 0, rows: { shape: [2], data: new Float32Array(2) } }] }))).toThrow(/expected rank 2/)
    expect(() => readInfer(new ByteWriter().u8(1).u8(3).string('s').varint(0).u8(1).u8(5).finish())).toThrow(/rank 5 exceeds 4/)
  })

  it('the all-reduce schema: every message round-trips; truncated, oversized, wrong-version and unknown messages are refused', () => {
    for (const m of allreduceSamples) {
      const b = encodeMsg(m)
      expect(decodeMsg(b)).toEqual(m)
      for (let n = 0; n < b.length; n++) {
        let ok = false
        try { decodeMsg(b.subarray(0, n)); ok = true } catch (e) { expect(e).toBeInstanceOf(AllReduceProtocolError) }
        // A cut inside the payload of a message that carries one still decodes (the payload is the rest): the receiver checks its length.
        if (ok) expect('payload' in m && n >= b.length - (m as { payload: Uint8Array }).payload.length, `${m.type} cut at ${n}`).toBe(true)
      }
      const v = b.slice(); v[0] = ALLREDUCE_WIRE_VERSION + 1
      expect(() => decodeMsg(v)).toThrow(/wire version/)
    }
    expect(() => encodeMsg({ type: MsgType.FAIL, reason: 'x'.repeat(MAX_HEADER_BYTES), suspects: [] })).toThrow(AllReduceProtocolError)
    const big = encodeMsg({ type: MsgType.STATE, run: 'r', round: 1, hash: 'h', momentumHash: 'm', total: 1, offset: 0, meta: '', payload: new Uint8Array(MAX_PAYLOAD_BYTES) })
    expect(big.length).toBeLessThanOrEqual(ALLREDUCE.maxMessageBytes)
    expect(() => decodeMsg(Uint8Array.from([...big, 0]))).toThrow(/payload of .* exceeds/)
    expect(() => decodeMsg(Uint8Array.from([ALLREDUCE_WIRE_VERSION, 13, 2, 0, 0, 0, 0x7b, 0x7d]))).toThrow(/unknown message type 13/)
    expect(Object.values(MsgType)).toEqual(Object.values(ALLREDUCE_MESSAGES).map(m => m.code))
  })

  it('PROTOCOL.md holds the tables rendered from the schemas (UPDATE_PROTOCOL_MD=1 rewrites them)', () => {
    const doc = readFileSync('PROTOCOL.md', 'utf8')
    const want = fillProtocolDoc(doc)
    if (process.env.UPDATE_PROTOCOL_MD === '1') writeFileSync('PROTOCOL.md', want)
    else expect(doc, 'PROTOCOL.md disagrees with the schemas: rerun this test with UPDATE_PROTOCOL_MD=1').toBe(want)
  })

  it('PROTOCOL.md names every registered protocol id, and no other', () => {
    const doc = readFileSync('PROTOCOL.md', 'utf8')
    const registered = [KAD_PROTOCOL, CRDT_SYNC.id, TENSOR_ECHO_PROTOCOL, SHARD_PROTOCOL, ...Object.values(SWARM_PROTOCOLS).map(p => p.id)]
    const named = new Set([...doc.matchAll(/`(\/webswarm\/[a-z-]+\/\d+\.\d+\.\d+)`/g)].map(m => m[1]))
    for (const id of registered) expect(named.has(id), `${id} is not in PROTOCOL.md`).toBe(true)
    for (const id of named) expect(registered.includes(id), `PROTOCOL.md names ${id}, which net/protocols.ts does not declare`).toBe(true)
  })
})
