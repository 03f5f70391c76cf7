/**
 * A long-running peer's identity stamps for its relays (pow.ts, pow-protocol.ts), kept valid for
 * as long as it runs. A stamp names its UTC day and a relay takes it on that day and the next
 * (`stampProblem`), and holds a reservation only for a peer whose stamp is that fresh (relay
 * limits.ts `isStamped`, asked again at every reservation refresh): a CLI peer that minted once at
 * join (`webswarm api`, `serve`, `generate --bootstrap`, up for days) would lose its reservations on
 * its second midnight. So each day, PREMINT_MS before UTC midnight, the next day's stamps are
 * minted for every relay asked for so far; SKEW_MS after midnight they become the stamps given out
 * and are handed to `onRenew`, which presents them on the open relay connections. Presenting after
 * midnight rather than at it leaves room for a relay whose clock runs a little behind ours (it
 * would refuse a stamp of a day it has not reached); yesterday's stamp is good all day meanwhile.
 * Time comes from a Clock, so tests cross midnight with a ManualClock.
 */
import { realClock, type Clock, type TimerHandle } from '../util/clock.ts'
import { mintStamp, powEpoch } from './pow.ts'
import { relayStampScope } from './pow-protocol.ts'

const DAY_MS = 86_400_000
/** How long before UTC midnight the next day's stamps are minted (well over a mint's ~0.1–1 s). */
export const PREMINT_MS = 10 * 60_000
/** How long after UTC midnight the new stamps are presented: our clock may run ahead of a relay's. */
export const SKEW_MS = 5 * 60_000

/** How a stamp is minted: pow.ts `mintStamp`'s signature (a page passes one that runs in a worker). */
export type Minter = (scope: string, peer: string, bits: number, now: number, o: { signal?: AbortSignal }) => Promise<string>

export interface RelayStampsInit {
  /** This peer's id (stamps are bound to it). */
  peer: string
  /** Difficulty the relays ask (> 0). */
  bits: number
  /** Each relay's new stamp, SKEW_MS into its day: present it on the open connection to that relay. */
  onRenew: (relay: string, stamp: string) => void
  /** Day boundaries and timers. @default realClock */
  clock?: Clock
  /** Aborts minting (the peer stops). */
  signal?: AbortSignal
  /** @default pow.ts mintStamp (in place, yielding to the event loop) */
  mint?: Minter
}

export class RelayStamps {
  /** Stamp promises by `<relay id> <UTC day>`: today's, and tomorrow's once preminted. */
  private readonly stamps = new Map<string, Promise<string>>()
  /** Relays asked for so far: the ones renewed each day. */
  private readonly relays = new Set<string>()
  private readonly clock: Clock
  private readonly mint: Minter
  private timer?: TimerHandle
  private stopped = false

  constructor (private readonly init: RelayStampsInit) {
    this.clock = init.clock ?? realClock
    this.mint = init.mint ?? mintStamp
    this.schedule()
  }

  /** Today's stamp for `relay` (minted on first use; a failed mint is retried on the next call). */
  async stampFor (relay: string): Promise<string> {
    this.relays.add(relay)
    return await this.stampOn(relay, powEpoch(this.clock.now()))
  }

  /** Cancels the daily renewal (minting under way is aborted by `signal`). */
  stop (): void {
    this.stopped = true
    this.clock.clearTimeout(this.timer)
  }

  private async stampOn (relay: string, day: number): Promise<string> {
    const key = `${relay} ${day}`
    let p = this.stamps.get(key)
    if (p === undefined) {
      // Minted for the day's first millisecond: a premint runs before the day it is for.
      p = this.mint(relayStampScope(relay), this.init.peer, this.init.bits, Math.max(this.clock.now(), day * DAY_MS), { signal: this.init.signal })
      this.stamps.set(key, p)
      p.catch(() => { this.stamps.delete(key) })
    }
    return await p
  }

  /** Sets the next timer: the premint before the coming midnight, else the presentation after the last. */
  private schedule (): void {
    if (this.stopped) return
    const now = this.clock.now()
    const midnight = (powEpoch(now) + 1) * DAY_MS
    if (now < midnight - PREMINT_MS) {
      this.timer = this.clock.setTimeout(() => { this.premint(powEpoch(midnight)) }, midnight - PREMINT_MS - now)
    } else {
      this.premint(powEpoch(midnight))
    }
  }

  /** Mints `day`'s stamps now; presents them SKEW_MS after that day begins. */
  private premint (day: number): void {
    if (this.stopped) return
    for (const r of this.relays) this.stampOn(r, day).catch(() => {}) // retried at presentation
    this.timer = this.clock.setTimeout(() => { this.renew(day) }, day * DAY_MS + SKEW_MS - this.clock.now())
  }

  private renew (day: number): void {
    if (this.stopped) return
    for (const key of this.stamps.keys()) if (Number(key.split(' ')[1]) < day) this.stamps.delete(key)
    for (const r of this.relays) {
      this.stampOn(r, day).then(s => { if (!this.stopped) this.init.onRenew(r, s) }, () => {}) // aborted: the peer stopped
    }
    this.schedule()
  }
}
