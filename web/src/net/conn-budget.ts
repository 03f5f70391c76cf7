/**
 * A tab's peer-connection budget. Chrome allows about 500 RTCPeerConnections per tab over the
 * tab's lifetime (a reload does not reset the count), so a tab that keeps replacing departed
 * peers for a day of churn would run out and be cut off. The budget bounds the direct links open
 * at once, counts every one ever opened (persisted in sessionStorage where there is one, so a
 * reload continues the count), refuses new ones beyond the lifetime limit, and names the links
 * to close first: idle ones the tab does not work with (its route, its training round).
 *
 * Pacing: a hard lifetime cap alone let a tab at 10 %/min churn spend all 400 in 8 h and then hold
 * fewer links for the rest of the day. A token bucket spreads `dailyLimit` (default 300: the
 * lifetime limit less a 100-connection reserve) over 24 h: `burst` tokens for the start-up, the
 * rest refilling evenly, so that no 24 h window opens more than `dailyLimit`. When the bucket is
 * low, a departed link is replaced only while the tab holds fewer than `floor` links; the last
 * tokens stay for peers the tab works with. Whom to dial: `dialOrder` puts peers the tab works
 * with first, then the longest observed uptime (a peer up for long tends to stay: real churn is
 * heavy-tailed, so a link to it lasts longer and costs fewer connections a day).
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
/** Connections opened in any 24 h: the lifetime limit less a 100-connection reserve (reloads, work peers). */
const DEFAULT_DAILY_LIMIT = 300
/** Bucket size: enough to fill PeerManager's 8 links twice at start-up. */
const DEFAULT_BURST = 16
/** Links kept up (departed ones replaced) even when the bucket is low: half PeerManager's target. */
const DEFAULT_FLOOR = 4
const DAY_MS = 24 * 60 * 60_000
/** sessionStorage key of the persisted lifetime count (per tab, survives reloads). */
export const LIFETIME_STORAGE_KEY = 'webswarm-peer-connections-opened'
/** sessionStorage key of the bucket ("tokens@ms"), so that a reload does not refill it. */
export const BUCKET_STORAGE_KEY = 'webswarm-peer-connections-bucket'

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
  /** Connections opened in any 24 h window (token bucket; ≤ lifetimeLimit). @default min(DEFAULT_DAILY_LIMIT, lifetimeLimit) */
  dailyLimit?: number
  /** Bucket size: connections that may open back to back. @default min(DEFAULT_BURST, dailyLimit) */
  burst?: number
  /** Below this many open links a departed one is replaced with the bucket's last token; at or above it, only while the bucket holds more than a quarter of `burst`. @default DEFAULT_FLOOR */
  floor?: number
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

/** Why a link is wanted: a top-up towards the target, or a peer the tab works with (route, round). */
export type OpenPurpose = 'top-up' | 'work'

export class ConnectionBudget extends TypedEventEmitter<ConnectionBudgetEvents> {
  readonly maxOpen: number
  readonly lifetimeLimit: number
  readonly idleMs: number
  readonly dailyLimit: number
  readonly burst: number
  readonly floor: number
  /** Tokens gained per ms: (dailyLimit − burst) spread over 24 h. */
  private readonly refillPerMs: number
  private tokens: number
  private tokensAt: number
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
    this.dailyLimit = init.dailyLimit ?? Math.min(DEFAULT_DAILY_LIMIT, this.lifetimeLimit)
    this.burst = init.burst ?? Math.min(DEFAULT_BURST, this.dailyLimit)
    this.floor = init.floor ?? Math.min(DEFAULT_FLOOR, this.maxOpen)
    if (!(Number.isInteger(this.dailyLimit) && this.dailyLimit >= 1 && this.dailyLimit <= this.lifetimeLimit)) throw new NetConfigError(`dailyLimit must be an integer in [1, lifetimeLimit ${this.lifetimeLimit}], got ${this.dailyLimit}`)
    if (!(Number.isInteger(this.burst) && this.burst >= 1 && this.burst <= this.dailyLimit)) throw new NetConfigError(`burst must be an integer in [1, dailyLimit ${this.dailyLimit}], got ${this.burst}`)
    if (!(Number.isInteger(this.floor) && this.floor >= 0 && this.floor <= this.maxOpen)) throw new NetConfigError(`floor must be an integer in [0, maxOpen ${this.maxOpen}], got ${this.floor}`)
    this.refillPerMs = (this.dailyLimit - this.burst) / DAY_MS
    const stored = Number(this.store?.getItem(LIFETIME_STORAGE_KEY) ?? 0)
    this.openedTotal = Number.isSafeInteger(stored) && stored > 0 ? stored : 0
    const now = this.clock.now()
    const [tokens, at] = (this.store?.getItem(BUCKET_STORAGE_KEY) ?? '').split('@').map(Number)
    const valid = Number.isFinite(tokens) && Number.isFinite(at) && tokens >= -this.lifetimeLimit && at <= now
    this.tokens = valid ? Math.min(this.burst, tokens) : this.burst
    this.tokensAt = valid ? at : now
  }

  /** Tokens in the bucket now (fractional: the refill is continuous). */
  get bucket (): number {
    const now = this.clock.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.tokensAt) * this.refillPerMs)
    this.tokensAt = now
    return this.tokens
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

  /**
   * Whether one more direct link may be dialled now; a refusal is counted. A top-up needs a token
   * and, at or above `floor` open links, a bucket more than a quarter full (so a low bucket is not
   * spent replacing every departure at once); work needs only a token.
   */
  canOpen (purpose: OpenPurpose = 'top-up'): boolean {
    const tokens = this.bucket
    const need = purpose === 'work' || this.open.size < this.floor ? 1 : Math.max(1, this.burst / 4)
    if (this.open.size < this.maxOpen && this.openedTotal < this.lifetimeLimit && tokens >= need) return true
    this.refused++
    return false
  }

  /**
   * Candidates in the order to dial them: peers the tab works with first, then the longest
   * observed uptime (`upSince`: when the tab first saw the peer, clock ms; earlier first).
   */
  dialOrder<T extends { id: string, upSince: number }> (candidates: readonly T[]): T[] {
    return [...candidates].sort((a, b) => Number(this.isWorking(b.id)) - Number(this.isWorking(a.id)) || a.upSince - b.upSince)
  }

  /** A direct link to `peer` opened (either side dialled: both cost the tab a peer connection). */
  recordOpen (peer: string): void {
    if (this.open.has(peer)) return
    const now = this.clock.now()
    this.open.set(peer, { openedAt: now, lastActiveAt: now })
    this.openedTotal++
    // A link the other side dialled costs a token too; the bucket may go below zero for it.
    this.tokens = this.bucket - 1
    this.store?.setItem(LIFETIME_STORAGE_KEY, String(this.openedTotal))
    this.store?.setItem(BUCKET_STORAGE_KEY, `${this.tokens}@${this.tokensAt}`)
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
