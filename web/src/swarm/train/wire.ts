/**
 * Codec of the `allreduce` protocol (grammar: PROTOCOL.md § allreduce). Each message is one
 * request or reply of the swarm's request/response transport, i.e. one message of the framed
 * tensor stream (net/stream, the one tensor codec):
 *
 *   metadata   { v: ALLREDUCE_WIRE_VERSION, t: type, ...header fields } (JSON, ≤ MAX_HEADER_BYTES;
 *              fields per type, declared once in ALLREDUCE_MESSAGES)
 *   tensors    `payload`: u8 [bytes] (q8 bytes or snapshot bytes; ≤ MAX_PAYLOAD_BYTES), only in
 *              the messages that declare one
 *
 * Order (STYLE 10): the schema (ALLREDUCE_MESSAGES, from which the message types, the decoder's
 * checks and PROTOCOL.md's table come) → write → read → the rendered table. A new message kind is
 * one more row of ALLREDUCE_MESSAGES (and its `…Msg` type below).
 */
import type { JsonValue, TensorMessage } from '../../net/stream/index.ts'
import { ALLREDUCE_WIRE_VERSION, MAX_HEADER_BYTES, MAX_ID_CHARS, MAX_MEMBERS, MAX_PAYLOAD_BYTES } from './constants.ts'
import { AllReduceProtocolError } from './errors.ts'

/** Name of the tensor carrying a message's payload. */
const PAYLOAD = 'payload'

// ------------------------------------------------------------ the schema: every message, once

/** A header field's kind and bounds (JSON values; the decoder checks each before use). */
type HeaderField =
  | { kind: 'text', max: number, note?: string }
  | { kind: 'int', min: number, max: number, note?: string }
  | { kind: 'norm', note?: string }
  | { kind: 'ids', sorted: boolean, note?: string }

/** A string of ≤ `max` characters (peer ids, run names, keys). */
const text = (max = MAX_ID_CHARS, note?: string): HeaderField & { kind: 'text' } => ({ kind: 'text', max, note })
/** An integer in [min, max]. */
const int = (min = 0, max = Number.MAX_SAFE_INTEGER, note?: string): HeaderField & { kind: 'int' } => ({ kind: 'int', min, max, note })
/** A finite number ≥ 0. */
const norm = (note?: string): HeaderField & { kind: 'norm' } => ({ kind: 'norm', note })
/** ≤ MAX_MEMBERS peer ids; `sorted`: sorted, unique and non-empty (a member list). */
const ids = (sorted = false): HeaderField & { kind: 'ids' } => ({ kind: 'ids', sorted })

interface AllReduceSpec {
  code: number
  dir: string
  fields: Readonly<Record<string, HeaderField>>
  /** What the payload holds; absent: the message carries none. */
  payload?: string
}

const key = text(2 * MAX_ID_CHARS)

/** Every all-reduce message: type byte, direction, header fields (JSON, checked in this order) and payload. */
export const ALLREDUCE_MESSAGES = {
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
    fields: { run: text(), round: int(), key, members: ids(true), part: int(), n: int(1), partElements: int(1, undefined, 'the owner refuses another than its own'), norm: norm('L2 norm of the sender\'s whole Δ in q8') },
    payload: 'q8 slice of the member\'s Δ'
  },
  /** owner/member → member: the reduced part (payload: q8 mean); who was refused or clipped. */
  RESULT: { code: 5, dir: 'reply to REDUCE/FETCH', fields: { part: int(), n: int(1, undefined, 'part length'), accepted: int(), rejected: ids(), clipped: ids() }, payload: 'q8 mean of the part' },
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
    fields: { run: text(), round: int(-1), hash: text(64), momentumHash: text(64), total: int(), offset: int(), meta: text(4096) },
    payload: 'bytes [offset, offset+len) of θ_global ‖ momentum (f32 LE)'
  }
} as const satisfies Record<string, AllReduceSpec>

type Specs = typeof ALLREDUCE_MESSAGES

