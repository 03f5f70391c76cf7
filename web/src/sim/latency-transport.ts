/**
 * An in-process libp2p transport for the simulator with a pipelined one-way delay: every frame a
 * connection end sends reaches the other end `latencyMs` later, however many are in flight, and
 * frames sent at the same instant arrive together as one buffer.
 *
 * Why not @libp2p/memory: its reader awaits `delay(latency)` before each chunk, one after another,
 * so a burst of k frames arrives after k × latency, and the chunks queued behind each other made
 * the reader's `Uint8ArrayList` long (its `consume` shifts an array: quadratic in the queue). At
 * 2,500 nodes that was 10 % of the sim's CPU (web/src/sim/README.md). Here a link is a wire:
 * delay is a property of the path, not of each frame's turn in a queue.
 *
 * Semantics kept from @libp2p/memory so the figures stay comparable: addresses are `/memory/NAME`,
 * a connection's one-way delay is the listening node's latency (both directions), a dial takes one
 * latency before both ends exist, there is no read backpressure, and a closed listener aborts its
 * connections. Bandwidth (optional, unlimited by default): each node has one uplink shared by all
 * its connections; a frame leaves once the frames queued before it on that uplink have, taking
 * bytes ÷ rate, then travels the latency. Close and reset travel the same delayed path after the data
 * sent before them, so the remote end reads everything before it sees the end.
 */
import { ConnectionFailedError, ListenError, serviceCapabilities, transportSymbol, type ComponentLogger, type Connection, type CreateListenerOptions, type DialTransportOptions, type Listener, type ListenerEvents, type Logger, type MultiaddrConnection, type PeerId, type Transport } from '@libp2p/interface'
import { AbstractMultiaddrConnection, type AbstractMultiaddrConnectionInit } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'

/** Listening nodes of one simulated network, by `/memory/NAME` address. Separate networks never meet. */
export class LatencyNetwork {
  readonly listeners = new Map<string, LatencyListener>()

  /**
   * A transport for one node, for `createLibp2p`'s `transports`: its link's one-way latency (ms)
   * and its uplink's rate (bytes/s; Infinity: no limit, as @libp2p/memory).
   */
  transport (latencyMs: number, uplinkBytesPerS = Infinity): (components: { peerId: PeerId, logger: ComponentLogger }) => Transport {
    if (!(latencyMs >= 0) || latencyMs === Infinity) throw new RangeError(`latency ${latencyMs} ms must be finite and ≥ 0`)
    if (!(uplinkBytesPerS > 0)) throw new RangeError(`uplink ${uplinkBytesPerS} bytes/s must be > 0`)
    const uplink = new Uplink(uplinkBytesPerS)
    return components => new LatencyTransport(components, this, latencyMs, uplink)
  }
}

/** One node's outgoing capacity, shared by every connection end it sends on. */
class Uplink {
  /** Virtual ms at which the frames queued so far have all left. */
  private busyUntil = 0
  private readonly bytesPerMs: number

  constructor (bytesPerS: number) {
    this.bytesPerMs = bytesPerS / 1000
  }

  /** When a frame of `bytes` handed over now has left the node (ms, virtual). */
  depart (bytes: number): number {
    const now = Date.now()
    if (this.bytesPerMs === Infinity) return now
    this.busyUntil = Math.max(now, this.busyUntil) + bytes / this.bytesPerMs
    return this.busyUntil
  }
}

/** Frames bound for one connection end, delivered `latencyMs` after they left the sender's uplink. */
class DelayedPath {
  private batch: Uint8Array[] | undefined
  private batchDue = -1
  /** Arrival of the last frame sent: a close or reset comes after it. */
  private lastDue = 0

  constructor (private readonly latencyMs: number, private readonly uplink: Uplink, private readonly to: () => LinkEnd | undefined) {}

  send (data: Uint8Array): void {
    // Whole virtual ms (fake timers count in them); never earlier than a frame sent before it.
    const due = Math.max(this.lastDue, Math.ceil(this.uplink.depart(data.byteLength) + this.latencyMs))
    this.lastDue = due
    // Frames due at one instant share one timer and arrive as one buffer (timers due together
    // fire in the order they were set, so order on the path is kept).
    if (this.batch !== undefined && this.batchDue === due) {
      this.batch.push(data)
      return
    }
    const batch = [data]
    this.batch = batch
    this.batchDue = due
    setTimeout(() => {
      if (this.batch === batch) this.batch = undefined
      const end = this.to()
      if (end !== undefined && end.receiving()) end.onData(concat(batch))
    }, due - Date.now())
  }

  /** Runs `fn` on the far end once everything sent before it has arrived (a control message: no bytes on the uplink). */
  after (fn: (end: LinkEnd) => void): void {
    const due = Math.max(this.lastDue, Date.now() + this.latencyMs)
    setTimeout(() => {
      const end = this.to()
      if (end !== undefined && end.receiving()) fn(end)
    }, due - Date.now())
  }
}

function concat (parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]
  let n = 0
  for (const p of parts) n += p.byteLength
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

interface LinkEndInit extends AbstractMultiaddrConnectionInit {
  /** The path this end sends on. */
  out: DelayedPath
}

/** One end of a simulated connection. */
class LinkEnd extends AbstractMultiaddrConnection {
  private readonly out: DelayedPath

  constructor (init: LinkEndInit) {
    super(init)
    this.out = init.out
  }

