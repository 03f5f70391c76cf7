/**
 * A token bucket per client (API key, else IP address): `burst` requests at once, refilled at
 * `perMinute` a minute. The clock is injected so tests step time instead of sleeping.
 */

export interface RateLimitOptions {
  /** Requests a minute, sustained. */
  perMinute: number
  /** Requests allowed at once (the bucket's size). @default perMinute */
  burst?: number
  /** Clock, ms. @default Date.now */
  now?: () => number
  /** Clients remembered at most; full buckets are forgotten first. @default MAX_TRACKED_CLIENTS */
  maxClients?: number
}

/** Bounds the limiter's memory against many addresses: a forgotten client starts with a full bucket (no more than it could have had). */
const MAX_TRACKED_CLIENTS = 10_000

interface Bucket { tokens: number, at: number }

export class RateLimiter {
  readonly perMinute: number
  readonly burst: number
  private readonly now: () => number
  private readonly maxClients: number
  private readonly buckets = new Map<string, Bucket>()

  constructor (opts: RateLimitOptions) {
    if (!(opts.perMinute > 0) || !Number.isFinite(opts.perMinute)) throw new RangeError(`rate limit: perMinute must be > 0, got ${opts.perMinute}`)
    this.perMinute = opts.perMinute
    this.burst = opts.burst ?? opts.perMinute
    if (!(this.burst >= 1)) throw new RangeError(`rate limit: burst must be ≥ 1, got ${this.burst}`)
    this.now = opts.now ?? Date.now
    this.maxClients = opts.maxClients ?? MAX_TRACKED_CLIENTS
  }

  /** Takes one request from `client`'s bucket: 0 when taken, else the seconds until one would be. */
  take (client: string): number {
    const t = this.now()
    const b = this.refill(client, t)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.ceil((1 - b.tokens) * 60 / this.perMinute)
  }

  private refill (client: string, t: number): Bucket {
    let b = this.buckets.get(client)
    if (b === undefined) {
      if (this.buckets.size >= this.maxClients) this.forget(t)
      b = { tokens: this.burst, at: t }
      this.buckets.set(client, b)
      return b
    }
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, t - b.at) * this.perMinute / 60_000)
    b.at = t
    return b
  }

  /** Drops clients whose buckets are full again, or else the oldest entry. */
  private forget (t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (t - b.at) * this.perMinute / 60_000 >= this.burst) this.buckets.delete(k)
    }
    if (this.buckets.size >= this.maxClients) {
      const oldest = this.buckets.keys().next().value
      if (oldest !== undefined) this.buckets.delete(oldest)
    }
  }
}
