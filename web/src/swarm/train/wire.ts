/**
 * Codec of the `allreduce` protocol (grammar: PROTOCOL.md § allreduce). Each message is one
 * request or reply of the swarm's request/response transport, i.e. one message of the framed
 * tensor stream (net/stream, the one tensor codec), declared in swarm/wire/schema.ts's schema
 * language like `infer` and `expert`, whose codec and table renderer it uses:
 *
 *   metadata   { v: ALLREDUCE_WIRE_VERSION, t: type, ...header fields } (JSON, ≤ MAX_HEADER_BYTES)
 *   tensors    `payload`: u8 [bytes] (q8 bytes or snapshot bytes; ≤ MAX_PAYLOAD_BYTES), only in
 *              the messages that declare one
 *
 * Unlike infer/expert, a message's `type` is its type byte (MsgType), and every failure to
 * encode or decode is an AllReduceProtocolError (the all-reduce's callers refuse those alone).
 */
import { ALLREDUCE } from '../../net/protocols.ts'
import type { TensorMessage } from '../../net/stream/index.ts'
import { MalformedMessageError, MessageTooLargeError, SwarmArgumentError } from '../errors.ts'
import { bytes, defineMessages, messageCodec, real, str, strings, varint, type MessageOf } from '../wire/schema.ts'
import { ALLREDUCE_WIRE_VERSION, MAX_HEADER_BYTES, MAX_ID_CHARS, MAX_MEMBERS, MAX_PAYLOAD_BYTES } from './constants.ts'
import { AllReduceProtocolError } from './errors.ts'

// ------------------------------------------------------------ the schema: every message, once

/** A string of ≤ `maxChars` characters (peer ids, run names, keys); the header cap bounds its bytes. */
const text = (maxChars = MAX_ID_CHARS): ReturnType<typeof str> => str({ maxChars, maxBytes: MAX_HEADER_BYTES })
/** An integer in [min, max]. */
const int = (min = 0, max = Number.MAX_SAFE_INTEGER, note?: string): ReturnType<typeof varint> => varint(max, { min, note })
/** ≤ MAX_MEMBERS peer ids; `sorted`: sorted, unique and non-empty (a member list). */
const ids = (sorted = false): ReturnType<typeof strings> => strings(MAX_MEMBERS, { maxChars: MAX_ID_CHARS, sorted })
/** The message's payload tensor, holding `what`. */
const payload = (what: string): ReturnType<typeof bytes> => bytes(MAX_PAYLOAD_BYTES, { note: what })

const key = text(2 * MAX_ID_CHARS)

/** Every all-reduce message: type byte, direction, header fields (JSON, checked in this order) and payload. */
export const ALLREDUCE_MESSAGES = defineMessages({
  /** member → coordinator: ready for `round`; after a failed attempt, which attempt and whom it suspects. */
  READY: { code: 1, dir: 'member → coordinator', fields: { run: text(), round: int(), failedAttempt: int(-1, undefined, '−1 first'), suspects: ids() } },
  /** coordinator → member: attempt `attempt` of `round` runs with exactly these members (sorted). */
  START: { code: 2, dir: 'reply to READY', fields: { run: text(), round: int(), attempt: int(), key, members: ids(true) } },
  /** coordinator → member: the round completed without you (or you were left out): resync. */
  BEHIND: { code: 3, dir: 'reply to READY', fields: { run: text(), round: int(), completed: int(-1) } },
  /**
   * member → owner: my contribution to `part` of attempt `key` (payload: q8), the vector cut in
   * parts of ≤ `partElements`; `norm`: the sender's L2 norm of its whole contribution this round
   * (the owners' norm rule compares peers by it, reduce.ts).
   */
  REDUCE: {
    code: 4,
    dir: 'member → part owner',
    fields: { run: text(), round: int(), key, members: ids(true), part: int(), n: int(1), partElements: int(1, undefined, 'the owner refuses another than its own'), norm: real({ note: 'L2 norm of the sender\'s whole Δ in q8' }), payload: payload('q8 slice of the member\'s Δ') }
  },
  /** owner/member → member: the reduced part (payload: q8 mean); who was refused or clipped. */
  RESULT: { code: 5, dir: 'reply to REDUCE/FETCH', fields: { part: int(), n: int(1, undefined, 'part length'), accepted: int(), rejected: ids(), clipped: ids(), payload: payload('q8 mean of the part') } },
  /** Refusal of a REDUCE/READY: why, and which members the sender suspects. */
  FAIL: { code: 6, dir: 'reply to anything', fields: { reason: text(1024), suspects: ids() } },
  /** member → member: do you hold the reduced `part` of attempt `key`? (repair after an owner died). */
  FETCH: { code: 7, dir: 'member → member', fields: { run: text(), key, part: int() } },
  NONE: { code: 8, dir: 'reply to FETCH', fields: {} },
  /** member → coordinator: I completed attempt `key` of `round`. */
  DONE: { code: 9, dir: 'member → coordinator', fields: { run: text(), round: int(), key } },
  ACK: { code: 10, dir: 'reply to DONE', fields: {} },
  /** late joiner → member: bytes [offset, offset + length) of your committed state. */
  SNAPSHOT: { code: 11, dir: 'joiner → member', fields: { run: text(), offset: int(), length: int(1, MAX_PAYLOAD_BYTES) } },
  /** member → late joiner: a slice of θ_global ‖ outer momentum (f32 LE) after `round`. */
  STATE: {
    code: 12,
    dir: 'reply to SNAPSHOT',
    fields: { run: text(), round: int(-1), hash: text(64), momentumHash: text(64), total: int(), offset: int(), meta: text(4096), payload: payload('bytes [offset, offset+len) of θ_global ‖ momentum (f32 LE)') }
  }
})