/** Message type bytes, by name. */
export const MsgType = Object.fromEntries(Object.entries(ALLREDUCE_MESSAGES).map(([k, m]) => [k, m.code])) as { readonly [K in keyof Specs]: Specs[K]['code'] }

type ValueOf<F> = F extends { kind: 'text' } ? string : F extends { kind: 'ids' } ? string[] : number
type Simplify<T> = { [K in keyof T]: T[K] } & {}
type MsgOf<K extends keyof Specs> = Simplify<
  { type: Specs[K]['code'] } &
  { -readonly [F in keyof Specs[K]['fields']]: ValueOf<Specs[K]['fields'][F]> } &
  (Specs[K] extends { payload: string } ? { payload: Uint8Array } : unknown)
>

export type ReadyMsg = MsgOf<'READY'>
export type ReduceMsg = MsgOf<'REDUCE'>
export type ResultMsg = MsgOf<'RESULT'>
export type FailMsg = MsgOf<'FAIL'>
export type FetchMsg = MsgOf<'FETCH'>
export type DoneMsg = MsgOf<'DONE'>
export type SnapshotMsg = MsgOf<'SNAPSHOT'>
export type AllReduceMsg = { [K in keyof Specs]: MsgOf<K> }[keyof Specs]

const SPEC_BY_CODE = new Map<number, AllReduceSpec>(Object.values(ALLREDUCE_MESSAGES).map(m => [m.code, m]))

const enc = new TextEncoder()

// ------------------------------------------------------------ write

export function encodeMsg (m: AllReduceMsg): TensorMessage {
  const payload = (m as { payload?: Uint8Array }).payload
  const out = allocMsg(m, payload?.byteLength ?? 0)
  if (payload !== undefined) out.payload.set(payload)
  return out.body
}

/**
 * The encoding of `m` with room for a payload of `payloadBytes` (m's own payload, if any, is
 * ignored): the message, and its payload (a fresh buffer, so 4-byte aligned) for the caller to
 * fill in place (an owner quantizes a part's mean straight into its RESULT).
 */
export function allocMsg (m: AllReduceMsg, payloadBytes: number): { body: TensorMessage, payload: Uint8Array } {
  const { type, ...rest } = m as AllReduceMsg & { payload?: Uint8Array }
  delete (rest as { payload?: Uint8Array }).payload
  const meta = { v: ALLREDUCE_WIRE_VERSION, t: type, ...rest } as unknown as Record<string, JsonValue>
  const headerBytes = enc.encode(JSON.stringify(meta)).byteLength
  if (headerBytes > MAX_HEADER_BYTES) throw new AllReduceProtocolError(`header of ${headerBytes} bytes exceeds ${MAX_HEADER_BYTES}`)
  if (payloadBytes > MAX_PAYLOAD_BYTES) throw new AllReduceProtocolError(`payload of ${payloadBytes} bytes exceeds ${MAX_PAYLOAD_BYTES}`)
  const payload = new Uint8Array(payloadBytes)
  const carries = SPEC_BY_CODE.get(type)?.payload !== undefined
  return { body: { meta, tensors: carries ? [{ name: PAYLOAD, dtype: 'u8', shape: [payloadBytes], data: payload }] : [] }, payload }
}

// ------------------------------------------------------------ read (field checks)

type Obj = Record<string, unknown>

function readField (h: Obj, k: string, f: HeaderField): unknown {
  const v = h[k]
  switch (f.kind) {
    case 'text':
      if (typeof v !== 'string' || v.length > f.max) throw new AllReduceProtocolError(`field ${k} must be a string of ≤ ${f.max} characters`)
      return v
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < f.min || v > f.max) throw new AllReduceProtocolError(`field ${k} must be an integer in [${f.min}, ${f.max}], got ${String(v)}`)
      return v
    case 'norm':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new AllReduceProtocolError(`field ${k} must be a finite number ≥ 0, got ${String(v)}`)
      return v
    case 'ids': {
      if (!Array.isArray(v) || v.length > MAX_MEMBERS) throw new AllReduceProtocolError(`field ${k} must be a list of ≤ ${MAX_MEMBERS} peer ids`)
      for (const x of v) if (typeof x !== 'string' || x.length === 0 || x.length > MAX_ID_CHARS) throw new AllReduceProtocolError(`field ${k} holds a bad peer id`)
      if (f.sorted) {
        for (let i = 1; i < v.length; i++) if (!((v[i - 1] as string) < (v[i] as string))) throw new AllReduceProtocolError(`field ${k} must be sorted and without duplicates`)
        if (v.length === 0) throw new AllReduceProtocolError(`field ${k} is empty`)
      }
      return v
    }
  }
}

