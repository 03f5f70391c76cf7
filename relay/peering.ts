/**
 * Relay-to-relay links (`--peer-relay`): the relay dials each peer relay and keeps the
 * connection, redialling with exponential backoff when it drops. Over these links the relay's
 * CrdtSync (web/src/net/crdt/sync.ts) replicates every swarm doc like with any other peer that
 * speaks crdt-sync: a sync at connect, gossip afterwards, anti-entropy every few seconds. So a
 * relay that restarts with an empty data dir gets the live state back from its peer relays.
 */
import type { PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { NetConfigError } from '../web/src/net/errors.ts'
import type { RelayNode } from '../web/src/net/node.ts'
import { realClock, type Clock, type TimerHandle } from '../web/src/util/clock.ts'

/** First redial delay after a peer relay's link fails or drops, in ms. */
export const PEER_RELAY_BACKOFF_INITIAL_MS = 1_000
/** Longest redial delay, in ms: a peer relay that comes back is relinked within this. */
export const PEER_RELAY_BACKOFF_MAX_MS = 30_000
/** One dial attempt to a peer relay gives up after this long, in ms. */
const PEER_RELAY_DIAL_TIMEOUT_MS = 20_000

/**
 * Parses a `--peer-relay` address: a multiaddr ending in `/p2p/<relay id>` (the id is what
 * tells a reconnect from a stranger at the same address). Throws NetConfigError naming it.
 */
export function parsePeerRelay (addr: string): { addr: Multiaddr, id: string } {
  let ma: Multiaddr
  try {
    ma = multiaddr(addr)
  } catch (e) {
    throw new NetConfigError(`--peer-relay ${JSON.stringify(addr)} is not a multiaddr: ${(e as Error).message}`)
  }
  const id = ma.getComponents().findLast(c => c.name === 'p2p')?.value
  if (id === undefined) throw new NetConfigError(`--peer-relay ${JSON.stringify(addr)} must end in /p2p/<relay peer id>`)
  return { addr: ma, id }
}

interface PeerLink { addr: Multiaddr, id: string, failures: number, connected: boolean, timer?: TimerHandle }

/** Keeps this relay linked to its peer relays until stop(). */
export class RelayPeering {
  private readonly links: PeerLink[]
  private running = false
  private readonly controller = new AbortController()

  constructor (
    private readonly node: RelayNode,
    addrs: string[],
    private readonly log: (line: string) => void,
    private readonly clock: Clock = realClock
  ) {
    const self = node.peerId.toString()
    // Our own address among the peer relays (one list shared by all relays) is skipped, not dialled.
    this.links = addrs.map(parsePeerRelay).filter(l => l.id !== self).map(l => ({ ...l, failures: 0, connected: false }))
  }

  /** Peer relay ids with an open link now. */
  connected (): string[] {
    return this.links.filter(l => l.connected).map(l => l.id)
  }

  /** Links kept (configured and found), linked now or being redialled. */
  get size (): number {
    return this.links.length
  }

  /** Whether `id` is one of this relay's peer relays (or itself). */
  knows (id: string): boolean {
    return id === this.node.peerId.toString() || this.links.some(l => l.id === id)
  }

  /** The peer relays' addresses, configured first, then found (relay/discovery.ts): what /bootstrap lists. */
  addrs (): string[] {
    return this.links.map(l => l.addr.toString())
  }

  /** Links to one more relay (found through the DHT) and keeps the link like a configured one. */
  add (addr: string): void {
    const l = parsePeerRelay(addr)
    if (this.knows(l.id)) return
    const link: PeerLink = { ...l, failures: 0, connected: false }
    this.links.push(link)
    if (this.running) void this.dial(link)
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    for (const l of this.links) void this.dial(l)
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.controller.abort()
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const l of this.links) this.clock.clearTimeout(l.timer)
  }

  private async dial (l: PeerLink): Promise<void> {
    if (!this.running) return
    try {
      await this.node.dial(l.addr, { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(PEER_RELAY_DIAL_TIMEOUT_MS)]) })
      if (!this.running) return
      if (l.failures > 0) this.log(`relay: peer relay ${l.id} linked after ${l.failures} failed attempt(s)`)
      else this.log(`relay: peer relay ${l.id} linked`)
      l.failures = 0
      l.connected = true
    } catch (e) {
      if (!this.running) return
      this.retry(l, `dial failed (${(e as Error).message})`)
    }
  }

  private retry (l: PeerLink, why: string): void {
    l.failures++
    const delay = Math.min(PEER_RELAY_BACKOFF_MAX_MS, PEER_RELAY_BACKOFF_INITIAL_MS * 2 ** (l.failures - 1))
    this.log(`relay: peer relay ${l.id}: ${why}; redial ${l.failures} in ${delay} ms`)
    this.clock.clearTimeout(l.timer)
    l.timer = this.clock.setTimeout(() => { void this.dial(l) }, delay)
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const l = this.links.find(x => x.id === evt.detail.toString())
    if (l === undefined || !this.running) return
    l.connected = false
    this.retry(l, 'link dropped')
  }
}
