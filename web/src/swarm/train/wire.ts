/**
 * Codec of the `allreduce` protocol (grammar: PROTOCOL.md § allreduce). Each message is one
 * request or reply body of the swarm's request/response transport:
 *
 *   byte 0       version (ALLREDUCE_WIRE_VERSION)
 *   byte 1       type (MsgType)
 *   bytes 2..5   header length h, u32 little-endian (≤ MAX_HEADER_BYTES)
 *   bytes 6..    h bytes of UTF-8 JSON header (fields per type, checked below; senders pad it
 *                with spaces so the payload starts at a multiple of 4)
 *   rest         payload (q8 bytes or snapshot bytes; ≤ MAX_PAYLOAD_BYTES; empty where none)
 *
 * Order (STYLE 10): constants → write/read per field kind → one decoder with `default: throw`.
 */
import { ALLREDUCE_WIRE_VERSION, MAX_HEADER_BYTES, MAX_ID_CHARS, MAX_MEMBERS, MAX_PAYLOAD_BYTES } from './constants.ts'
import { AllReduceProtocolError } from './errors.ts'

export const MsgType = {
  READY: 1,
  START: 2,
  BEHIND: 3,
  REDUCE: 4,
  RESULT: 5,
  FAIL: 6,
  FETCH: 7,
  NONE: 8,
  DONE: 9,
  ACK: 10,
  SNAPSHOT: 11,
  STATE: 12
} as const

const PREFIX_BYTES = 6

/** member → coordinator: ready for `round`; after a failed attempt, which attempt and whom it suspects. */
export interface ReadyMsg { type: typeof MsgType.READY, run: string, round: number, failedAttempt: number, suspects: string[] }
/** coordinator → member: attempt `attempt` of `round` runs with exactly these members (sorted). */
export interface StartMsg { type: typeof MsgType.START, run: string, round: number, attempt: number, key: string, members: string[] }
/** coordinator → member: the round completed without you (or you were left out): resync. */
export interface BehindMsg { type: typeof MsgType.BEHIND, run: string, round: number, completed: number }
/** member → owner: my contribution to `part` of attempt `key` (payload: q8), the vector cut in parts of ≤ `partElements`. */
/** `norm`: the sender's L2 norm of its whole contribution this round (the owners' norm rule compares peers by it, reduce.ts). */
export interface ReduceMsg { type: typeof MsgType.REDUCE, run: string, round: number, key: string, members: string[], part: number, n: number, partElements: number, norm: number, payload: Uint8Array }
/** owner/member → member: the reduced part (payload: q8 mean); who was refused or clipped. */
export interface ResultMsg { type: typeof MsgType.RESULT, part: number, n: number, accepted: number, rejected: string[], clipped: string[], payload: Uint8Array }
/** Refusal of a REDUCE/READY: why, and which members the sender suspects. */
export interface FailMsg { type: typeof MsgType.FAIL, reason: string, suspects: string[] }
/** member → member: do you hold the reduced `part` of attempt `key`? (repair after an owner died). */
export interface FetchMsg { type: typeof MsgType.FETCH, run: string, key: string, part: number }
export interface NoneMsg { type: typeof MsgType.NONE }
/** member → coordinator: I completed attempt `key` of `round`. */
export interface DoneMsg { type: typeof MsgType.DONE, run: string, round: number, key: string }
export interface AckMsg { type: typeof MsgType.ACK }
/** late joiner → member: bytes [offset, offset + length) of your committed state. */
export interface SnapshotMsg { type: typeof MsgType.SNAPSHOT, run: string, offset: number, length: number }
/** member → late joiner: a slice of θ_global ‖ outer momentum (f32 LE) after `round`. */
export interface StateMsg { type: typeof MsgType.STATE, run: string, round: number, hash: string, momentumHash: string, total: number, offset: number, meta: string, payload: Uint8Array }

export type AllReduceMsg = ReadyMsg | StartMsg | BehindMsg | ReduceMsg | ResultMsg | FailMsg | FetchMsg | NoneMsg | DoneMsg | AckMsg | SnapshotMsg | StateMsg

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

// ------------------------------------------------------------ write

