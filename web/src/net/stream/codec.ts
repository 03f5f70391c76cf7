/**
 * Codec of the framed tensor stream protocol (grammar: PROTOCOL.md, "Framed tensor streams").
 * Order: constants → write/read pairs per frame part → one dispatcher (`decodeFrame`).
 * All integers little-endian.
 */
import { FRAME_HEADER_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_FRAME_BODY_BYTES, MAX_NAME_BYTES, MAX_RANK, PROTOCOL_VERSION } from './constants.ts'
import { InvalidTensorError, LimitExceededError, MalformedFrameError, ProtocolVersionError, UnknownFrameTypeError } from './errors.ts'
import type { JsonValue, NamedTensor, TensorDType, TensorMessage } from './index.ts'

// ---------------------------------------------------------------- constants

/** Frame types (byte 1 of the header). */
export const FrameType = {
  /** Begins a message: metadata and tensor descriptors. */
  START: 1,
  /** A chunk of the current message's payload (tensors' bytes, concatenated in order). */
  DATA: 2,
  /** The sender failed: u16 code + UTF-8 text. Ends the stream's exchange. */
  ERROR: 3,
  /** Streaming flow control: the receiver lets the sender send n more messages. */
  CREDIT: 4,
  /** Streaming: the sender will start no more messages (it still sends CREDIT). Empty body. */
  END: 5
} as const

/** Codes carried by ERROR frames. */
export const ErrorCode = {
  /** The handler threw. */
  HANDLER_FAILED: 1,
  /** The request was well-formed but not acceptable to the handler (e.g. unknown op). */
  BAD_REQUEST: 2,
  /** The handler is overloaded or shutting down; retry elsewhere. */
  UNAVAILABLE: 3,
  /** The handler ran out of time. */
  TIMEOUT: 4,
  /** The thing asked for does not exist here. */
  NOT_FOUND: 5
} as const

/** Wire code and bytes per element of each dtype; q8 is opaque (≥ 1 byte per element). */
const DTYPES: ReadonlyArray<{ dtype: TensorDType, code: number, bytes: number }> = [
  { dtype: 'f32', code: 1, bytes: 4 },
  { dtype: 'f16', code: 2, bytes: 2 },
  { dtype: 'i32', code: 3, bytes: 4 },
  { dtype: 'u32', code: 4, bytes: 4 },
  { dtype: 'u8', code: 5, bytes: 1 },
  { dtype: 'q8', code: 6, bytes: 0 }
]
const DTYPE_BY_NAME = new Map(DTYPES.map(d => [d.dtype, d]))
const DTYPE_BY_CODE = new Map(DTYPES.map(d => [d.code, d]))

/** Largest u32, the ceiling of every length and dimension field. */
const U32_MAX = 0xFFFF_FFFF

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder('utf-8', { fatal: true })

/** Limits the decoder checks START bodies against (resolved, all present). */
export interface StartLimits {
  maxMessageBytes: number
  maxTensors: number
  maxMetaBytes: number
}

/** A tensor's descriptor as announced in START; its bytes follow in DATA frames. */
export interface TensorDescriptor {
  name: string
  dtype: TensorDType
  shape: number[]
  byteLength: number
}

export interface FrameHeader {
  type: number
  /** Message id (1, 2, … per direction) or 0 for frames about the whole stream. */
  id: number
  bodyLength: number
  crc: number
}

/** A decoded frame; DATA keeps its body as bytes. */
export type Frame =
  | { type: typeof FrameType.START, id: number, meta: TensorMessage['meta'], tensors: TensorDescriptor[], totalBytes: number }
  | { type: typeof FrameType.DATA, id: number, body: Uint8Array }
  | { type: typeof FrameType.ERROR, id: number, code: number, message: string }
  | { type: typeof FrameType.CREDIT, id: number, messages: number }
  | { type: typeof FrameType.END, id: number }

// ---------------------------------------------------------------- header

/**
 * Header (16 bytes): u8 version | u8 type | u16 flags (0) | u32 id | u32 bodyLength | u32 crc32(body).
 */
