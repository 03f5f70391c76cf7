/**
 * Peers that failed are banned for BAN_BASE_MS · 2^(failures − 1), capped at BAN_MAX_MS
 * (Petals' exponential backoff); a success clears the count. A peer caught lying (wrong outputs,
 * client/verify.ts) is banned for LIAR_BAN_MS, and a success does not clear that: a liar answers.
 */
import { BAN_BASE_MS, BAN_MAX_MS, LIAR_BAN_MS } from './constants.ts'

export class BanList {
  private readonly failures = new Map<string, number>()
  private readonly until = new Map<string, number>()
  /** Liars' ban ends, apart from failures' so that clear() leaves them. */
  private readonly liarUntil = new Map<string, number>()

  constructor (
    private readonly now: () => number = Date.now,
    private readonly baseMs = BAN_BASE_MS,
    private readonly maxMs = BAN_MAX_MS
  ) {}

  /** Record a failure; returns the ban's length in ms. */
  ban (peer: string): number {
    const n = (this.failures.get(peer) ?? 0) + 1
    this.failures.set(peer, n)
    const ms = Math.min(this.maxMs, this.baseMs * 2 ** (n - 1))
    this.until.set(peer, this.now() + ms)
    return ms
  }

  /** A peer caught returning wrong outputs: banned for `ms`, whatever it answers later. */
  banLiar (peer: string, ms = LIAR_BAN_MS): void {
    this.liarUntil.set(peer, Math.max(this.liarUntil.get(peer) ?? 0, this.now() + ms))
  }

  /** Whether `peer` is banned as a liar now. */
  isLiar (peer: string): boolean {
    const t = this.liarUntil.get(peer)
    return t !== undefined && t > this.now()
  }

  isBanned (peer: string): boolean {
    const t = this.until.get(peer)
    return (t !== undefined && t > this.now()) || this.isLiar(peer)
  }

  /** ms until the first of `peers`' bans ends; undefined when none of them is banned. */
  msUntilUnban (peers: Iterable<string>): number | undefined {
    const t = this.now()
    let best: number | undefined
    for (const p of peers) {
      const u = Math.max(this.until.get(p) ?? 0, this.liarUntil.get(p) ?? 0)
      if (u > t && (best === undefined || u - t < best)) best = u - t
    }
    return best
  }

  /** A success: the peer starts from a clean slate. */
  clear (peer: string): void {
    this.failures.delete(peer)
    this.until.delete(peer)
  }

  failureCount (peer: string): number {
    return this.failures.get(peer) ?? 0
  }
}
