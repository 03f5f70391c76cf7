/**
 * Codec of `/webswarm/infer/2.0.0` (grammar in PROTOCOL.md, section `infer`, whose message table
 * is rendered from INFER_MESSAGES: schema.ts). Every message is one message of the framed tensor
 * stream: its fields in the metadata, its hidden states as a typed f32 tensor (schema.ts).
 * A client sends OPEN / STEP / CLOSE / INFO requests; the server answers each with OPENED /
 * OUTPUT / CLOSED / INFO_OK, or ERROR.
 * Server-to-server push (types 9–12, added without a version bump: a server that predates them
 * answers ERROR malformed and the client falls back to STEP): the client sends every hop a CHAIN
 * naming where its input comes from (inline, or pushed by the previous hop) and where its output
 * goes next; servers PUSH outputs along the route (answered PUSHED) and answer the client's CHAIN
 * with CHAINED, so a token's critical path is hops + 1 one-way messages instead of 2 · hops.
 * STEP_COMMIT / COMMITMENT (13–14, also without a bump): a STEP answered with a compact
 * commitment to its output, for verifiers (swarm/commitment.ts).
 */
import { MAX_SESSION_TOKENS, MAX_STEP_TOKENS, WIRE_VERSION } from '../constants.ts'
import { INFER } from '../../net/protocols.ts'
import type { TensorMessage } from '../../net/stream/index.ts'
import { commitRowBytes, MAX_COMMIT_BYTES, MAX_COMMIT_K } from '../commitment.ts'
import { bytes, defineMessages, list, messageCodec, milli, oneOf, optional, str, tensor, varint, type MessageOf } from './schema.ts'

/** Highest block index a span may name. */
const MAX_BLOCK = 1 << 20
/** Most spans an INFO_OK may list. */
const MAX_INFO_SPANS = 64

const position = varint(MAX_SESSION_TOKENS)

/** Every `infer` message, in wire order of its fields. */
export const INFER_MESSAGES = defineMessages({
  /** Open a session on blocks [start, end) of `model`, caching up to `maxTokens` positions. */
  open: { code: 1, dir: 'client → server', fields: { model: str(), start: varint(MAX_BLOCK), end: varint(MAX_BLOCK), maxTokens: varint(MAX_SESSION_TOKENS, { min: 1 }) }, note: 'start < end' },
  /** The server's session id (random, unguessable) and the cache tokens it has left after this one. */
  opened: { code: 2, dir: 'server → client', fields: { session: str(), cacheTokensLeft: varint() } },
  /** Hidden states (T, C) for positions [position, position + T) of the session. */
  step: { code: 3, dir: 'client → server', fields: { session: str(), position, hidden: tensor() } },
  /** The span's output hidden states (T, C) for the same positions. */
  output: { code: 4, dir: 'server → client', fields: { session: str(), position, hidden: tensor() } },
  close: { code: 5, dir: 'client → server', fields: { session: str() } },
  closed: { code: 6, dir: 'server → client', fields: { session: str() } },
  /** Ask what the server serves (also the RTT probe). */
  info: { code: 7, dir: 'client → server', fields: {} },
  /** Spans served per model, throughput (tokens/s through one block), cache room (tokens). */
  infoOk: {
    code: 8,
    dir: 'server → client',
    fields: { spans: list(MAX_INFO_SPANS, { model: str(), start: varint(MAX_BLOCK), end: varint(MAX_BLOCK) }, { label: 'span' }), throughput: milli(), cacheTokensLeft: varint() }
  },
  /**
   * Run `tokens` positions from `position` of the session on `input` (inline hidden states, or a
   * PUSH from peer `from`); PUSH the output to `next` (if any); answer CHAINED.
   */
  chain: {
    code: 9,
    dir: 'client → server',
    fields: {
      session: str(),
      position,
      tokens: varint(MAX_STEP_TOKENS, { min: 1 }),
      input: oneOf({ 1: { hidden: tensor() }, 2: { from: str({ label: 'pushing peer', nonEmpty: true }) } }, { label: 'input source' }),
      next: optional({ peer: str({ label: 'next peer', nonEmpty: true }), session: str({ label: 'next session', nonEmpty: true }) }, { label: 'has-next' })
    },
    note: 'input: inline, or pushed by `from`'
  },
  /** The span's output, and why the PUSH to `next` failed ('' when it was accepted or there is no next). */
  chained: { code: 10, dir: 'server → client', fields: { session: str(), position, hidden: tensor(), pushError: str() } },
  /** Server → server: the input of the receiver's session at `position`, as its CHAIN announced. */
  push: { code: 11, dir: 'server → next server', fields: { session: str(), position, hidden: tensor() } },
  /** The receiver accepted the PUSH (it runs it when the client's CHAIN is there). */
  pushed: { code: 12, dir: 'next server → server', fields: { session: str(), position } },
  /**
   * A STEP whose answer is a COMMITMENT to the output instead of the output (a verifier's second
   * opinion: swarm/commitment.ts). Added without a version bump, like CHAIN: a server that
   * predates it answers ERROR malformed and the verifier asks for full rows.
   */
  stepCommit: { code: 13, dir: 'client → server', fields: { session: str(), position, hidden: tensor(), k: varint(MAX_COMMIT_K, { min: 1 }) } },
  /** Per output row: its scale (f32), then the k largest-magnitude channels as (index u16, value i16 × scale), little-endian. */
  commitment: {
    code: 14,
    dir: 'server → client',
    fields: { session: str(), position, k: varint(MAX_COMMIT_K, { min: 1 }), rows: varint(MAX_STEP_TOKENS, { min: 1 }), data: bytes(MAX_COMMIT_BYTES) },
    note: 'data: rows · (4 + 4·k) bytes'
  },
  /** A typed failure: `code` from ERROR_CODES. */
  error: { code: 15, dir: 'server → client', fields: { code: varint(255), message: str() } }
})

export type InferMsg = MessageOf<typeof INFER_MESSAGES>
export type StepMsg = Extract<InferMsg, { type: 'step' }>
export type ChainMsg = Extract<InferMsg, { type: 'chain' }>
export type ChainedMsg = Extract<InferMsg, { type: 'chained' }>
export type PushMsg = Extract<InferMsg, { type: 'push' }>
export type PushedMsg = Extract<InferMsg, { type: 'pushed' }>
/** Where a CHAIN step's output goes besides the reply: that server's session. */
export type ChainNext = NonNullable<ChainMsg['next']>

/** Message type bytes, by name. */
export const INFER_TYPES = Object.fromEntries(Object.entries(INFER_MESSAGES).map(([k, m]) => [k, m.code])) as { [K in keyof typeof INFER_MESSAGES]: typeof INFER_MESSAGES[K]['code'] }

const codec = messageCodec(INFER, WIRE_VERSION, INFER_MESSAGES, {
  open: m => m.end <= m.start ? `empty block span [${m.start}, ${m.end})` : undefined,
  commitment: m => m.data.length !== m.rows * commitRowBytes(m.k) ? `commitment of ${m.rows} rows × k ${m.k} needs ${m.rows * commitRowBytes(m.k)} bytes, got ${m.data.length}` : undefined
})

export function writeInfer (m: InferMsg): TensorMessage {
  return codec.write(m)
}

/** Decode one message; throws MalformedMessageError / MessageTooLargeError on anything off-grammar. */
export function readInfer (message: TensorMessage): InferMsg {
  return codec.read(message)
}
