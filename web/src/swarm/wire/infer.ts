/**
 * Codec of `/webswarm/infer/1.0.0` (grammar in PROTOCOL.md, section `infer`).
 * Order (STYLE 10): constants → write/read pairs → one dispatcher with `default: throw`.
 *
 * Every message is `version:u8 type:u8 body`. A client sends OPEN / STEP / CLOSE / INFO requests;
 * the server answers each with OPENED / OUTPUT / CLOSED / INFO_OK, or ERROR.
 * Server-to-server push (types 9–12, added without a version bump: a server that predates them
 * answers ERROR malformed and the client falls back to STEP): the client sends every hop a CHAIN
 * naming where its input comes from (inline, or pushed by the previous hop) and where its output
 * goes next; servers PUSH outputs along the route (answered PUSHED) and answer the client's CHAIN
 * with CHAINED, so a token's critical path is hops + 1 one-way messages instead of 2 · hops.
 */
import { MAX_MESSAGE_BYTES, MAX_SESSION_TOKENS, MAX_STEP_TOKENS, WIRE_VERSION } from '../constants.ts'
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
  chain: 9,
  chained: 10,
  push: 11,
  pushed: 12,
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
/** Where a CHAIN step's input comes from: inline hidden states, or a PUSH from peer `from`. */
export type ChainInput = { hidden: WireTensor } | { from: string }
/** Where a CHAIN step's output goes besides the reply: that server's session. */
export interface ChainNext { peer: string, session: string }
/**
 * Run `tokens` positions from `position` of the session on `input`; PUSH the output to `next`
 * (if any); answer CHAINED. Any hop may be a CHAIN: the first carries the hidden states.
 */
export interface ChainMsg { type: 'chain', session: string, position: number, tokens: number, input: ChainInput, next?: ChainNext }
/** The span's output, and why the PUSH to `next` failed ('' when it was accepted or there is no next). */
export interface ChainedMsg { type: 'chained', session: string, position: number, hidden: WireTensor, pushError: string }
/** Server → server: the input of the receiver's session at `position`, as its CHAIN announced. */
export interface PushMsg { type: 'push', session: string, position: number, hidden: WireTensor }
/** The receiver accepted the PUSH (it runs it when the client's CHAIN is there). */
export interface PushedMsg { type: 'pushed', session: string, position: number }
/** A typed failure: `code` from ERROR_CODES. */
export interface ErrorMsg { type: 'error', code: number, message: string }

export type InferMsg = OpenMsg | OpenedMsg | StepMsg | OutputMsg | CloseMsg | ClosedMsg | InfoMsg | InfoOkMsg |
  ChainMsg | ChainedMsg | PushMsg | PushedMsg | ErrorMsg

/** CHAIN's input source byte. */
const CHAIN_INLINE = 1
const CHAIN_PUSHED = 2

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
    case 'chain': {
      const w = header(INFER_TYPES.chain).string(m.session).varint(m.position).varint(m.tokens)
      if ('hidden' in m.input) w.u8(CHAIN_INLINE).tensor(m.input.hidden)
      else w.u8(CHAIN_PUSHED).string(m.input.from)
      if (m.next === undefined) return w.u8(0).finish()
      return w.u8(1).string(m.next.peer).string(m.next.session).finish()
    }
    case 'chained': return header(INFER_TYPES.chained).string(m.session).varint(m.position).tensor(m.hidden).string(m.pushError).finish()
    case 'push': return header(INFER_TYPES.push).string(m.session).varint(m.position).tensor(m.hidden).finish()
    case 'pushed': return header(INFER_TYPES.pushed).string(m.session).varint(m.position).finish()
    case 'error': return header(INFER_TYPES.error).varint(m.code).string(m.message).finish()
  }
}

function readChain (r: ByteReader): ChainMsg {
  const session = r.string('session')
  const position = r.varint('position', MAX_SESSION_TOKENS)
  const tokens = r.varint('tokens', MAX_STEP_TOKENS)
  if (tokens < 1) throw new MalformedMessageError('chain: tokens must be ≥ 1')
  const source = r.u8('input source')
  let input: ChainInput
  if (source === CHAIN_INLINE) input = { hidden: r.tensor('hidden', MAX_TENSOR_VALUES) }
  else if (source === CHAIN_PUSHED) input = { from: r.string('from') }
  else throw new MalformedMessageError(`chain: unknown input source ${source}`)
  if ('from' in input && input.from === '') throw new MalformedMessageError('chain: empty pushing peer')
  const hasNext = r.u8('has next')
  if (hasNext > 1) throw new MalformedMessageError(`chain: has-next byte must be 0 or 1, got ${hasNext}`)
  if (hasNext === 0) return { type: 'chain', session, position, tokens, input }
  const next = { peer: r.string('next peer'), session: r.string('next session') }
  if (next.peer === '' || next.session === '') throw new MalformedMessageError('chain: empty next peer or session')
  return { type: 'chain', session, position, tokens, input, next }
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
    case INFER_TYPES.chain: m = readChain(r); break
    case INFER_TYPES.chained: m = { type: 'chained', session: r.string('session'), position: r.varint('position', MAX_SESSION_TOKENS), hidden: r.tensor('hidden', MAX_TENSOR_VALUES), pushError: r.string('pushError') }; break
    case INFER_TYPES.push: m = { type: 'push', session: r.string('session'), position: r.varint('position', MAX_SESSION_TOKENS), hidden: r.tensor('hidden', MAX_TENSOR_VALUES) }; break
    case INFER_TYPES.pushed: m = { type: 'pushed', session: r.string('session'), position: r.varint('position', MAX_SESSION_TOKENS) }; break
    case INFER_TYPES.error: m = { type: 'error', code: r.varint('code', 255), message: r.string('message') }; break
    default: throw new MalformedMessageError(`infer: unknown message type ${type}`)
  }
  r.end()
  return m
}