type Specs = typeof ALLREDUCE_MESSAGES

/** Message type bytes, by name. */
export const MsgType = Object.fromEntries(Object.entries(ALLREDUCE_MESSAGES).map(([k, m]) => [k, m.code])) as { readonly [K in keyof Specs]: Specs[K]['code'] }

type Simplify<T> = { [K in keyof T]: T[K] } & {}
/** A schema message with its type byte as `type` (distributes over the union). */
type ByCode<M> = M extends { type: infer K extends keyof Specs } ? Simplify<Omit<M, 'type'> & { type: Specs[K]['code'] }> : never
type MsgOf<K extends keyof Specs> = ByCode<Extract<MessageOf<Specs>, { type: K }>>

export type ReadyMsg = MsgOf<'READY'>
export type ReduceMsg = MsgOf<'REDUCE'>
export type ResultMsg = MsgOf<'RESULT'>
export type FailMsg = MsgOf<'FAIL'>
export type FetchMsg = MsgOf<'FETCH'>
export type DoneMsg = MsgOf<'DONE'>
export type SnapshotMsg = MsgOf<'SNAPSHOT'>
export type AllReduceMsg = { [K in keyof Specs]: MsgOf<K> }[keyof Specs]

const NAME_BY_CODE = new Map(Object.entries(ALLREDUCE_MESSAGES).map(([name, m]) => [m.code as number, name as keyof Specs]))
const codec = messageCodec(ALLREDUCE, ALLREDUCE_WIRE_VERSION, ALLREDUCE_MESSAGES)

/** Runs `f`, turning the schema codec's failures into the all-reduce's own error. */
function asProtocolError<T> (f: () => T): T {
  try {
    return f()
  } catch (e) {
    if (e instanceof MalformedMessageError || e instanceof MessageTooLargeError || e instanceof SwarmArgumentError) throw new AllReduceProtocolError(e.message, { cause: e })
    throw e
  }
}

export function encodeMsg (m: AllReduceMsg): TensorMessage {
  const name = NAME_BY_CODE.get(m.type)
  if (name === undefined) throw new AllReduceProtocolError(`unknown message type ${String(m.type)}`)
  return asProtocolError(() => codec.write({ ...m, type: name } as MessageOf<Specs>))
}

/**
 * The encoding of `m` with room for a payload of `payloadBytes` (m's own payload, if any, is
 * ignored): the message, and its payload (a fresh buffer, so 4-byte aligned) for the caller to
 * fill in place (an owner quantizes a part's mean straight into its RESULT).
 */
export function allocMsg (m: AllReduceMsg, payloadBytes: number): { body: TensorMessage, payload: Uint8Array } {
  if (payloadBytes > MAX_PAYLOAD_BYTES) throw new AllReduceProtocolError(`payload of ${payloadBytes} bytes exceeds ${MAX_PAYLOAD_BYTES}`)
  const payload = new Uint8Array(payloadBytes)
  return { body: encodeMsg({ ...m, payload } as AllReduceMsg), payload }
}

/** Stream message → all-reduce message. Throws AllReduceProtocolError naming the problem; never returns a partial message. */
export function decodeMsg (message: TensorMessage): AllReduceMsg {
  const m = asProtocolError(() => codec.read(message))
  return { ...m, type: ALLREDUCE_MESSAGES[m.type].code } as AllReduceMsg
}