  /** Whether frames still reach this end's reader (a reset or aborted end drops them). */
  receiving (): boolean {
    return this.status === 'open' || this.status === 'closing'
  }

  sendData (data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): { sentBytes: number, canSendMore: boolean } {
    // subarray() copies only when the list holds several chunks; the frame must not alias a
    // buffer the sender reuses.
    this.out.send(data.subarray())
    return { sentBytes: data.byteLength, canSendMore: true }
  }

  sendReset (): void {
    this.out.after(end => { end.onRemoteReset() })
  }

  async sendClose (): Promise<void> {
    this.out.after(end => { end.onTransportClosed() })
  }

  sendPause (): void {
    // No read backpressure, as @libp2p/memory.
  }

  sendResume (): void {
    // No read backpressure, as @libp2p/memory.
  }
}

class LatencyTransport implements Transport {
  readonly [transportSymbol] = true as const
  readonly [Symbol.toStringTag] = 'webswarm:sim-latency'
  readonly [serviceCapabilities] = ['@libp2p/transport']
  private readonly log: Logger

  constructor (private readonly components: { peerId: PeerId, logger: ComponentLogger }, private readonly network: LatencyNetwork, readonly latencyMs: number, private readonly uplink: Uplink) {
    this.log = components.logger.forComponent('webswarm:sim:link')
  }

  async dial (ma: Multiaddr, options: DialTransportOptions): Promise<Connection> {
    options.signal.throwIfAborted()
    const listener = this.network.listeners.get(listenAddress(ma))
    if (listener === undefined) throw new ConnectionFailedError(`no simulated listener at ${ma.toString()}`)
    const maConn = await listener.accept(this.components.peerId, this.uplink, this.log, options.signal)
    try {
      options.signal.throwIfAborted()
      return await options.upgrader.upgradeOutbound(maConn, options)
    } catch (err) {
      maConn.abort(err as Error)
      throw err
    }
  }

  createListener (options: CreateListenerOptions): Listener {
    return new LatencyListener(this.components, this.network, this.latencyMs, this.uplink, options)
  }

  listenFilter (addrs: Multiaddr[]): Multiaddr[] {
    return addrs.filter(isMemoryAddr)
  }

  dialFilter (addrs: Multiaddr[]): Multiaddr[] {
    return addrs.filter(isMemoryAddr)
  }
}

function isMemoryAddr (ma: Multiaddr): boolean {
  const c = ma.getComponents()
  return c[0]?.name === 'memory' && c.slice(1).every(x => x.name === 'p2p')
}

/** `/memory/NAME` of an address that may end in `/p2p/ID`. */
function listenAddress (ma: Multiaddr): string {
  return `/memory/${ma.getComponents()[0]?.value ?? ''}`
}

class LatencyListener extends TypedEventEmitter<ListenerEvents> implements Listener {
  private address: string | undefined
  private readonly ends = new Set<LinkEnd>()
  private readonly shutdown = new AbortController()
  private readonly log: Logger

  constructor (private readonly components: { peerId: PeerId, logger: ComponentLogger }, private readonly network: LatencyNetwork, private readonly latencyMs: number, private readonly uplink: Uplink, private readonly options: CreateListenerOptions) {
    super()
    this.log = components.logger.forComponent('webswarm:sim:link')
  }

  async listen (ma: Multiaddr): Promise<void> {
    const address = listenAddress(ma)
    if (this.network.listeners.has(address)) throw new ListenError(`simulated address ${address} already in use`)
    this.address = address
    this.network.listeners.set(address, this)
    queueMicrotask(() => { this.safeDispatchEvent('listening') })
  }

  /** A dial from `peerId` (sending on `dialerUplink`) reached this listener: both ends exist after one latency; returns the dialer's end. */
  async accept (peerId: PeerId, dialerUplink: Uplink, dialerLog: Logger, signal: AbortSignal): Promise<MultiaddrConnection> {
    const address = this.address ?? ''
    let dialer: LinkEnd | undefined
    let listener: LinkEnd | undefined
    dialer = new LinkEnd({ remoteAddr: multiaddr(`${address}/p2p/${this.components.peerId.toString()}`), direction: 'outbound', log: dialerLog.newScope('link'), out: new DelayedPath(this.latencyMs, dialerUplink, () => listener) })
    listener = new LinkEnd({ remoteAddr: multiaddr(`${address}-outgoing/p2p/${peerId.toString()}`), direction: 'inbound', log: this.log.newScope('link'), out: new DelayedPath(this.latencyMs, this.uplink, () => dialer) })
    const ends = [dialer, listener]
    for (const e of ends) {
      this.ends.add(e)
      e.addEventListener('close', () => { this.ends.delete(e) })
    }
    await delayed(this.latencyMs, signal)
    this.options.upgrader.upgradeInbound(listener, { ...this.options, signal: this.shutdown.signal }).catch((err: Error) => { listener.abort(err) })
    return dialer
  }

  getAddrs (): Multiaddr[] {
    return this.address === undefined ? [] : [multiaddr(this.address)]
  }

  updateAnnounceAddrs (): void {
    // Simulated addresses are what they are.
  }

  async close (): Promise<void> {
    for (const e of [...this.ends]) e.abort(new ConnectionFailedError('simulated listener closed'))
    if (this.address !== undefined && this.network.listeners.get(this.address) === this) this.network.listeners.delete(this.address)
    this.shutdown.abort()
    queueMicrotask(() => { this.safeDispatchEvent('close') })
  }
}

async function delayed (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(t); reject(signal.reason) }
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
