/**
 * The request/response transport the swarm roles speak through. A request and its reply are each
 * one message of the framed tensor stream (net/stream: JSON metadata + typed tensors), the one
 * wire form of the code base; the swarm codecs (swarm/wire, swarm/train/wire.ts) map their
 * messages onto it. Two implementations: `MemoryNetwork` (seeded, in-process, for tests and
 * benchmarks of the roles' logic) and `Libp2pTransport` (real peers, over web/src/net).
 *
 *   const net = new MemoryNetwork({ seed: 1 })
 *   const a = net.endpoint('A'), b = net.endpoint('B')
 *   b.handle('/echo/1.0.0', async (_from, body) => body)
 *   await a.request('B', '/echo/1.0.0', { meta: { hi: 1 }, tensors: [] }, { timeoutMs: 100 })
 */
import type { TensorMessage } from '../../net/stream/index.ts'

export type { TensorMessage }

/** Serves one protocol: the request in, the reply out. Throwing resets the stream. */
export type RpcHandler = (from: string, body: TensorMessage) => Promise<TensorMessage>

export interface RequestOptions {
  /** Give up after this long, with PeerTimeoutError, in ms. */
  timeoutMs: number
  signal?: AbortSignal
  /**
   * Whether the request may be sent twice. A transport may resend a request whose channel broke
   * after sending only if so (the peer may have run it); a STEP / CHAIN / PUSH must not be.
   * @default true
   */
  idempotent?: boolean
}

export interface RpcTransport {
  /** This peer's id (a PeerId string with libp2p). */
  readonly self: string
  /** One request, one reply. Rejects with PeerTimeoutError / PeerUnreachableError. */
  request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage>
  handle (protocol: string, handler: RpcHandler): void
  unhandle (protocol: string): void
  /** Whether a request to `peer` would go out without first setting up a connection. Absent: assume so. */
  connected? (peer: string): boolean
  /** Sets up a connection to `peer` ahead of requests (e.g. in the background). */
  connect? (peer: string, timeoutMs: number): Promise<void>
}

export { MemoryNetwork } from './memory.ts'