export function encodeMsg (m: AllReduceMsg): Uint8Array {
  const payload = (m as { payload?: Uint8Array }).payload ?? new Uint8Array(0)
  const out = allocMsg(m, payload.byteLength)
  out.payload.set(payload)
  return out.body
}

/**
 * The encoding of `m` with room for a payload of `payloadBytes` (m's own payload, if any, is
 * ignored): the body, and the payload as a view into it, 4-byte aligned, for the caller to fill in
 * place (an owner quantizes a part's mean straight into its RESULT).
 */
export function allocMsg (m: AllReduceMsg, payloadBytes: number): { body: Uint8Array, payload: Uint8Array } {
  const { type, ...rest } = m as AllReduceMsg & { payload?: Uint8Array }
  delete (rest as { payload?: Uint8Array }).payload
  // Trailing spaces (valid JSON) put the payload at a multiple of 4 bytes, so a receiver can
  // read the q8 scales through a Float32Array view of the message, without a copy.
  const json = JSON.stringify(rest)
  let header = enc.encode(json)
  const pad = (4 - ((PREFIX_BYTES + header.byteLength) % 4)) % 4
  if (pad > 0) header = enc.encode(json + ' '.repeat(pad))
  if (header.byteLength > MAX_HEADER_BYTES) throw new AllReduceProtocolError(`header of ${header.byteLength} bytes exceeds ${MAX_HEADER_BYTES}`)
  if (payloadBytes > MAX_PAYLOAD_BYTES) throw new AllReduceProtocolError(`payload of ${payloadBytes} bytes exceeds ${MAX_PAYLOAD_BYTES}`)
  const body = new Uint8Array(PREFIX_BYTES + header.byteLength + payloadBytes)
  body[0] = ALLREDUCE_WIRE_VERSION
  body[1] = type
  new DataView(body.buffer).setUint32(2, header.byteLength, true)
  body.set(header, PREFIX_BYTES)
  return { body, payload: body.subarray(PREFIX_BYTES + header.byteLength) }
}

// ------------------------------------------------------------ read (field checks)

type Obj = Record<string, unknown>

function str (h: Obj, k: string, max = MAX_ID_CHARS): string {
  const v = h[k]
  if (typeof v !== 'string' || v.length > max) throw new AllReduceProtocolError(`field ${k} must be a string of ≤ ${max} characters`)
  return v
}

function int (h: Obj, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = h[k]
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new AllReduceProtocolError(`field ${k} must be an integer in [${min}, ${max}], got ${String(v)}`)
  return v
}

function norm (h: Obj, k: string): number {
  const v = h[k]
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new AllReduceProtocolError(`field ${k} must be a finite number ≥ 0, got ${String(v)}`)
  return v
}

function ids (h: Obj, k: string): string[] {
  const v = h[k]
  if (!Array.isArray(v) || v.length > MAX_MEMBERS) throw new AllReduceProtocolError(`field ${k} must be a list of ≤ ${MAX_MEMBERS} peer ids`)
  for (const x of v) if (typeof x !== 'string' || x.length === 0 || x.length > MAX_ID_CHARS) throw new AllReduceProtocolError(`field ${k} holds a bad peer id`)
  return v as string[]
}

function sortedUnique (members: string[], k: string): string[] {
  for (let i = 1; i < members.length; i++) if (!(members[i - 1] < members[i])) throw new AllReduceProtocolError(`field ${k} must be sorted and without duplicates`)
  if (members.length === 0) throw new AllReduceProtocolError(`field ${k} is empty`)
  return members
}

function none (payload: Uint8Array, type: number): void {
  if (payload.byteLength !== 0) throw new AllReduceProtocolError(`message type ${type} carries no payload, got ${payload.byteLength} bytes`)
}