export function writeFrameHeader (dst: Uint8Array, offset: number, type: number, id: number, bodyLength: number, crc: number): void {
  const v = new DataView(dst.buffer, dst.byteOffset + offset, FRAME_HEADER_BYTES)
  v.setUint8(0, PROTOCOL_VERSION)
  v.setUint8(1, type)
  v.setUint16(2, 0, true)
  v.setUint32(4, id, true)
  v.setUint32(8, bodyLength, true)
  v.setUint32(12, crc, true)
}

/** Reads and checks a header; rejects a body length over the cap before any body byte is kept. */
export function readFrameHeader (src: Uint8Array): FrameHeader {
  const v = new DataView(src.buffer, src.byteOffset, FRAME_HEADER_BYTES)
  const version = v.getUint8(0)
  if (version !== PROTOCOL_VERSION) throw new ProtocolVersionError(`frame version ${version}, expected ${PROTOCOL_VERSION}`)
  const flags = v.getUint16(2, true)
  if (flags !== 0) throw new MalformedFrameError(`frame flags 0x${flags.toString(16)}, reserved bits must be 0`)
  const bodyLength = v.getUint32(8, true)
  if (bodyLength > MAX_FRAME_BODY_BYTES) throw new LimitExceededError(`frame body ${bodyLength} bytes > ${MAX_FRAME_BODY_BYTES}`)
  return { type: v.getUint8(1), id: v.getUint32(4, true), bodyLength, crc: v.getUint32(12, true) }
}

// ---------------------------------------------------------------- START

/** Checks a tensor we are about to send and returns its dtype's wire code. */
function checkTensor (t: NamedTensor): number {
  const d = DTYPE_BY_NAME.get(t.dtype)
  if (d === undefined) throw new InvalidTensorError(`tensor "${t.name}": unknown dtype ${String(t.dtype)}`)
  if (!Array.isArray(t.shape) || t.shape.length > MAX_RANK) throw new InvalidTensorError(`tensor "${t.name}": rank must be 0…${MAX_RANK}`)
  let numel = 1
  for (const dim of t.shape) {
    if (!Number.isInteger(dim) || dim < 0 || dim > U32_MAX) throw new InvalidTensorError(`tensor "${t.name}": bad dimension ${dim} in [${t.shape.join(', ')}]`)
    numel *= dim
  }
  if (!(t.data instanceof Uint8Array)) throw new InvalidTensorError(`tensor "${t.name}": data must be a Uint8Array`)
  if (t.data.byteLength > U32_MAX) throw new InvalidTensorError(`tensor "${t.name}": ${t.data.byteLength} bytes > 4 GiB - 1; split it`)
  const ok = d.bytes === 0 ? t.data.byteLength >= numel : t.data.byteLength === numel * d.bytes
  if (!ok) throw new InvalidTensorError(`tensor "${t.name}": ${t.data.byteLength} bytes do not fit ${t.dtype} [${t.shape.join(', ')}]`)
  return d.code
}

/**
 * START body: u16 metaLength | meta (UTF-8 JSON object, absent when 0) | u16 tensorCount |
 * tensorCount × (u8 nameLength | name | u8 dtype | u8 rank | rank × u32 dim | u32 byteLength).
 */
