import { readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  ALLREDUCE, CRDT_SYNC, KAD_PROTOCOL, SHARD_PROTOCOL, SWARM_PROTOCOLS, TENSOR_ECHO_PROTOCOL
} from '../../web/src/net/protocols.ts'
import { MAX_MESSAGE_BYTES, WIRE_VERSION } from '../../web/src/swarm/constants.ts'
import { MalformedMessageError, MessageTooLargeError } from '../../web/src/swarm/errors.ts'
import { fillProtocolDoc } from '../../web/src/swarm/protocol-doc.ts'
import { POW_STAMP } from '../../web/src/net/pow-protocol.ts'
import { ALLREDUCE_MESSAGES, decodeMsg, encodeMsg, MsgType, type AllReduceMsg } from '../../web/src/swarm/train/wire.ts'
import { ALLREDUCE_WIRE_VERSION, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../../web/src/swarm/train/constants.ts'
import { AllReduceProtocolError } from '../../web/src/swarm/train/errors.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { EXPERT_MESSAGES, readExpert, writeExpert, type ExpertMsg } from '../../web/src/swarm/wire/expert.ts'
import { INFER_MESSAGES, INFER_TYPES, readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'

const t = (r: number, c: number): { shape: number[], data: Float32Array } => ({ shape: [r, c], data: Float32Array.from({ length: r * c }, (_, i) => i * 0.5 - 1) })

/**
 * The wire form of each message (protocol version 2): the metadata, and the tensors by name and
 * shape. Written out by hand, so a change to the schema language that changed the wire fails here.
 */
type Golden<M> = Array<[M, Record<string, unknown>, Array<[string, number[]]>]>
const INFER_GOLDEN: Golden<InferMsg> = [
  [{ type: 'open', model: 'm/x', start: 2, end: 5, maxTokens: 300 }, { v: 2, t: 1, model: 'm/x', start: 2, end: 5, maxTokens: 300 }, []],
  [{ type: 'opened', session: 'abc', cacheTokensLeft: 123456 }, { v: 2, t: 2, session: 'abc', cacheTokensLeft: 123456 }, []],
  [{ type: 'step', session: 's', position: 7, hidden: t(2, 3) }, { v: 2, t: 3, session: 's', position: 7 }, [['hidden', [2, 3]]]],
  [{ type: 'output', session: 's', position: 7, hidden: t(1, 2) }, { v: 2, t: 4, session: 's', position: 7 }, [['hidden', [1, 2]]]],
  [{ type: 'close', session: 's' }, { v: 2, t: 5, session: 's' }, []],
  [{ type: 'closed', session: 's' }, { v: 2, t: 6, session: 's' }, []],
  [{ type: 'info' }, { v: 2, t: 7 }, []],
  [{ type: 'infoOk', spans: [{ model: 'a', start: 0, end: 2 }, { model: 'b', start: 1, end: 9 }], throughput: 12.345, cacheTokensLeft: 99 }, { v: 2, t: 8, spans: [{ model: 'a', start: 0, end: 2 }, { model: 'b', start: 1, end: 9 }], throughput: 12345, cacheTokensLeft: 99 }, []],
  [{ type: 'chain', session: 's', position: 3, tokens: 1, input: { hidden: t(1, 2) }, next: { peer: 'P', session: 'Q' } }, { v: 2, t: 9, session: 's', position: 3, tokens: 1, input: { case: 1 }, next: { peer: 'P', session: 'Q' } }, [['input.hidden', [1, 2]]]],
  [{ type: 'chain', session: 's', position: 3, tokens: 2, input: { from: 'F' } }, { v: 2, t: 9, session: 's', position: 3, tokens: 2, input: { case: 2, from: 'F' } }, []],
  [{ type: 'chained', session: 's', position: 3, hidden: t(1, 2), pushError: 'no' }, { v: 2, t: 10, session: 's', position: 3, pushError: 'no' }, [['hidden', [1, 2]]]],
  [{ type: 'push', session: 's', position: 4, hidden: t(1, 1) }, { v: 2, t: 11, session: 's', position: 4 }, [['hidden', [1, 1]]]],
  [{ type: 'pushed', session: 's', position: 4 }, { v: 2, t: 12, session: 's', position: 4 }, []],
  [{ type: 'stepCommit', session: 's', position: 7, hidden: t(2, 3), k: 2 }, { v: 2, t: 13, session: 's', position: 7, k: 2 }, [['hidden', [2, 3]]]],
  [{ type: 'commitment', session: 's', position: 7, k: 1, rows: 2, data: new Uint8Array(16).fill(1) }, { v: 2, t: 14, session: 's', position: 7, k: 1, rows: 2 }, [['data', [16]]]],
  [{ type: 'error', code: 5, message: 'full' }, { v: 2, t: 15, code: 5, message: 'full' }, []]
]
const EXPERT_GOLDEN: Golden<ExpertMsg> = [
  [{ type: 'call', model: 'm', layer: 3, items: [{ expert: 1, rows: t(2, 2) }, { expert: 7, rows: t(1, 2) }] }, { v: 2, t: 1, model: 'm', layer: 3, items: [{ expert: 1 }, { expert: 7 }] }, [['items.0.rows', [2, 2]], ['items.1.rows', [1, 2]]]],
  [{ type: 'result', items: [{ expert: 1, rows: t(2, 2) }] }, { v: 2, t: 2, items: [{ expert: 1 }] }, [['items.0.rows', [2, 2]]]],
  [{ type: 'error', code: 8, message: 'x' }, { v: 2, t: 15, code: 8, message: 'x' }, []]
]

const shapes = (m: TensorMessage): Array<[string, number[]]> => m.tensors.map(x => [x.name, x.shape])
/** `m` with metadata `meta` (and `tensors`, when given). */
const withMeta = (m: TensorMessage, meta: Record<string, unknown>, tensors = m.tensors): TensorMessage => ({ meta: meta as TensorMessage['meta'], tensors })
const readers = [
  ...INFER_GOLDEN.map(([m]) => ({ m: writeInfer(m), read: readInfer as (b: TensorMessage) => unknown })),
  ...EXPERT_GOLDEN.map(([m]) => ({ m: writeExpert(m), read: readExpert as (b: TensorMessage) => unknown }))
]

const allreduceSamples: AllReduceMsg[] = [
  { type: MsgType.READY, run: 'r', round: 2, failedAttempt: -1, suspects: [] },
  { type: MsgType.START, run: 'r', round: 2, attempt: 0, key: 'a:2:0', members: ['a', 'b'] },
  { type: MsgType.REDUCE, run: 'r', round: 2, key: 'a:2:0', members: ['a', 'b'], part: 1, n: 64, partElements: 64, norm: 2.5, payload: new Uint8Array(68).fill(3) },
  { type: MsgType.RESULT, part: 1, n: 64, accepted: 2, rejected: [], clipped: ['b'], payload: new Uint8Array(68).fill(4) },
  { type: MsgType.STATE, run: 'r', round: 2, hash: 'h', momentumHash: 'm', total: 8, offset: 0, meta: '{}', payload: new Uint8Array(8) },
  { type: MsgType.ACK }
]

describe('declared wire schemas', () => {
  it('write each message as stream metadata plus typed f32 tensors named by their path, and read it back', () => {
    const written = [...INFER_GOLDEN.map(([m, meta, ts]) => [writeInfer(m), meta, ts] as const), ...EXPERT_GOLDEN.map(([m, meta, ts]) => [writeExpert(m), meta, ts] as const)]
    for (const [w, meta, tensors] of written) {
      expect(w.meta).toEqual(meta)
      expect(shapes(w)).toEqual(tensors)
      for (const x of w.tensors) expect(x.dtype).toBe(x.name === 'data' ? 'u8' : 'f32') // bytes fields travel as u8
    }
    for (const [m] of INFER_GOLDEN) expect(readInfer(writeInfer(m))).toEqual(m)
    for (const [m] of EXPERT_GOLDEN) expect(readExpert(writeExpert(m))).toEqual(m)
    expect(INFER_GOLDEN.map(([m]) => m.type).filter((x, i, a) => a.indexOf(x) === i)).toEqual(Object.keys(INFER_MESSAGES))
    expect(EXPERT_GOLDEN.map(([m]) => m.type)).toEqual(Object.keys(EXPERT_MESSAGES))
    expect(INFER_TYPES).toMatchObject({ open: 1, chain: 9, error: 15 })
  })

  it('refuse every missing field or tensor, a wrong version, an unknown type, unknown fields and extra tensors, with a typed error', () => {
    for (const { m, read } of readers) {
      const meta = m.meta as Record<string, unknown>
      for (const k of Object.keys(meta).filter(k => k !== 'next')) { // next: optional
        const cut = { ...meta }
        delete cut[k] // eslint-disable-line @typescript-eslint/no-dynamic-delete
        expect(() => read(withMeta(m, cut)), `${JSON.stringify(meta)} without ${k}`).toThrow(MalformedMessageError)
      }
      for (let i = 0; i < m.tensors.length; i++) expect(() => read(withMeta(m, meta, m.tensors.filter((_, j) => j !== i)))).toThrow(/missing tensor/)
      expect(() => read(withMeta(m, { ...meta, v: WIRE_VERSION + 1 }))).toThrow(/unsupported version 3/)
      expect(() => read(withMeta(m, { ...meta, extra: 1 }))).toThrow(/unknown field extra/)
      expect(() => read(withMeta(m, meta, [...m.tensors, { name: 'x', dtype: 'f32', shape: [1], data: new Uint8Array(4) }]))).toThrow(/unexpected tensor x/)
    }
    expect(() => readInfer({ meta: { v: WIRE_VERSION, t: 16 }, tensors: [] })).toThrow(/unknown message type 16/)
    expect(() => readExpert({ meta: { v: WIRE_VERSION, t: 3 }, tensors: [] })).toThrow(/unknown message type 3/)
    expect(() => readInfer({ tensors: [] })).toThrow(MalformedMessageError)
  })

  it('refuse oversized lists, numbers and tensors, and a wrong dtype or rank', () => {
    // an INFO_OK listing 65 spans (cap 64), a CALL naming expert 256 (cap 255) or with 513 rows (cap 512)
    const span = { model: 'm', start: 0, end: 1 }
    expect(() => readInfer({ meta: { v: WIRE_VERSION, t: 8, spans: Array(65).fill(span), throughput: 1, cacheTokensLeft: 1 }, tensors: [] })).toThrow(/span count = 65 exceeds 64/)
    expect(() => writeInfer({ type: 'infoOk', spans: Array.from({ length: 65 }, () => span), throughput: 1, cacheTokensLeft: 1 })).toThrow(MessageTooLargeError)
    const call = writeExpert({ type: 'call', model: 'm', layer: 0, items: [{ expert: 0, rows: t(1, 2) }] })
    expect(() => readExpert(withMeta(call, { ...call.meta, items: [{ expert: 256 }] }))).toThrow(/expert = 256 exceeds 255/)
    expect(() => readExpert(writeExpert({ type: 'result', items: [{ expert: 0, rows: t(513, 1) }] }))).toThrow(/513 rows exceed 512/)
    expect(() => readExpert(writeExpert({ type: 'result', items: [{ expert: 0, rows: { shape: [2], data: new Float32Array(2) } }] }))).toThrow(/expected rank 2/)
    const step = writeInfer({ type: 'step', session: 's', position: 0, hidden: t(1, 2) })
    expect(() => readInfer(withMeta(step, step.meta!, [{ name: 'hidden', dtype: 'f32', shape: [1, 1, 1, 1, 2], data: new Uint8Array(8) }]))).toThrow(/rank 5 exceeds 4/)
    expect(() => readInfer(withMeta(step, step.meta!, [{ name: 'hidden', dtype: 'i32', shape: [1, 2], data: new Uint8Array(8) }]))).toThrow(/unsupported dtype i32/)
    expect(() => readInfer(withMeta(step, step.meta!, [{ name: 'hidden', dtype: 'f32', shape: [1, 2], data: new Uint8Array(4) }]))).toThrow(/do not hold f32/)
    expect(() => writeInfer({ type: 'step', session: 's', position: 0, hidden: { shape: [MAX_MESSAGE_BYTES / 4 + 1], data: new Float32Array(MAX_MESSAGE_BYTES / 4 + 1) } })).toThrow(MessageTooLargeError)
    expect(() => readInfer(withMeta(step, { ...step.meta, position: 1.5 }))).toThrow(/position must be an integer/)
    expect(() => readInfer(withMeta(step, { ...step.meta, session: 'x'.repeat(1025) }))).toThrow(MessageTooLargeError)
  })

  it('the all-reduce schema: every message round-trips; missing fields, oversized, wrong-version and unknown messages are refused', () => {
    for (const m of allreduceSamples) {
      const b = encodeMsg(m)
      expect(decodeMsg(b)).toEqual(m)
      const meta = b.meta as Record<string, unknown>
      for (const k of Object.keys(meta)) {
        const cut = { ...meta }
        delete cut[k] // eslint-disable-line @typescript-eslint/no-dynamic-delete
        expect(() => decodeMsg(withMeta(b, cut)), `${m.type} without ${k}`).toThrow(AllReduceProtocolError)
      }
      if ('payload' in m) expect(() => decodeMsg(withMeta(b, meta, []))).toThrow(/missing tensor payload/)
      else expect(() => decodeMsg(withMeta(b, meta, [{ name: 'payload', dtype: 'u8', shape: [1], data: new Uint8Array(1) }]))).toThrow(/unexpected tensor payload/)
      expect(() => decodeMsg(withMeta(b, { ...meta, v: ALLREDUCE_WIRE_VERSION + 1 }))).toThrow(/unsupported version/)
    }
    expect(() => encodeMsg({ type: MsgType.FAIL, reason: 'x'.repeat(MAX_HEADER_BYTES), suspects: [] })).toThrow(AllReduceProtocolError)
    const big = encodeMsg({ type: MsgType.STATE, run: 'r', round: 1, hash: 'h', momentumHash: 'm', total: 1, offset: 0, meta: '', payload: new Uint8Array(MAX_PAYLOAD_BYTES) })
    expect(big.tensors[0].data.byteLength).toBeLessThanOrEqual(ALLREDUCE.maxMessageBytes)
    const over = new Uint8Array(MAX_PAYLOAD_BYTES + 1)
    expect(() => decodeMsg(withMeta(big, big.meta!, [{ name: 'payload', dtype: 'u8', shape: [over.length], data: over }]))).toThrow(/payload of .* exceeds/)
    expect(() => decodeMsg({ meta: { v: ALLREDUCE_WIRE_VERSION, t: 13 }, tensors: [] })).toThrow(/unknown message type 13/)
    expect(Object.values(MsgType)).toEqual(Object.values(ALLREDUCE_MESSAGES).map(m => m.code))
    // The wire form, written out by hand (as INFER_GOLDEN): the schema language carries the same
    // metadata and payload tensor as the all-reduce's own field table did under version 4.
    const ready = encodeMsg(allreduceSamples[0])
    expect(ready).toEqual({ meta: { v: 4, t: 1, run: 'r', round: 2, failedAttempt: -1, suspects: [] }, tensors: [] })
    const reduce = encodeMsg(allreduceSamples[2])
    expect(reduce.meta).toEqual({ v: 4, t: 4, run: 'r', round: 2, key: 'a:2:0', members: ['a', 'b'], part: 1, n: 64, partElements: 64, norm: 2.5 })
    expect(reduce.tensors.map(x => [x.name, x.dtype, x.shape])).toEqual([['payload', 'u8', [68]]])
  })

  it('PROTOCOL.md holds the tables rendered from the schemas (UPDATE_PROTOCOL_MD=1 rewrites them)', () => {
    const doc = readFileSync('PROTOCOL.md', 'utf8')
    const want = fillProtocolDoc(doc)
    if (process.env.UPDATE_PROTOCOL_MD === '1') writeFileSync('PROTOCOL.md', want)
    else expect(doc, 'PROTOCOL.md disagrees with the schemas: rerun this test with UPDATE_PROTOCOL_MD=1').toBe(want)
  })

  it('PROTOCOL.md names every registered protocol id, and no other', () => {
    const doc = readFileSync('PROTOCOL.md', 'utf8')
    const registered = [KAD_PROTOCOL, CRDT_SYNC.id, TENSOR_ECHO_PROTOCOL, SHARD_PROTOCOL, POW_STAMP.id, ...Object.values(SWARM_PROTOCOLS).map(p => p.id)]
    const named = new Set([...doc.matchAll(/`(\/webswarm\/[a-z-]+\/\d+\.\d+\.\d+)`/g)].map(m => m[1]))
    for (const id of registered) expect(named.has(id), `${id} is not in PROTOCOL.md`).toBe(true)
    for (const id of named) expect(registered.includes(id), `PROTOCOL.md names ${id}, which net/protocols.ts does not declare`).toBe(true)
  })
})
