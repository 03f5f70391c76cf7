/**
 * A tab's peer-connection budget. Chrome allows about 500 RTCPeerConnections per tab over the
 * tab's lifetime (a reload does not reset the count), so a tab that keeps replacing departed
 * peers for a day of churn would run out and be cut off. The budget bounds the direct links open
 * at once, counts every one ever opened (persisted in sessionStorage where there is one, so a
 * reload continues the count), refuses new ones beyond the lifetime limit, and names the links
 * to close first: idle ones the tab does not work with (its route, its training round).
 *
 * PeerManager (peers.ts) asks `canOpen()` before each WebRTC dial and reports opens and closes;
 * the page shows `lifetimeOpened` / `lifetimeLimit` (event `change`).
 */
import { TypedEventEmitter } from 'main-event'
import { realClock, type Clock } from '../util/clock.ts'
import { NetConfigError } from './errors.ts'

/** Chrome's per-tab lifetime RTCPeerConnection limit (approximate, not documented by Chrome). */
export const BROWSER_PEER_CONNECTION_LIMIT = 500
/** Lifetime connections a tab allows itself: a 100-connection margin below Chrome's limit. */
const DEFAULT_LIFETIME_LIMIT = 400
/** Direct links open at once: PeerManager's target (8) plus the peers of a route and a round. */
const DEFAULT_MAX_OPEN = 16
/** A link without traffic this long, to a peer the tab does not work with, may be closed, in ms. */
const DEFAULT_IDLE_MS = 5 * 60_000
/** sessionStorage key of the persisted lifetime count (per tab, survives reloads). */
export const LIFETIME_STORAGE_KEY = 'webswarm-peer-connections-opened'

/** Where the lifetime count lives between reloads (sessionStorage in browsers). */
export interface CountStore {
  getItem: (key: string) => string | null
  setItem: (key: string, value: string) => void
}

export interface ConnectionBudgetInit {
  /** Direct links open at once. @default DEFAULT_MAX_OPEN */
  maxOpen?: number
  /** Connections ever opened by this tab. @default DEFAULT_LIFETIME_LIMIT */
  lifetimeLimit?: number
  /** Idle time after which a link nobody works with may be closed, ms. @default DEFAULT_IDLE_MS */
  idleMs?: number
  /** @default realClock */
  clock?: Clock
  /** Persisted count. @default globalThis.sessionStorage when present, else none */
  store?: CountStore
}

export interface ConnectionBudgetEvents {
  /** The open set or the lifetime count changed. */
  change: CustomEvent<void>
}

interface Link { openedAt: number, lastActiveAt: number }

export class ConnectionBudget extends TypedEventEmitter<ConnectionBudgetEvents> {
  readonly maxOpen: number
  readonly lifetimeLimit: number
  readonly idleMs: number
  private readonly clock: Clock
  private readonly store?: CountStore
  private readonly open = new Map<string, Link>()
  /** Peers this tab works with, and until when (route, training round). */
  private readonly working = new Map<string, number>()
  private openedTotal: number
  /** Dials refused because a limit was reached (for the page and metrics). */
  refused = 0

  constructor (init: ConnectionBudgetInit = {}) {
    super()
    this.maxOpen = init.maxOpen ?? DEFAULT_MAX_OPEN
    this.lifetimeLimit = init.lifetimeLimit ?? DEFAULT_LIFETIME_LIMIT
    this.idleMs = init.idleMs ?? DEFAULT_IDLE_MS
    this.clock = init.clock ?? realClock
    this.store = init.store ?? (globalThis as { sessionStorage?: CountStore }).sessionStorage
    if (!(Number.isInteger(this.maxOpen) && this.maxOpen >= 1)) throw new NetConfigError(`maxOpen must be an integer ≥ 1, got ${this.maxOpen}`)
    if (!(Number.isInteger(this.lifetimeLimit) && this.lifetimeLimit >= this.maxOpen && this.lifetimeLimit <= BROWSER_PEER_CONNECTION_LIMIT)) throw new NetConfigError(`lifetimeLimit must be an integer in [maxOpen, ${BROWSER_PEER_CONNECTION_LIMIT}], got ${this.lifetimeLimit}`)
    if (!(this.idleMs > 0)) throw new NetConfigError(`idleMs must be positive, got ${this.idleMs}`)
    const stored = Number(this.store?.getItem(LIFETIME_STORAGE_KEY) ?? 0)
    this.openedTotal = Number.isSafeInteger(stored) && stored > 0 ? stored : 0
  }

  /** Connections this tab has opened in its lifetime (across reloads where persisted). */
  get lifetimeOpened (): number {
    return this.openedTotal
  }

  /** Direct links open now. */
  get openCount (): number {
    return this.open.size
  }

  /** New connections the lifetime limit still allows. */
  get lifetimeLeft (): number {
    return Math.max(0, this.lifetimeLimit - this.openedTotal)
  }

  /** Whether one more direct link may be dialled now; a refusal is counted. */
  canOpen (): boolean {
    if (this.open.size < this.maxOpen && this.openedTotal < this.lifetimeLimit) return true
    this.refused++
    return false
  }

  /** A direct link to `peer` opened (either side dialled: both cost the tab a peer connection). */
  recordOpen (peer: string): void {
    if (this.open.has(peer)) return
    const now = this.clock.now()
    this.open.set(peer, { openedAt: now, lastActiveAt: now })
    this.openedTotal++
    this.store?.setItem(LIFETIME_STORAGE_KEY, String(this.openedTotal))
    this.dispatchEvent(new CustomEvent('change'))
  }

  /** The last direct link to `peer` closed. */
  recordClose (peer: string): void {
    if (this.open.delete(peer)) this.dispatchEvent(new CustomEvent('change'))
  }

  /** Traffic with `peer` (a stream opened): the link is not idle. */
  touch (peer: string): void {
    const l = this.open.get(peer)
    if (l !== undefined) l.lastActiveAt = this.clock.now()
  }

  /** This tab works with `peer` (on its route, in its training round) until `untilMs` of the clock. */
  markWorking (peer: string, untilMs: number): void {
    this.working.set(peer, untilMs)
    this.touch(peer)
  }

  /** Whether the tab works with `peer` now. */
  isWorking (peer: string): boolean {
    const until = this.working.get(peer)
    if (until === undefined) return false
    if (until > this.clock.now()) return true
    this.working.delete(peer)
    return false
  }

  /**
   * Links to close now, least recently active first: every idle one nobody works with, and while
   * more than `keep` are open, the least recently active ones nobody works with.
   */
  toClose (keep: number): string[] {
    const now = this.clock.now()
    const candidates = [...this.open.entries()]
      .filter(([p]) => !this.isWorking(p))
      .sort((a, b) => a[1].lastActiveAt - b[1].lastActiveAt)
    const out: string[] = []
    let openAfter = this.open.size
    for (const [p, l] of candidates) {
      if (now - l.lastActiveAt >= this.idleMs || openAfter > keep) {
        out.push(p)
        openAfter--
      }
    }
    return out
  }
}