export function writeStart (message: TensorMessage): Uint8Array {
  const meta = message.meta === undefined ? new Uint8Array(0) : utf8.encode(JSON.stringify(message.meta))
  if (meta.byteLength > 0xFFFF) throw new InvalidTensorError(`metadata is ${meta.byteLength} bytes of JSON, at most 65535`)
  if (message.tensors.length > 0xFFFF) throw new InvalidTensorError(`${message.tensors.length} tensors, at most 65535`)
  const names = message.tensors.map(t => utf8.encode(t.name))
  let size = 2 + meta.byteLength + 2
  const seen = new Set<string>()
  message.tensors.forEach((t, i) => {
    if (names[i].byteLength > MAX_NAME_BYTES) throw new InvalidTensorError(`tensor name "${t.name.slice(0, 40)}…" longer than ${MAX_NAME_BYTES} bytes`)
    if (seen.has(t.name)) throw new InvalidTensorError(`tensor name "${t.name}" used twice`)
    seen.add(t.name)
    size += 1 + names[i].byteLength + 2 + 4 * t.shape.length + 4
  })
  if (size > MAX_FRAME_BODY_BYTES) throw new InvalidTensorError(`START body ${size} bytes > ${MAX_FRAME_BODY_BYTES}: less metadata or fewer tensors`)
  const out = new Uint8Array(size)
  const v = new DataView(out.buffer)
  let o = 0
  v.setUint16(o, meta.byteLength, true); o += 2
  out.set(meta, o); o += meta.byteLength
  v.setUint16(o, message.tensors.length, true); o += 2
  message.tensors.forEach((t, i) => {
    const code = checkTensor(t)
    v.setUint8(o++, names[i].byteLength)
    out.set(names[i], o); o += names[i].byteLength
    v.setUint8(o++, code)
    v.setUint8(o++, t.shape.length)
    for (const dim of t.shape) { v.setUint32(o, dim, true); o += 4 }
    v.setUint32(o, t.data.byteLength, true); o += 4
  })
  return out
}

export function readStart (body: Uint8Array, limits: StartLimits): { meta: TensorMessage['meta'], tensors: TensorDescriptor[], totalBytes: number } {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let o = 0
  const need = (n: number, what: string): void => {
    if (o + n > body.byteLength) throw new MalformedFrameError(`START body ends inside ${what} (offset ${o}, ${body.byteLength} bytes)`)
  }
  need(2, 'meta length')
  const metaLength = v.getUint16(o, true); o += 2
  if (metaLength > limits.maxMetaBytes) throw new LimitExceededError(`metadata ${metaLength} bytes > limit ${limits.maxMetaBytes}`)
  need(metaLength, 'metadata')
  let meta: TensorMessage['meta']
  if (metaLength > 0) meta = parseMeta(body.subarray(o, o + metaLength))
  o += metaLength
  need(2, 'tensor count')
  const count = v.getUint16(o, true); o += 2
  if (count > limits.maxTensors) throw new LimitExceededError(`${count} tensors > limit ${limits.maxTensors}`)
  const tensors: TensorDescriptor[] = []
  const seen = new Set<string>()
  let totalBytes = 0
  for (let i = 0; i < count; i++) {
    need(1, `tensor ${i} name length`)
    const nameLength = v.getUint8(o++)
    need(nameLength + 2, `tensor ${i} name`)
    const name = decodeUtf8(body.subarray(o, o + nameLength), `tensor ${i} name`); o += nameLength
    if (seen.has(name)) throw new MalformedFrameError(`tensor name "${name}" repeated`)
    seen.add(name)
    const code = v.getUint8(o++)
    const d = DTYPE_BY_CODE.get(code)
    if (d === undefined) throw new MalformedFrameError(`tensor "${name}": unknown dtype code ${code}`)
    const rank = v.getUint8(o++)
    if (rank > MAX_RANK) throw new MalformedFrameError(`tensor "${name}": rank ${rank} > ${MAX_RANK}`)
    need(4 * rank + 4, `tensor "${name}" shape`)
    const shape: number[] = []
    let numel = 1
    for (let k = 0; k < rank; k++) { const dim = v.getUint32(o, true); o += 4; shape.push(dim); numel *= dim }
    const byteLength = v.getUint32(o, true); o += 4
    const ok = d.bytes === 0 ? byteLength >= numel : byteLength === numel * d.bytes
    if (!ok) throw new MalformedFrameError(`tensor "${name}": ${byteLength} bytes do not fit ${d.dtype} [${shape.join(', ')}]`)
    totalBytes += byteLength
    if (totalBytes > limits.maxMessageBytes) throw new LimitExceededError(`message payload ${totalBytes}+ bytes > limit ${limits.maxMessageBytes}`)
    tensors.push({ name, dtype: d.dtype, shape, byteLength })
  }
  if (o !== body.byteLength) throw new MalformedFrameError(`START body has ${body.byteLength - o} trailing bytes`)
  return { meta, tensors, totalBytes }
}

function parseMeta (bytes: Uint8Array): TensorMessage['meta'] {
  const text = decodeUtf8(bytes, 'metadata')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new MalformedFrameError('metadata is not JSON')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedFrameError('metadata must be a JSON object')
  return value as { [key: string]: JsonValue }
}

