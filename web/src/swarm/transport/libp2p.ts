/**
 * RpcTransport over libp2p: each `infer` / `expert` message travels as one request/response of
 * web/src/net/stream (framing, chunking under the WebRTC message size, checksums, backpressure,
 * limits, timeouts), carried as a single u8 tensor named `msg`. The swarm codecs then parse it
 * with their own caps.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { call, handle, unhandle } from '../../net/stream/index.ts'
import type { TensorMessage } from '../../net/stream/index.ts'
import { MAX_MESSAGE_BYTES } from '../constants.ts'
import { PeerTimeoutError, PeerUnreachableError } from '../errors.ts'
import type { RequestOptions, RpcHandler, RpcTransport } from './index.ts'

/** Name of the one tensor carrying a swarm message. */
const MSG = 'msg'
/** Headroom over the swarm message cap for the stream's own frame headers and metadata, bytes. */
const FRAME_SLACK_BYTES = 64 * 1024

function wrap (body: Uint8Array): TensorMessage {
  return { tensors: [{ name: MSG, dtype: 'u8', shape: [body.length], data: body }] }
}

function unwrap (m: TensorMessage, from: string): Uint8Array {
  const t = m.tensors.find(x => x.name === MSG)
  if (t === undefined || t.dtype !== 'u8' || m.tensors.length !== 1) throw new PeerUnreachableError(from, 'message is not a single u8 tensor named msg')
  return t.data
}

export interface Libp2pTransportOptions {
  /** Resets streams of handlers still running after this, ms. @default 120,000 */
  handlerTimeoutMs?: number
  /** Let streams run over relayed connections (relays cap data at 128 KiB by default). @default false */
  runOnLimitedConnection?: boolean
  /**
   * Relay multiaddr (ending in `/p2p/<relay id>`): a peer we hold no direct connection to is
   * dialled over WebRTC signalled through it (`<relay>/p2p-circuit/webrtc/p2p/<peer>`).
   */
  relayAddr?: string
}

export class Libp2pTransport implements RpcTransport {
  readonly self: string

  constructor (private readonly node: Libp2p, private readonly opts: Libp2pTransportOptions = {}) {
    this.self = node.peerId.toString()
  }

  private limits (): { maxMessageBytes: number, runOnLimitedConnection: boolean, handlerTimeoutMs?: number, log: (l: string) => void } {
    return {
      maxMessageBytes: MAX_MESSAGE_BYTES + FRAME_SLACK_BYTES,
      runOnLimitedConnection: this.opts.runOnLimitedConnection ?? false,
      handlerTimeoutMs: this.opts.handlerTimeoutMs,
      log: () => {}
    }
  }

  private readonly dialing = new Map<string, Promise<unknown>>()

  /** A direct (unlimited) connection to `peer`, opened through the relay's signalling if needed. */
  private async ensureDirect (peer: string, timeoutMs: number): Promise<void> {
    const relay = this.opts.relayAddr
    if (relay === undefined) return
    const id = peerIdFromString(peer)
    if (this.node.getConnections(id).some(c => c.limits === undefined && c.status === 'open')) return
    let p = this.dialing.get(peer)
    if (p === undefined) {
      p = this.node.dial(multiaddr(`${relay}/p2p-circuit/webrtc/p2p/${peer}`), { signal: AbortSignal.timeout(timeoutMs) }).finally(() => this.dialing.delete(peer))
      this.dialing.set(peer, p)
    }
    await p
  }

  async request (peer: string, protocol: string, body: Uint8Array, opts: RequestOptions): Promise<Uint8Array> {
    let reply: TensorMessage
    try {
      await this.ensureDirect(peer, opts.timeoutMs)
      reply = await call(this.node, peerIdFromString(peer), protocol, wrap(body), { ...this.limits(), timeoutMs: opts.timeoutMs, openTimeoutMs: opts.timeoutMs, signal: opts.signal })
    } catch (e) {
      const err = e as Error
      if (err.name === 'StreamTimeoutError' || err.name === 'TimeoutError' || err.name === 'AbortError') throw new PeerTimeoutError(peer, opts.timeoutMs)
      throw new PeerUnreachableError(peer, `${err.name}: ${err.message}`)
    }
    return unwrap(reply, peer)
  }

  handle (protocol: string, handler: RpcHandler): void {
    void handle(this.node, protocol, async (req, ctx) => wrap(await handler(ctx.remotePeer.toString(), unwrap(req, ctx.remotePeer.toString()))), this.limits())
  }

  unhandle (protocol: string): void {
    void unhandle(this.node, protocol)
  }
}
