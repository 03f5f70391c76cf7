/**
 * Codec of `/webswarm/infer/1.0.0` (grammar in PROTOCOL.md, section `infer`).
 * Order (STYLE 10): constants → write/read pairs → one dispatcher with `default: throw`.
 *
 * Every message is `version:u8 type:u8 body`. A client sends OPEN / STEP / CLOSE / INFO requests;
 * the server answers each with OPENED / OUTPUT / CLOSED / INFO_OK, or ERROR.
 */
import { MAX_MESSAGE_BYTES, MAX_SESSION_TOKENS, WIRE_VERSION } from '../constants.ts'
import { MalformedMessageError } from '../errors.ts'
import { ByteReader, ByteWriter, type WireTensor } from './bytes.ts'

export const INFER_TYPES = {
  open: 1,
  opened: 2,
  step: 3,
  output: 4,
  close: 5,
  closed: 6,
  info: 7,
  infoOk: 8,
  error: 15
} as const

/** Values a (T, C) tensor may hold at most: what fits in one message. */
const MAX_TENSOR_VALUES = MAX_MESSAGE_BYTES / 4

/** Open a session on blocks [start, end) of `model`, caching up to `maxTokens` positions. */
export interface OpenMsg { type: 'open', model: string, start: number, end: number, maxTokens: number }
/** The server's session id (random, unguessable) and the cache tokens it has left after this one. */
export interface OpenedMsg { type: 'opened', session: string, cacheTokensLeft: number }
/** Hidden states (T, C) for positions [position, position + T) of the session. */
export interface StepMsg { type: 'step', session: string, position: number, hidden: WireTensor }
/** The span's output hidden states (T, C) for the same positions. */
export interface OutputMsg { type: 'output', session: string, position: number, hidden: WireTensor }
export interface CloseMsg { type: 'close', session: string }
export interface ClosedMsg { type: 'closed', session: string }
/** Ask what the server serves (also the RTT probe). */
export interface InfoMsg { type: 'info' }
/** Spans served per model, throughput (tokens/s through one block), cache room (tokens). */
export interface InfoOkMsg {
  type: 'infoOk'
  spans: Array<{ model: string, start: number, end: number }>
  throughput: number
  cacheTokensLeft: number
}
/** A typed failure: `code` from ERROR_CODES. */
export interface ErrorMsg { type: 'error', code: number, message: string }

export type InferMsg = OpenMsg | OpenedMsg | StepMsg | OutputMsg | CloseMsg | ClosedMsg | InfoMsg | InfoOkMsg | ErrorMsg

function header (type: number): ByteWriter {
  return new ByteWriter().u8(WIRE_VERSION).u8(type)
}

// Throughput travels as milli-tokens/s in a varint: no float parsing of peer data.
const THROUGHPUT_SCALE = 1000

export function writeInfer (m: InferMsg): Uint8Array {
  switch (m.type) {
    case 'open': return header(INFER_TYPES.open).string(m.model).varint(m.start).varint(m.end).varint(m.maxTokens).finish()
    case 'opened': return header(INFER_TYPES.opened).string(m.session).varint(m.cacheTokensLeft).finish()
    case 'step': return header(INFER_TYPES.step).string(m.session).varint(m.position).tensor(m.hidden).finish()
    case 'output': return header(INFER_TYPES.output).string(m.session).varint(m.position).tensor(m.hidden).finish()
    case 'close': return header(INFER_TYPES.close).string(m.session).finish()
    case 'closed': return header(INFER_TYPES.closed).string(m.session).finish()
    case 'info': return header(INFER_TYPES.info).finish()
    case 'infoOk': {
      const w = header(INFER_TYPES.infoOk).varint(m.spans.length)
      for (const s of m.spans) w.string(s.model).varint(s.start).varint(s.end)
      return w.varint(Math.round(m.throughput * THROUGHPUT_SCALE)).varint(m.cacheTokensLeft).finish()
    }
    case 'error': return header(INFER_TYPES.error).varint(m.code).string(m.message).finish()
  }
}

/** Most spans an INFO_OK may list. */
const MAX_INFO_SPANS = 64

function readOpen (r: ByteReader): OpenMsg {
  const model = r.string('model')
  const start = r.varint('start', 1 << 20)
  const end = r.varint('end', 1 << 20)
  const maxTokens = r.varint('maxTokens', MAX_SESSION_TOKENS)
  if (end <= start) throw new MalformedMessageError(`empty block span [${start}, ${end})`)
  if (maxTokens < 1) throw new MalformedMessageError('maxTokens must be ≥ 1')
  return { type: 'open', model, start, end, maxTokens }
}

function readInfoOk (r: ByteReader): InfoOkMsg {
  const n = r.varint('span count', MAX_INFO_SPANS)
  const spans = []
  for (let i = 0; i < n; i++) spans.push({ model: r.string('model'), start: r.varint('start', 1 << 20), end: r.varint('end', 1 << 20) })
  const throughput = r.varint('throughput') / THROUGHPUT_SCALE
  return { type: 'infoOk', spans, throughput, cacheTokensLeft: r.varint('cacheTokensLeft') }
}

/** Decode one message; throws MalformedMessageError / MessageTooLargeError on anything off-grammar. */
export function readInfer (bytes: Uint8Array): InferMsg {
  const r = new ByteReader(bytes)
  const version = r.u8('version')
  if (version !== WIRE_VERSION) throw new MalformedMessageError(`infer: unsupported version ${version} (expected ${WIRE_VERSION})`)
  const type = r.u8('type')
  let m: InferMsg
  switch (type) {
    case INFER_TYPES.open: m = readOpen(r); break
    case INFER_TYPES.opened: m = { type: 'opened', session: r.string('session'), cacheTokensLeft: r.varint('cacheTokensLeft') }; break
    case INFER_TYPES.step: m = { type: 'step', session: r.string('session'), position: r.varint('position', MAX_SESSION_TOKENS), hidden: r.tensor('hidden', MAX_TENSOR_VALUES) }; break
    case INFER_TYPES.output: m = { type: 'output', session: r.string('session'), position: r.varint('position', MAX_SESSION_TOKENS), hidden: r.tensor('hidden', MAX_TENSOR_VALUES) }; break
    case INFER_TYPES.close: m = { type: 'close', session: r.string('session') }; break
    case INFER_TYPES.closed: m = { type: 'closed', session: r.string('session') }; break
    case INFER_TYPES.info: m = { type: 'info' }; break
    case INFER_TYPES.infoOk: m = readInfoOk(r); break
    case INFER_TYPES.error: m = { type: 'error', code: r.varint('code', 255), message: r.string('message') }; break
    default: throw new MalformedMessageError(`infer: unknown message type ${type}`)
  }
  r.end()
  return m
}