function decodeUtf8 (bytes: Uint8Array, what: string): string {
  try {
    return utf8Strict.decode(bytes)
  } catch {
    throw new MalformedFrameError(`${what} is not UTF-8`)
  }
}

/** Bytes `message` puts on the wire besides framing: its tensors' bytes and its JSON metadata (for traffic counters). */
export function messageBytes (message: TensorMessage): number {
  let n = message.meta === undefined ? 0 : utf8.encode(JSON.stringify(message.meta)).byteLength
  for (const t of message.tensors) n += t.data.byteLength
  return n
}

// ---------------------------------------------------------------- ERROR

/** ERROR body: u16 code | UTF-8 message (≤ 1 KiB; longer text is cut at a character boundary). */
export function writeError (code: number, message: string): Uint8Array {
  let text = utf8.encode(message)
  if (text.byteLength > MAX_ERROR_MESSAGE_BYTES) {
    let cut = MAX_ERROR_MESSAGE_BYTES
    while (cut > 0 && (text[cut] & 0xC0) === 0x80) cut-- // back off UTF-8 continuation bytes
    text = text.subarray(0, cut)
  }
  const out = new Uint8Array(2 + text.byteLength)
  new DataView(out.buffer).setUint16(0, code, true)
  out.set(text, 2)
  return out
}

function readError (body: Uint8Array): { code: number, message: string } {
  if (body.byteLength < 2) throw new MalformedFrameError(`ERROR body ${body.byteLength} bytes, needs ≥ 2`)
  if (body.byteLength > 2 + MAX_ERROR_MESSAGE_BYTES) throw new LimitExceededError(`ERROR message ${body.byteLength - 2} bytes > ${MAX_ERROR_MESSAGE_BYTES}`)
  const code = new DataView(body.buffer, body.byteOffset, 2).getUint16(0, true)
  return { code, message: decodeUtf8(body.subarray(2), 'ERROR message') }
}

// ---------------------------------------------------------------- CREDIT

/** CREDIT body: u32 messages (≥ 1). */
export function writeCredit (messages: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, messages, true)
  return out
}

function readCredit (body: Uint8Array): number {
  if (body.byteLength !== 4) throw new MalformedFrameError(`CREDIT body ${body.byteLength} bytes, must be 4`)
  const n = new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true)
  if (n === 0) throw new MalformedFrameError('CREDIT of 0 messages')
  return n
}

// ---------------------------------------------------------------- whole frames

/** A control frame (header + body) in one buffer. */
export function encodeFrame (type: number, id: number, body: Uint8Array, crc: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength)
  writeFrameHeader(out, 0, type, id, body.byteLength, crc)
  out.set(body, FRAME_HEADER_BYTES)
  return out
}

// ---------------------------------------------------------------- dispatcher

/** Decodes a frame whose header was read and whose body's crc was verified. */
export function decodeFrame (header: FrameHeader, body: Uint8Array, limits: StartLimits): Frame {
  switch (header.type) {
    case FrameType.START:
      if (header.id === 0) throw new MalformedFrameError('START with message id 0')
      return { type: FrameType.START, id: header.id, ...readStart(body, limits) }
    case FrameType.DATA:
      if (body.byteLength === 0) throw new MalformedFrameError('empty DATA frame')
      return { type: FrameType.DATA, id: header.id, body }
    case FrameType.ERROR:
      return { type: FrameType.ERROR, id: header.id, ...readError(body) }
    case FrameType.CREDIT:
      if (header.id !== 0) throw new MalformedFrameError(`CREDIT with message id ${header.id}, must be 0`)
      return { type: FrameType.CREDIT, id: 0, messages: readCredit(body) }
    case FrameType.END:
      if (header.id !== 0 || body.byteLength !== 0) throw new MalformedFrameError(`END with id ${header.id} and ${body.byteLength} body bytes, must be 0 and 0`)
      return { type: FrameType.END, id: 0 }
    default:
      throw new UnknownFrameTypeError(`frame type ${header.type}`)
  }
}
