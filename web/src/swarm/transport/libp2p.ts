/**
 * RpcTransport over libp2p: swarm messages ride web/src/net/stream channels (framing, chunking
 * under the WebRTC message size, checksums, credit flow control, limits) as the stream's own
 * messages (metadata + typed tensors); the swarm codecs then check them field by field.
 *
 * Opening a stream costs a WebRTC data channel plus a multistream-select round trip, which would
 * dominate a decode step's latency. So a client keeps a small pool of open channels per (peer,
 * protocol) and sends one request at a time on each; the server answers each message on the
 * channel it came on, in order. Channels idle for CHANNEL_IDLE_MS or older than CHANNEL_MAX_AGE_MS
 * are closed, well inside the stream layer's idle and handler timeouts. Each protocol's message
 * size, tensor count, metadata size, message count per channel, inbound streams and relayed-link
 * rule come from its declaration
 * in net/protocols.ts (SWARM_PROTOCOLS); a protocol declared nowhere is refused.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { dialThroughRelay } from '../../net/peers.ts'
import { handleStream, openStream, unhandle } from '../../net/stream/index.ts'
import type { TensorChannel, TensorMessage, TensorStreamLimits } from '../../net/stream/index.ts'
import { SWARM_PROTOCOLS, type SwarmProtocolSpec } from '../../net/protocols.ts'
import { PeerTimeoutError, PeerUnreachableError, SwarmArgumentError } from '../errors.ts'
import type { RequestOptions, RpcHandler, RpcTransport } from './index.ts'

/** A pooled channel unused this long is closed, ms (a session's steps come faster than this). */
const CHANNEL_IDLE_MS = 15_000
/** A pooled channel is retired after this long, ms, whatever its use. */
const CHANNEL_MAX_AGE_MS = 5 * 60_000
/** The stream layer's idle limit for our channels, ms: above CHANNEL_IDLE_MS so we close first. */
const STREAM_IDLE_MS = 2 * CHANNEL_IDLE_MS
/** The stream layer's limit on a serving handler, ms: above CHANNEL_MAX_AGE_MS. */
const STREAM_HANDLER_MS = 2 * CHANNEL_MAX_AGE_MS
/** Tries at connecting (dial + open) before a request is given up, and the pause between them, ms. */
const CONNECT_ATTEMPTS = 3
const CONNECT_RETRY_MS = 200

/** The declaration of a swarm protocol by id; one declared nowhere is a caller's bug. */
export function specOf (protocol: string): SwarmProtocolSpec {
  const spec = Object.values(SWARM_PROTOCOLS).find(p => p.id === protocol)
  if (spec === undefined) throw new SwarmArgumentError(`protocol ${protocol} is not declared in net/protocols.ts SWARM_PROTOCOLS`)
  return spec
}

/** The stream limits of `spec`'s channels: its declared bytes, tensors, metadata, messages and streams. */
export function channelLimits (spec: SwarmProtocolSpec, runOnLimitedConnection?: boolean): TensorStreamLimits {
  return {
    maxMessageBytes: spec.maxMessageBytes,
    maxMessages: spec.maxMessagesPerStream,
    maxTensors: spec.maxTensors,
    maxMetaBytes: spec.maxMetaBytes,
    maxInboundStreams: spec.maxInboundStreams,
    maxOutboundStreams: spec.maxOutboundStreams,
    runOnLimitedConnection: runOnLimitedConnection ?? spec.runOnLimitedConnection,
    idleTimeoutMs: STREAM_IDLE_MS,
    handlerTimeoutMs: STREAM_HANDLER_MS,
    // A reset reaches the requester as PeerUnreachableError and ends the handler's loop; the
    // swarm roles log what they make of it (ban, failover), so the stream layer stays quiet.
    log: () => {}
  }
}

export interface Libp2pTransportOptions {
  /** Let streams run over relayed connections (relays cap data at 128 KiB by default). @default false */
  runOnLimitedConnection?: boolean
  /**
   * Relay multiaddr(s) (ending in `/p2p/<relay id>`): a peer we hold no direct connection to is
   * dialled over WebRTC signalled through one of them, or through any other relay we are
   * connected to (net's dialThroughRelay: a dead relay is skipped).
   */
  relayAddr?: string | readonly string[]
}

interface Pooled {
  ch: TensorChannel
  opened: number
  lastUsed: number
  sent: number
}

export class Libp2pTransport implements RpcTransport {
  readonly self: string
  private readonly idle = new Map<string, Pooled[]>()
  private readonly dialing = new Map<string, Promise<unknown>>()
  /** Channels opened so far (tests and the benchmark check reuse). */
  channelsOpened = 0

  constructor (private readonly node: Libp2p, private readonly opts: Libp2pTransportOptions = {}) {
    this.self = node.peerId.toString()
  }

  private limits (spec: SwarmProtocolSpec): TensorStreamLimits {
    return channelLimits(spec, this.opts.runOnLimitedConnection)
  }

