/**
 * A seeded in-process network (CONTRIBUTING.md STYLE 11, after yjs' TestConnector): every request and reply is
 * queued and delivered in a random order chosen by a seeded RNG, after an optional latency; links
 * can be cut (messages silently lost → the caller times out) and peers killed (in-flight and new
 * requests fail as a closed connection would). Same seed, same interleaving. Every message goes
 * through the stream's START codec with the protocol's declared limits, as over libp2p.
 */
import { Rng } from '../../util/rng.ts'
import { realClock, type Clock, type TimerHandle } from '../../util/clock.ts'
import { SWARM_PROTOCOLS } from '../../net/protocols.ts'
import { readStart, writeStart, type StartLimits } from '../../net/stream/codec.ts'
import { DEFAULT_MAX_META_BYTES, DEFAULT_MAX_TENSORS } from '../../net/stream/constants.ts'
import { PeerTimeoutError, PeerUnreachableError, SwarmArgumentError } from '../errors.ts'
import type { RequestOptions, RpcHandler, RpcTransport, TensorMessage } from './index.ts'

export interface MemoryNetworkOptions {
  /** Seed of the delivery order. @default 1 */
  seed?: number
  /** Delay added to every message, in ms (a loopback RTT is twice this). @default 0 */
  latencyMs?: number
  /**
   * A message's delay from `from` to `to`, in ms, in place of `latencyMs` (the scale sim: each
   * peer's own link latency). @default every link `latencyMs`
   */
  linkLatencyMs?: (from: string, to: string) => number
  /**
   * The clock of request timeouts and latency (a test's ManualClock decides when a request times
   * out; delivery order stays the seeded one). @default realClock
   */
  clock?: Clock
}

interface Pending {
  deliver: () => void
  /** Peers whose link this message travels; lost if the link is cut when it is picked. */
  from: string
  to: string
}

interface Inflight {
  from: string
  to: string
  reject: (e: Error) => void
}

export class MemoryNetwork {
  private readonly rng: Rng
  private readonly latencyOf: (from: string, to: string) => number
  private readonly clock: Clock
  private readonly queue: Pending[] = []
  private pumping = false
  private readonly endpoints = new Map<string, MemoryTransport>()
  private readonly cutLinks = new Set<string>()
  private readonly inflight = new Set<Inflight>()
  /** Messages delivered / lost so far (tests assert that faults really happened). */
  delivered = 0
  lost = 0

  constructor (opts: MemoryNetworkOptions = {}) {
    this.rng = new Rng(opts.seed ?? 1)
    const latencyMs = opts.latencyMs ?? 0
    this.latencyOf = opts.linkLatencyMs ?? (() => latencyMs)
    this.clock = opts.clock ?? realClock
  }

  /** Messages that have arrived and wait for their turn to be delivered (a virtual-time driver waits for none). */
  get queued (): number {
    return this.queue.length
  }

  endpoint (peer: string): MemoryTransport {
    if (this.endpoints.has(peer)) throw new SwarmArgumentError(`peer ${peer} already exists`)
    const t = new MemoryTransport(peer, this)
    this.endpoints.set(peer, t)
    return t
  }

  /** Remove a peer: requests in flight to or from it fail, later ones are refused. */
  kill (peer: string): void {
    this.endpoints.delete(peer)
    for (const f of [...this.inflight]) {
      if (f.to === peer || f.from === peer) f.reject(new PeerUnreachableError(f.to, 'connection closed'))
    }
  }

  /** Lose every message between a and b (both ways) until `restore`. */
  cut (a: string, b: string): void {
    this.cutLinks.add(linkKey(a, b))
  }

  restore (a: string, b: string): void {
    this.cutLinks.delete(linkKey(a, b))
  }

