/**
 * The simulator's seeded world: per-peer latency, dial loss and churn picks all come from one
 * mulberry32 stream (web/src/util/rng.ts), so a seed fixes who is slow, which dials are lost and
 * who leaves. (libp2p's own scheduling is real async code, so event interleavings — unlike these
 * choices — are not replayed bit for bit; see web/src/sim/README.md.)
 */
import { Rng } from '../util/rng.ts'
import { SimConfigError } from './errors.ts'

export interface NetModelInit {
  /** Seed of every random choice the simulator makes. @default 1 */
  seed?: number
  /** Smallest one-way latency of a peer's link, in ms. @default 5 */
  minLatencyMs?: number
  /** Median one-way latency, in ms (log-normal above the minimum, like home links). @default 20 */
  medianLatencyMs?: number
  /** Probability that one dial is lost (the connection never opens). @default 0 */
  dialLoss?: number
}

export class NetModel {
  readonly rng: Rng
  readonly minLatencyMs: number
  readonly medianLatencyMs: number
  readonly dialLoss: number

  constructor (init: NetModelInit = {}) {
    this.rng = new Rng(init.seed ?? 1)
    this.minLatencyMs = init.minLatencyMs ?? 5
    this.medianLatencyMs = init.medianLatencyMs ?? 20
    this.dialLoss = init.dialLoss ?? 0
    if (!(this.minLatencyMs >= 0) || !(this.medianLatencyMs >= this.minLatencyMs)) throw new SimConfigError(`latency: min ${this.minLatencyMs} ms must be ≥ 0 and ≤ median ${this.medianLatencyMs} ms`)
    if (!(this.dialLoss >= 0 && this.dialLoss < 1)) throw new SimConfigError(`dialLoss ${this.dialLoss} must be in [0, 1)`)
  }

  /** A new peer's one-way link latency, in ms: min + log-normal(σ = 0.5) around the median. */
  latencyMs (): number {
    const excess = this.medianLatencyMs - this.minLatencyMs
    return Math.round(this.minLatencyMs + excess * Math.exp(0.5 * this.rng.normal()))
  }

  /** Whether the next dial is lost. */
  dialLost (): boolean {
    return this.dialLoss > 0 && this.rng.next() < this.dialLoss
  }

  /** `k` distinct indices of [0, n), seeded (partial Fisher–Yates). */
  pick (n: number, k: number): number[] {
    const idx = Array.from({ length: n }, (_, i) => i)
    const out: number[] = []
    for (let i = 0; i < Math.min(k, n); i++) {
      const j = i + this.rng.int(n - i)
      ;[idx[i], idx[j]] = [idx[j], idx[i]]
      out.push(idx[i])
    }
    return out
  }

  /** 32 seed bytes for peer number `i`'s Ed25519 key: same seed, same peer ids. */
  keySeed (i: number): Uint8Array {
    const r = new Rng((this.rng.int(0x7fffffff) ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0)
    return Uint8Array.from({ length: 32 }, () => r.int(256))
  }
}

/** The p-th percentile (0–100) of `xs` by nearest rank; NaN for none. */
export function percentile (xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))]
}