  /** A direct (unlimited) connection to `peer`, opened through the relay's signalling if needed. */
  private async ensureDirect (peer: string, timeoutMs: number): Promise<void> {
    const relay = this.opts.relayAddr
    if (relay === undefined) return
    const id = peerIdFromString(peer)
    if (this.node.getConnections(id).some(c => c.limits === undefined && c.status === 'open')) return
    let p = this.dialing.get(peer)
    if (p === undefined) {
      // NO_RESERVATION fails at once here: a request's peer that left the relay is most often
      // gone, and the roles above (inference failover, all-reduce retry) recover faster than a
      // backoff would (its retries cost a dead server's client ≈ 3 s). A failed WebRTC set-up is
      // retried once.
      p = dialThroughRelay(this.node, relay, id, { signal: AbortSignal.timeout(timeoutMs), noReservationRetries: 0 }).then(() => {}).finally(() => this.dialing.delete(peer))
      this.dialing.set(peer, p)
    }
    await p
  }

  /** An idle pooled channel to (peer, protocol), or undefined; closes stale ones on the way. */
  private take (key: string, maxMessages: number): Pooled | undefined {
    const list = this.idle.get(key) ?? []
    const now = Date.now()
    while (list.length > 0) {
      const p = list.pop()!
      if (now - p.lastUsed < CHANNEL_IDLE_MS && now - p.opened < CHANNEL_MAX_AGE_MS && p.sent < maxMessages) return p
      // A stale channel the peer already reset cannot be closed politely; it is dropped either way.
      void p.ch.closeWrite().catch(() => {})
    }
    return undefined
  }

  private give (key: string, p: Pooled): void {
    p.lastUsed = Date.now()
    const list = this.idle.get(key) ?? []
    list.push(p)
    this.idle.set(key, list)
  }

  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    const key = `${peer} ${protocol}`
    const spec = specOf(protocol)
    const deadline = AbortSignal.timeout(opts.timeoutMs)
    const signal = opts.signal === undefined ? deadline : AbortSignal.any([opts.signal, deadline])
    for (let attempt = 0; ; attempt++) {
      let p = this.take(key, spec.maxMessagesPerStream)
      const reused = p !== undefined
      let sent = false
      let wrote = false
      try {
        if (p === undefined) {
          await this.ensureDirect(peer, opts.timeoutMs)
          const ch = await openStream(this.node, peerIdFromString(peer), protocol, { ...this.limits(spec), openTimeoutMs: opts.timeoutMs, signal: deadline })
          this.channelsOpened++
          p = { ch, opened: Date.now(), lastUsed: Date.now(), sent: 0 }
        }
        p.sent++
        sent = true
        await p.ch.send(body, { signal })
        wrote = true
        const reply = await p.ch.read({ signal })
        if (reply === undefined) throw new PeerUnreachableError(peer, 'channel closed before the reply')
        this.give(key, p)
        return reply
      } catch (e) {
        p?.ch.abort(e as Error)
        if (deadline.aborted) throw new PeerTimeoutError(peer, opts.timeoutMs)
        // Safe to retry: a pooled channel the peer had already closed, or a failure to connect
        // before anything was sent (WebRTC set-up through a busy relay sometimes fails once).
        // A request that went out may have run: resend it only if that is harmless.
        const resendable = !wrote || opts.idempotent !== false
        if (opts.signal?.aborted !== true && ((reused && attempt === 0 && resendable) || (!sent && attempt < CONNECT_ATTEMPTS - 1))) {
          if (!reused) await new Promise(resolve => setTimeout(resolve, CONNECT_RETRY_MS))
          continue
        }
        const err = e as Error
        if (err instanceof PeerUnreachableError) throw err
        throw new PeerUnreachableError(peer, `${err.name}: ${err.message}`)
      }
    }
  }

  /** A direct (unlimited) open connection to `peer` exists; with no relay configured, any open connection. */
  connected (peer: string): boolean {
    const conns = this.node.getConnections(peerIdFromString(peer)).filter(c => c.status === 'open')
    return this.opts.relayAddr === undefined ? conns.length > 0 : conns.some(c => c.limits === undefined)
  }

  async connect (peer: string, timeoutMs: number): Promise<void> {
    if (this.opts.relayAddr !== undefined) await this.ensureDirect(peer, timeoutMs)
    else await this.node.dial(peerIdFromString(peer), { signal: AbortSignal.timeout(timeoutMs) })
  }

  handle (protocol: string, handler: RpcHandler): void {
    const spec = specOf(protocol)
    void handleStream(this.node, protocol, async (ch, ctx) => {
      const from = ctx.remotePeer.toString()
      for await (const m of ch) await ch.send(await handler(from, m), { signal: ctx.signal })
    }, this.limits(spec))
  }

  unhandle (protocol: string): void {
    void unhandle(this.node, protocol)
  }

  /** Resets every pooled channel (before the node stops: open streams would hold its shutdown up). */
  close (): void {
    for (const list of this.idle.values()) for (const p of list) p.ch.abort(new Error('transport closed'))
    this.idle.clear()
  }
}
