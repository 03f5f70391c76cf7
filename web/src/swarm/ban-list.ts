/**
 * Peers that failed are banned for BAN_BASE_MS · 2^(failures − 1), capped at BAN_MAX_MS
 * (Petals' exponential backoff); a success clears the count.
 */
import { BAN_BASE_MS, BAN_MAX_MS } from './constants.ts'

export class BanList {
  private readonly failures = new Map<string, number>()
  private readonly until = new Map<string, number>()

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

  isBanned (peer: string): boolean {
    const t = this.until.get(peer)
    return t !== undefined && t > this.now()
  }

  /** ms until the first of `peers`' bans ends; undefined when none of them is banned. */
  msUntilUnban (peers: Iterable<string>): number | undefined {
    const t = this.now()
    let best: number | undefined
    for (const p of peers) {
      const u = this.until.get(p)
      if (u !== undefined && u > t && (best === undefined || u - t < best)) best = u - t
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