/** Bytes → message. Throws AllReduceProtocolError naming the problem; never returns a partial message. */
export function decodeMsg (bytes: Uint8Array): AllReduceMsg {
  if (bytes.byteLength < PREFIX_BYTES) throw new AllReduceProtocolError(`message of ${bytes.byteLength} bytes is shorter than the ${PREFIX_BYTES}-byte prefix`)
  if (bytes[0] !== ALLREDUCE_WIRE_VERSION) throw new AllReduceProtocolError(`wire version ${bytes[0]}, expected ${ALLREDUCE_WIRE_VERSION}`)
  const type = bytes[1]
  const hl = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(2, true)
  if (hl > MAX_HEADER_BYTES || PREFIX_BYTES + hl > bytes.byteLength) throw new AllReduceProtocolError(`header length ${hl} exceeds the limit or the message`)
  let h: Obj
  try {
    const parsed: unknown = JSON.parse(dec.decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + hl)))
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object')
    h = parsed as Obj
  } catch (e) {
    throw new AllReduceProtocolError(`header is not a JSON object: ${(e as Error).message}`)
  }
  // A view, not a copy: message bodies are never written after they are received or sent.
  const payload = bytes.subarray(PREFIX_BYTES + hl)
  if (payload.byteLength > MAX_PAYLOAD_BYTES) throw new AllReduceProtocolError(`payload of ${payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`)
  switch (type) {
    case MsgType.READY:
      none(payload, type)
      return { type, run: str(h, 'run'), round: int(h, 'round'), failedAttempt: int(h, 'failedAttempt', -1), suspects: ids(h, 'suspects') }
    case MsgType.START:
      none(payload, type)
      return { type, run: str(h, 'run'), round: int(h, 'round'), attempt: int(h, 'attempt'), key: str(h, 'key', 2 * MAX_ID_CHARS), members: sortedUnique(ids(h, 'members'), 'members') }
    case MsgType.BEHIND:
      none(payload, type)
      return { type, run: str(h, 'run'), round: int(h, 'round'), completed: int(h, 'completed', -1) }
    case MsgType.REDUCE:
      return { type, run: str(h, 'run'), round: int(h, 'round'), key: str(h, 'key', 2 * MAX_ID_CHARS), members: sortedUnique(ids(h, 'members'), 'members'), part: int(h, 'part'), n: int(h, 'n', 1), partElements: int(h, 'partElements', 1), norm: norm(h, 'norm'), payload }
    case MsgType.RESULT:
      return { type, part: int(h, 'part'), n: int(h, 'n', 1), accepted: int(h, 'accepted'), rejected: ids(h, 'rejected'), clipped: ids(h, 'clipped'), payload }
    case MsgType.FAIL:
      none(payload, type)
      return { type, reason: str(h, 'reason', 1024), suspects: ids(h, 'suspects') }
    case MsgType.FETCH:
      none(payload, type)
      return { type, run: str(h, 'run'), key: str(h, 'key', 2 * MAX_ID_CHARS), part: int(h, 'part') }
    case MsgType.NONE:
      none(payload, type)
      return { type }
    case MsgType.DONE:
      none(payload, type)
      return { type, run: str(h, 'run'), round: int(h, 'round'), key: str(h, 'key', 2 * MAX_ID_CHARS) }
    case MsgType.ACK:
      none(payload, type)
      return { type }
    case MsgType.SNAPSHOT:
      none(payload, type)
      return { type, run: str(h, 'run'), offset: int(h, 'offset'), length: int(h, 'length', 1, MAX_PAYLOAD_BYTES) }
    case MsgType.STATE:
      return { type, run: str(h, 'run'), round: int(h, 'round', -1), hash: str(h, 'hash', 64), momentumHash: str(h, 'momentumHash', 64), total: int(h, 'total'), offset: int(h, 'offset'), meta: str(h, 'meta', 4096), payload }
    default:
      throw new AllReduceProtocolError(`unknown message type ${type}`)
  }
}

/** Decodes and checks the type is one of `want` (a reply of the wrong kind is a protocol error). */
export function expectMsg<T extends AllReduceMsg['type']> (bytes: Uint8Array, ...want: T[]): Extract<AllReduceMsg, { type: T }> {
  const m = decodeMsg(bytes)
  if (!(want as number[]).includes(m.type)) throw new AllReduceProtocolError(`expected message type ${want.join('|')}, got ${m.type}`)
  return m as Extract<AllReduceMsg, { type: T }>
}
