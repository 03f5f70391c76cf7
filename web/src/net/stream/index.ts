/**
 * Framed tensor streams: request/response and streaming RPC of tensors over libp2p streams.
 * Knows nothing of ML: a tensor is a dtype, a shape and little-endian bytes. Grammar: PROTOCOL.md
 * ("Framed tensor streams").
 *
 * @example
 * ```ts
 * import { call, handle } from './net/stream/index.ts'
 * await handle(server, '/webswarm/echo/1.0.0', async (req) => req, { maxMessageBytes: 64 << 20 })
 * const res = await call(client, serverPeerId, '/webswarm/echo/1.0.0', {
 *   meta: { op: 'echo' },
 *   tensors: [{ name: 'x', dtype: 'f32', shape: [2, 3], data: new Uint8Array(24) }]
 * }, { timeoutMs: 10_000 })
 * ```
 */
import type { Connection, PeerId } from '@libp2p/interface'

/** Element types on the wire. `q8` is opaque quantized bytes (layout belongs to the layer above). */
export type TensorDType = 'f32' | 'f16' | 'i32' | 'u32' | 'u8' | 'q8'

/** A tensor on the wire: row-major little-endian bytes. `data.byteLength` must match dtype × shape. */
interface TensorPayload {
  dtype: TensorDType
  /** Dimensions, outermost first; at most MAX_RANK (8), each < 2^32. */
  shape: number[]
  /** The elements' bytes (for q8: at least one byte per element, scales included by the sender). */
  data: Uint8Array
}

/** A tensor with a name unique within its message (≤ 255 bytes of UTF-8). */
export interface NamedTensor extends TensorPayload {
  name: string
}

/** JSON values allowed in a message's metadata. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** One message: small JSON metadata and zero or more named tensors. */
export interface TensorMessage {
  meta?: { [key: string]: JsonValue }
  tensors: NamedTensor[]
}

/** Limits a receiver enforces on what a peer sends, and the timeouts it applies. */
export interface TensorStreamLimits {
  /** Most payload bytes (sum over tensors) in one message. @default 256 MiB */
  maxMessageBytes?: number
  /** Most payload bytes received over one stream. @default 4 GiB */
  maxStreamBytes?: number
  /** Most tensors in one message. @default 256 */
  maxTensors?: number
  /** Most bytes of UTF-8 JSON metadata in one message. @default 16 KiB */
  maxMetaBytes?: number
  /** Most messages the peer may send on one stream. @default 1,000,000 */
  maxMessages?: number
  /** Streaming only: messages the peer may send ahead of what we consumed. @default 4 */
  windowMessages?: number
  /** Payload bytes per DATA frame we send. @default 16,336 (one frame per WebRTC message) */
  chunkBytes?: number
  /** Fail when the peer sends nothing, or drains nothing, for this long (ms). @default 20,000 */
  idleTimeoutMs?: number
  /** Handlers only: reset the stream if the handler runs longer (ms). @default 120,000 */
  handlerTimeoutMs?: number
  /** Handlers only: concurrent inbound streams per connection. @default 32 */
  maxInboundStreams?: number
  /** Handlers only: concurrent outbound streams of the protocol per connection. @default 64 */
  maxOutboundStreams?: number
  /** Run over relayed (limited) connections too; off because relays cap data at 128 KiB. @default false */
  runOnLimitedConnection?: boolean
  /** Where protocol violations are reported (one line each). @default console.warn */
  log?: (line: string) => void
}

/** What a handler learns about the stream it serves. */
export interface HandlerContext {
  remotePeer: PeerId
  connection: Connection
  protocol: string
  /** Aborts when the stream resets, the peer disappears, or the handler times out. */
  signal: AbortSignal
}

/** Request/response handler: one message in, one message out. Throwing sends an ERROR frame. */
export type CallHandler = (request: TensorMessage, ctx: HandlerContext) => Promise<TensorMessage>

/** Streaming handler: owns the channel until it returns; returning closes our side. */
export type StreamHandler = (channel: TensorChannel, ctx: HandlerContext) => Promise<void>

/** Options of an outbound call or stream. */
export interface CallOptions extends TensorStreamLimits {
  signal?: AbortSignal
  /** Total time for `call`, dial included (ms). @default 120,000 */
  timeoutMs?: number
  /** Time to dial and negotiate the protocol (ms). @default 30,000 */
  openTimeoutMs?: number
}

/** A bidirectional stream of tensor messages with credit-based flow control. */
export interface TensorChannel extends AsyncIterable<TensorMessage> {
  readonly remotePeer: PeerId
  /** Send one message; waits for the peer's credit and for transport drain. */
  send(message: TensorMessage, options?: { signal?: AbortSignal }): Promise<void>
  /** The next message, or undefined once the peer closed its side. */
  read(options?: { signal?: AbortSignal }): Promise<TensorMessage | undefined>
  /** Finish our side; the peer reads `undefined` after our last message. */
  closeWrite(options?: { signal?: AbortSignal }): Promise<void>
  /** Reset the stream; both sides' pending operations fail. */
  abort(err: Error): void
}

export { call, handle, openStream, handleStream, unhandle } from './rpc.ts'
export { ErrorCode } from './codec.ts'
export * from './errors.ts'
