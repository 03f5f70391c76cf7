/**
 * A seeded in-process network (STYLE 11, after yjs' TestConnector): every request and reply is
 * queued and delivered in a random order chosen by a seeded RNG, after an optional latency; links
 * can be cut (messages silently lost → the caller times out) and peers killed (in-flight and new
 * requests fail as a closed connection would). Same seed, same interleaving.
 */
import { Rng } from '../../util/rng.ts'
import { SWARM_PROTOCOLS } from '../../net/protocols.ts'
import { PeerTimeoutError, PeerUnreachableError, SwarmArgumentError } from '../errors.ts'
import type { RequestOptions, RpcHandler, RpcTransport } from './index.ts'

export interface MemoryNetworkOptions {
  /** Seed of the delivery order. @default 1 */
  seed?: number
  /** Delay added to every message, in ms (a loopback RTT is twice this). @default 0 */
  latencyMs?: number
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
  private readonly latencyMs: number
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
    this.latencyMs = opts.latencyMs ?? 0
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
  send (from: string, to: string, protocol: string, body: Uint8Array, opts: RequestOptions): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const target = this.endpoints.get(to)
      if (target === undefined) {
        reject(new PeerUnreachableError(to, 'no such peer (or it left)'))
        return
      }
      let done = false
      const timer = setTimeout(() => finish(new PeerTimeoutError(to, opts.timeoutMs)), opts.timeoutMs)
      const onAbort = (): void => finish(new PeerUnreachableError(to, 'request aborted'))
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      const flight: Inflight = { from, to, reject: (e) => finish(e) }
      this.inflight.add(flight)
      const finish = (e: Error | null, reply?: Uint8Array): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        this.inflight.delete(flight)
        if (e !== null) reject(e)
        else resolve(reply!)
      }
      // Copies: peers never share memory, as over a real wire.
      const req = body.slice()
      const cap = maxMessageBytes(protocol)
      this.enqueue(from, to, () => {
        const handler = this.endpoints.get(to)?.handlerFor(protocol)
        if (handler === undefined) {
          finish(new PeerUnreachableError(to, `protocol ${protocol} not supported`))
          return
        }
        if (req.length > cap) {
          finish(new PeerUnreachableError(to, `stream reset: LimitExceededError: request of ${req.length} bytes > ${protocol}'s ${cap}`))
          return
        }
        handler(from, req).then(
          (reply) => this.enqueue(to, from, () => reply.length > cap
            ? finish(new PeerUnreachableError(to, `stream reset: LimitExceededError: reply of ${reply.length} bytes > ${protocol}'s ${cap}`))
            : finish(null, reply.slice())),
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
    if (this.latencyMs > 0) setTimeout(push, this.latencyMs)
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
 * A message cap as libp2p channels enforce it (swarm/transport/libp2p.ts): the declared one for
 * registered protocols; none for the ad-hoc protocols of tests.
 */
function maxMessageBytes (protocol: string): number {
  return Object.values(SWARM_PROTOCOLS).find(p => p.id === protocol)?.maxMessageBytes ?? Number.POSITIVE_INFINITY
}

function linkKey (a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`
}

export class MemoryTransport implements RpcTransport {
  private readonly handlers = new Map<string, RpcHandler>()

  constructor (readonly self: string, private readonly net: MemoryNetwork) {}

  request (peer: string, protocol: string, body: Uint8Array, opts: RequestOptions): Promise<Uint8Array> {
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
