/**
 * Robust aggregators for one all-reduce part (README.md § Robust aggregation): what a part owner
 * computes from the members' accepted contributions instead of their plain mean, so that a
 * minority of hostile members cannot move θ_global far. Both are deterministic functions of the
 * contributions in the round's sorted member order — every sum runs in member order in f64 and
 * is rounded once to f32, iteration counts are fixed — so the result never depends on arrival
 * order or on who computes it (and every member then dequantizes the owner's same result bytes).
 *
 *  - `trimmed-mean` (coordinate-wise; Yin et al. 2018): per coordinate, drop the `trim` lowest
 *    and `trim` highest values and average the rest. Ties are ranked by member order.
 *  - `centered-clip` (Karimireddy et al. 2021, as in BTARD): start at the coordinate-wise median
 *    v, then `iters` times v ← v + (1/m) Σ_i (x_i − v)·min(1, τ/‖x_i − v‖), with
 *    τ = tauFactor × the lower median of ‖x_i − median‖ (a scale taken from the honest majority:
 *    updates' size varies over training, a fixed τ would not).
 */
import { TrainArgumentError } from './errors.ts'

export type Aggregation =
  | { kind: 'mean' }
  | { kind: 'trimmed-mean', trim: number }
  | { kind: 'centered-clip', tauFactor: number, iters: number }

/** Upper bound on centered-clip iterations a declaration may ask for (each is a pass over every contribution). */
const MAX_CLIP_ITERS = 20

/** Why `a` is not a valid aggregation for runs of up to `maxMembers`, or undefined. */
export function aggregationProblem (a: unknown): string | undefined {
  if (typeof a !== 'object' || a === null) return 'must be an object with a kind'
  const o = a as Record<string, unknown>
  const keys = Object.keys(o).sort().join(',')
  if (o.kind === 'mean') return keys === 'kind' ? undefined : 'mean takes no parameters'
  if (o.kind === 'trimmed-mean') {
    if (keys !== 'kind,trim') return 'trimmed-mean takes exactly {kind, trim}'
    return Number.isInteger(o.trim) && (o.trim as number) >= 1 && (o.trim as number) <= 16 ? undefined : `trimmed-mean's trim must be an integer in [1, 16], got ${JSON.stringify(o.trim)}`
  }
  if (o.kind === 'centered-clip') {
    if (keys !== 'iters,kind,tauFactor') return 'centered-clip takes exactly {kind, tauFactor, iters}'
    if (!(typeof o.tauFactor === 'number' && o.tauFactor > 0 && o.tauFactor <= 100)) return `centered-clip's tauFactor must be in (0, 100], got ${JSON.stringify(o.tauFactor)}`
    if (!(Number.isInteger(o.iters) && (o.iters as number) >= 1 && (o.iters as number) <= MAX_CLIP_ITERS)) return `centered-clip's iters must be an integer in [1, ${MAX_CLIP_ITERS}], got ${JSON.stringify(o.iters)}`
    return undefined
  }
  return `kind must be mean, trimmed-mean or centered-clip, got ${JSON.stringify(o.kind)}`
}

/** A validated copy of `a` (throws TrainArgumentError naming the problem). */
export function parseAggregation (a: unknown): Aggregation {
  const why = aggregationProblem(a)
  if (why !== undefined) throw new TrainArgumentError(`aggregation ${why}`)
  return JSON.parse(JSON.stringify(a)) as Aggregation
}

/**
 * Aggregates `xs` (m contributions of n elements each, in member order) into `out` (n, f32).
 * `mean` is the plain f64 member-order mean. m = 0 → zeros.
 */
export function aggregate (xs: readonly Float32Array[], n: number, a: Aggregation, out: Float32Array = new Float32Array(n)): Float32Array {
  for (const x of xs) if (x.length < n) throw new TrainArgumentError(`aggregate: a contribution holds ${x.length} elements, fewer than ${n}`)
  if (out.length < n) throw new TrainArgumentError(`aggregate: out holds ${out.length} elements, fewer than ${n}`)
  const m = xs.length
  if (m === 0) { out.fill(0, 0, n); return out }
  if (a.kind === 'mean') return meanInto(xs, n, out)
  if (a.kind === 'trimmed-mean') return trimmedMeanInto(xs, n, a.trim, out)
  return centeredClipInto(xs, n, a.tauFactor, a.iters, out)
}

function meanInto (xs: readonly Float32Array[], n: number, out: Float32Array): Float32Array {
  for (let i = 0; i < n; i++) {
    let s = 0
    for (const x of xs) s += x[i]
    out[i] = s / xs.length
  }
  return out
}

/**
 * Coordinate-wise trimmed mean. With m ≤ 2·trim the trim shrinks to ⌊(m − 1)/2⌋ (the median, or
 * the mean of the middle two): there must be something left to average.
 */
function trimmedMeanInto (xs: readonly Float32Array[], n: number, trim: number, out: Float32Array): Float32Array {
  const m = xs.length
  const b = Math.min(trim, Math.floor((m - 1) / 2))
  const keep = m - 2 * b
  const order = new Int32Array(m)
  const vals = new Float64Array(m)
  const kept = new Uint8Array(m)
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < m; c++) { order[c] = c; vals[c] = xs[c][i] }
    // insertion sort by (value, member index): m ≤ 64, and stable ranks make ties deterministic
    for (let k = 1; k < m; k++) {
      const c = order[k]
      let j = k - 1
      while (j >= 0 && vals[order[j]] > vals[c]) { order[j + 1] = order[j]; j-- }
      order[j + 1] = c
    }
    kept.fill(0)
    for (let r = b; r < m - b; r++) kept[order[r]] = 1
    let s = 0
    for (let c = 0; c < m; c++) if (kept[c] === 1) s += vals[c] // member order
    out[i] = s / keep
  }
  return out
}

/** Coordinate-wise median into `out` (f64 values, the mean of the middle two when m is even). */
function medianInto (xs: readonly Float32Array[], n: number, out: Float64Array): void {
  const m = xs.length
  const vals = new Float64Array(m)
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < m; c++) vals[c] = xs[c][i]
    vals.sort()
    out[i] = m % 2 === 1 ? vals[(m - 1) / 2] : (vals[m / 2 - 1] + vals[m / 2]) / 2
  }
}

/** CenteredClip from the coordinate-wise median, τ from the members' spread (module comment). */
function centeredClipInto (xs: readonly Float32Array[], n: number, tauFactor: number, iters: number, out: Float32Array): Float32Array {
  const m = xs.length
  const v = new Float64Array(n)
  medianInto(xs, n, v)
  const dist = (c: number): number => {
    let s = 0
    const x = xs[c]
    for (let i = 0; i < n; i++) { const d = x[i] - v[i]; s += d * d }
    return Math.sqrt(s)
  }
  const d0 = Array.from({ length: m }, (_, c) => dist(c)).sort((a, b) => a - b)
  const tau = tauFactor * d0[Math.floor((m - 1) / 2)]
  const step = new Float64Array(n)
  for (let t = 0; t < iters && tau > 0; t++) {
    step.fill(0)
    for (let c = 0; c < m; c++) { // member order
      const d = dist(c)
      const w = d > tau ? tau / d : 1
      const x = xs[c]
      for (let i = 0; i < n; i++) step[i] += (x[i] - v[i]) * w
    }
    for (let i = 0; i < n; i++) v[i] += step[i] / m
  }
  for (let i = 0; i < n; i++) out[i] = v[i]
  return out
}