/** Stream message → all-reduce message. Throws AllReduceProtocolError naming the problem; never returns a partial message. */
export function decodeMsg (message: TensorMessage): AllReduceMsg {
  const h: Obj = message.meta ?? {}
  if (h.v !== ALLREDUCE_WIRE_VERSION) throw new AllReduceProtocolError(`wire version ${String(h.v)}, expected ${ALLREDUCE_WIRE_VERSION}`)
  const type = h.t
  const spec = typeof type === 'number' ? SPEC_BY_CODE.get(type) : undefined
  if (spec === undefined) throw new AllReduceProtocolError(`unknown message type ${String(type)}`)
  for (const k of Object.keys(h)) if (k !== 'v' && k !== 't' && !(k in spec.fields)) throw new AllReduceProtocolError(`message type ${String(type)} has no field ${k}`)
  const t = message.tensors
  if (t.length > (spec.payload === undefined ? 0 : 1) || (t.length === 1 && t[0].name !== PAYLOAD)) throw new AllReduceProtocolError(`message type ${String(type)} carries ${spec.payload === undefined ? 'no tensor' : `one tensor named ${PAYLOAD}`}, got [${t.map(x => x.name).join(', ')}]`)
  const m: Obj = { type }
  for (const [k, f] of Object.entries(spec.fields)) m[k] = readField(h, k, f)
  if (spec.payload !== undefined) {
    const p = t[0]
    if (p === undefined) throw new AllReduceProtocolError(`message type ${String(type)} lacks its ${PAYLOAD} tensor`)
    if (p.dtype !== 'u8' || p.shape.length !== 1 || p.shape[0] !== p.data.byteLength) throw new AllReduceProtocolError(`${PAYLOAD} must be u8 [bytes], got ${p.dtype} [${p.shape.join(', ')}]`)
    if (p.data.byteLength > MAX_PAYLOAD_BYTES) throw new AllReduceProtocolError(`payload of ${p.data.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`)
    // A view, not a copy: message bodies are never written after they are received or sent.
    m.payload = p.data
  }
  return m as AllReduceMsg
}

// ------------------------------------------------------------ the written grammar

function renderField (k: string, f: HeaderField): string {
  const range = f.kind === 'int' ? `[${f.min}…${f.max < Number.MAX_SAFE_INTEGER ? f.max : ''}]` : f.kind === 'text' ? `(≤ ${f.max} chars)` : f.kind === 'norm' ? '(finite ≥ 0)' : f.sorted ? `[] (sorted, unique, 1…${MAX_MEMBERS})` : `[] (≤ ${MAX_MEMBERS})`
  return `${k}${range}${f.note === undefined ? '' : ` — ${f.note}`}`
}

/** PROTOCOL.md's all-reduce message table (a test checks the document holds exactly this). */
export function renderAllReduceTable (): string {
  const rows = Object.entries(ALLREDUCE_MESSAGES).map(([name, m]: [string, AllReduceSpec]) =>
    `| ${m.code} | ${name} | ${m.dir} | ${Object.entries(m.fields).map(([k, f]) => renderField(k, f)).join(', ') || '—'} | ${m.payload === undefined ? '—' : `u8 tensor: ${m.payload}`} |`)
  return ['| t | name | direction | header fields (metadata), checked in this order | payload tensor |', '|---|---|---|---|---|', ...rows].join('\n')
}
