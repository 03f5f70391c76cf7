/**
 * Keeps a peer's relay reservations topped up: whenever it holds fewer than it wants, it asks every
 * connected relay it holds none on for one, all at once, and retries a failed ask with a short
 * per-relay backoff (1 → 2 → 4 → 8 s).
 *
 * Why not leave it to libp2p: circuit-relay-v2's reservation store asks one relay at a time (each
 * ask may take its whole 10 s timeout), asks a relay once per connection, and after a failure
 * (a timeout at load, the relay refusing a request that came before our identity stamp) waits for
 * a new connection or a discovery round that may never come. In the relay-failover bench
 * (BENCHMARKS.md § Scale) 30 peers losing a relay re-reserved over minutes; PeerManager's only
 * remedy was hanging up a relay 30 s into the shortfall so that the redial asked again.
 *
 * PeerManager (peers.ts) calls `poke()` on every relay connect / disconnect and each maintenance
 * tick; `reserve` is the reservation store's own request (`storeReserve`).
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { realClock, type Clock } from '../util/clock.ts'
import { NetConfigError } from './errors.ts'

/** First retry of a failed reservation ask on one relay, ms; doubled per failure up to RETRY_MAX_MS. */
export const RETRY_INITIAL_MS = 1_000
const RETRY_MAX_MS = 8_000

export interface ReservationKeeperInit {
  /** Reservations wanted (MAX_RELAY_RESERVATIONS, or fewer relays). */
  want: number
  /** Relay ids connected now. */
  connected: () => readonly string[]
  /** Relay ids we hold a live reservation on now. */
  held: () => ReadonlySet<string>
  /** Asks relay `id` for a reservation; resolves once held, rejects on refusal or timeout. */
  reserve: (id: string) => Promise<void>
  log?: (line: string) => void
  /** @default realClock */
  clock?: Clock
}

interface RelayState { failures: number, nextAt: number, inFlight: boolean }

export class ReservationKeeper {
  private readonly init: ReservationKeeperInit
  private readonly clock: Clock
  private readonly relays = new Map<string, RelayState>()
  private stopped = false
  /** Asks started, for the bench's timelines and tests. */
  asks = 0

  constructor (init: ReservationKeeperInit) {
    this.init = init
    this.clock = init.clock ?? realClock
  }

  /** Starts an ask on every connected relay without our reservation that is due, while we are short. */
  poke (): void {
    if (this.stopped) return
    const held = this.init.held()
    const connected = this.init.connected()
    // A relay that reconnected starts afresh: its failures belonged to the old connection.
    for (const id of this.relays.keys()) if (!connected.includes(id) && this.relays.get(id)?.inFlight !== true) this.relays.delete(id)
    const inFlight = [...this.relays.values()].filter(r => r.inFlight).length
    let missing = this.init.want - held.size - inFlight
    const now = this.clock.now()
    for (const id of connected) {
      if (missing <= 0) return
      if (held.has(id)) continue
      const r = this.relays.get(id) ?? { failures: 0, nextAt: 0, inFlight: false }
      this.relays.set(id, r)
      if (r.inFlight || r.nextAt > now) continue
      missing--
      this.ask(id, r)
    }
  }

  private ask (id: string, r: RelayState): void {
    r.inFlight = true
    this.asks++
    this.init.reserve(id).then(() => {
      r.failures = 0
      r.nextAt = 0
    }, (e: Error) => {
      r.failures++
      const delay = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** (r.failures - 1))
      r.nextAt = this.clock.now() + delay
      // The first few failures say why; a relay that keeps refusing is retried quietly.
      if (r.failures <= 3) this.init.log?.(`relay ${id}: reservation ask ${r.failures} failed (${e.message}); again in ${delay} ms`)
      if (!this.stopped) this.clock.setTimeout(() => { this.poke() }, delay)
    }).finally(() => {
      r.inFlight = false
    })
  }

  stop (): void {
    this.stopped = true
  }
}

/** What storeReserve reads of circuit-relay-v2's transport (its public `reservationStore`). */
interface ReservingTransport { reservationStore: { addRelay: (peer: PeerId, type: 'discovered') => Promise<unknown> } }

/**
 * A `reserve` for `node`: the circuit-relay transport's own reservation request ('discovered':
 * it fills one of the slots our `/p2p-circuit` listeners asked for, so the listen address and its
 * refresh timer are libp2p's as usual). Reached through the node's components, which libp2p's
 * public type does not show; throws NetConfigError when the node has no circuit-relay transport.
 */
export function storeReserve (node: Libp2p): (id: string) => Promise<void> {
  const components = (node as unknown as { components?: { transportManager?: { getTransports: () => unknown[] } } }).components
  const transport = components?.transportManager?.getTransports().find((t): t is ReservingTransport =>
    typeof (t as Partial<ReservingTransport>).reservationStore?.addRelay === 'function')
  if (transport === undefined) throw new NetConfigError('the node has no circuit-relay transport to reserve with')
  return async (id) => { await transport.reservationStore.addRelay(peerIdFromString(id), 'discovered') }
}