  /** @internal */
  send (from: string, to: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    return new Promise<TensorMessage>((resolve, reject) => {
      const target = this.endpoints.get(to)
      if (target === undefined) {
        reject(new PeerUnreachableError(to, 'no such peer (or it left)'))
        return
      }
      for (const [a, b] of [[from, to], [to, from]]) {
        const ms = this.latencyOf(a, b)
        if (!(ms >= 0 && ms < Number.POSITIVE_INFINITY)) {
          reject(new SwarmArgumentError(`link latency ${a} → ${b} must be a finite number of ms ≥ 0, got ${ms}`))
          return
        }
      }
      let done = false
      const timer: TimerHandle = this.clock.setTimeout(() => finish(new PeerTimeoutError(to, opts.timeoutMs)), opts.timeoutMs)
      const onAbort = (): void => finish(new PeerUnreachableError(to, 'request aborted'))
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      const flight: Inflight = { from, to, reject: (e) => finish(e) }
      this.inflight.add(flight)
      const finish = (e: Error | null, reply?: TensorMessage): void => {
        if (done) return
        done = true
        this.clock.clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        this.inflight.delete(flight)
        if (e !== null) reject(e)
        else resolve(reply!)
      }
      const limits = limitsOf(protocol)
      // Encoded now, as a sender's stream would (a tensor that does not fit its shape fails here).
      let req: Encoded
      try {
        req = encode(body)
      } catch (e) {
        finish(e as Error)
        return
      }
      this.enqueue(from, to, () => {
        const handler = this.endpoints.get(to)?.handlerFor(protocol)
        if (handler === undefined) {
          finish(new PeerUnreachableError(to, `protocol ${protocol} not supported`))
          return
        }
        let got: TensorMessage
        try {
          got = decode(req, limits, 'request')
        } catch (e) {
          finish(new PeerUnreachableError(to, `stream reset: ${(e as Error).name}: ${(e as Error).message}`))
          return
        }
        handler(from, got).then(encode).then(
          (reply) => this.enqueue(to, from, () => {
            try {
              finish(null, decode(reply, limits, 'reply'))
            } catch (e) {
              finish(new PeerUnreachableError(to, `stream reset: ${(e as Error).name}: ${(e as Error).message}`))
            }
          }),
          (err: Error) => this.enqueue(to, from, () => finish(new PeerUnreachableError(to, `stream reset: ${err.message}`)))
        )
      })
    })
  }

  private enqueue (from: string, to: string, deliver: () => void): void {
    const push = (): void => {
      this.queue.push({ from, to, deliver })
      this.schedule()
    }
    const ms = this.latencyOf(from, to)
    if (ms > 0) this.clock.setTimeout(push, ms)
    else push()
  }

  private schedule (): void {
    if (this.pumping) return
    this.pumping = true
    setTimeout(() => this.pump(), 0)
  }

  /** Deliver one randomly chosen queued message per macrotask, so concurrent flows interleave. */
  private pump (): void {
    this.pumping = false
    if (this.queue.length === 0) return
    const i = this.rng.int(this.queue.length)
    const [m] = this.queue.splice(i, 1)
    if (this.cutLinks.has(linkKey(m.from, m.to)) || !this.endpoints.has(m.from) || !this.endpoints.has(m.to)) this.lost++
    else {
      this.delivered++
      m.deliver()
    }
    if (this.queue.length > 0) this.schedule()
  }
}

/**
 * The limits libp2p channels enforce (swarm/transport/libp2p.ts): the declared ones for registered
 * protocols; the stream's defaults, with tensor bytes uncapped, for the ad-hoc protocols of tests.
 */
function limitsOf (protocol: string): StartLimits {
  const spec = Object.values(SWARM_PROTOCOLS).find(p => p.id === protocol)
  if (spec === undefined) return { maxMessageBytes: Number.POSITIVE_INFINITY, maxTensors: DEFAULT_MAX_TENSORS, maxMetaBytes: DEFAULT_MAX_META_BYTES }
  return { maxMessageBytes: spec.maxMessageBytes, maxTensors: spec.maxTensors, maxMetaBytes: spec.maxMetaBytes }
}

/** A message as it leaves the sender: its START body, and its tensors' bytes copied (peers never share memory). */
interface Encoded { start: Uint8Array, data: Uint8Array[] }

function encode (m: TensorMessage): Encoded {
  return { start: writeStart(m), data: m.tensors.map(t => t.data.slice()) }
}

/** The message the receiving stream delivers, or the limit it breaks (`what`: request / reply). */
function decode (m: Encoded, limits: StartLimits, what: string): TensorMessage {
  const bytes = m.data.reduce((n, d) => n + d.byteLength, 0)
  try {
    const s = readStart(m.start, limits)
    return { ...(s.meta === undefined ? {} : { meta: s.meta }), tensors: s.tensors.map((d, i) => ({ name: d.name, dtype: d.dtype, shape: d.shape, data: m.data[i] })) }
  } catch (e) {
    (e as Error).message = `${what} of ${bytes} tensor bytes: ${(e as Error).message}`
    throw e
  }
}

function linkKey (a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`
}

export class MemoryTransport implements RpcTransport {
  private readonly handlers = new Map<string, RpcHandler>()

  constructor (readonly self: string, private readonly net: MemoryNetwork) {}

  request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    return this.net.send(this.self, peer, protocol, body, opts)
  }

  handle (protocol: string, handler: RpcHandler): void {
    this.handlers.set(protocol, handler)
  }

  unhandle (protocol: string): void {
    this.handlers.delete(protocol)
  }

  /** @internal */
  handlerFor (protocol: string): RpcHandler | undefined {
    return this.handlers.get(protocol)
  }
}
