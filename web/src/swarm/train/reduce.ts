/**
 * The owner's reduction of one part: the members' q8 contributions in → the mean as q8 out, with
 * the bad-input rules (README.md § Bad input). Deterministic: contributions are summed in the
 * round's fixed member order in f64 and rounded once to f32, so the result depends only on the
 * bytes received, never on arrival order — and every member then dequantizes the same result bytes.
 */
import { q8Bytes } from '../../gpu/cpu/quant.ts'
import { dequantizeQ8Into, meanQ8Into, quantizeQ8Into } from './q8fast.ts'
import { NORM_CLIP_FACTOR, NORM_RULE_MIN_MEMBERS } from './constants.ts'
import { aggregate, type Aggregation } from './robust.ts'

/** One member's contribution to a part, in member order. `q` undefined: nothing arrived. */
export interface Contribution {
  peer: string
  q: Uint8Array | undefined
  /**
   * The sender's L2 norm of its whole contribution this round (REDUCE's `norm`): with `whole`,
   * it sets a floor under the norm rule's reference (reducePartInto).
   */
  norm?: number
  /**
   * Set when the owner's contribution check (contribution-check.ts) excluded it from this round:
   * the reason. It is then rejected with that reason, whatever its bytes.
   */
  excluded?: string
}

export interface ReduceReport {
  /** Peers whose contribution counted (possibly clipped). */
  accepted: string[]
  /** Peers refused, with the rule that refused them. */
  rejected: Array<{ peer: string, reason: string }>
  /** Peers scaled down by the norm rule: their norm and the cap applied. */
  clipped: Array<{ peer: string, norm: number, cap: number }>
}

export interface ReduceResult {
  /** (n) the mean, f32. */
  mean: Float32Array
  /** The mean as q8 (what goes back to every member). */
  q: Uint8Array
  report: ReduceReport
}

/** Why a q8 contribution of n elements in blocks of `block` is malformed, or undefined if it is fine. */
export function checkContribution (q: Uint8Array, n: number, block: number): string | undefined {
  const want = q8Bytes(n, block)
  if (q.byteLength !== want) return `wrong size: ${q.byteLength} bytes, ${n} elements in q8 blocks of ${block} are ${want}`
  // scales through an f32 view when 4-aligned (received payloads are), else a DataView
  const f32 = q.byteOffset % 4 === 0 ? new Float32Array(q.buffer, q.byteOffset, q.byteLength >> 2) : undefined
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength)
  const nb = Math.ceil(n / block)
  for (let j = 0; j < nb; j++) {
    const s = f32 !== undefined ? f32[(j * (4 + block)) >> 2] : view.getFloat32(j * (4 + block), true)
    if (!Number.isFinite(s)) return `block ${j} has a non-finite scale (${s})`
    if (s < 0) return `block ${j} has a negative scale (${s})`
  }
  return undefined
}

/**
 * Mean of the contributions that pass the rules:
 *  1. wrong byte size, or a non-finite / negative scale → rejected (it cannot be a q8 vector of
 *     this part; NaN/Inf can only enter through scales, int8 values are always finite);
 *  2. norm above NORM_CLIP_FACTOR × the lower median of the accepted norms → scaled down to
 *     that cap (clipped, not dropped: a worker that drew unusual data still counts, bounded).
 *     The reference is never below the part's share of the claimed whole norms: lower median of
 *     the claims × √(n / whole). Part norms alone are not comparable across honest peers: in a
 *     part of embedding rows that only one peer's data touched, the others' Δ is ≈ 0 (weight
 *     decay only) and the one honest update would be cut ~100×. The touched peer's part norm is
 *     about its uniform share (AdamW moves every touched element by ~lr per step), well under 4×
 *     the floor; a hostile peer stays bounded part by part, so ≈ 4√2 × an honest whole norm in all
 *     (its own claim cannot raise the floor: it is one value of the lower median).
 * The mean divides by the number of accepted contributions. Missing ones (`q` undefined) count
 * as rejected, and so do ones the owner's contribution check excluded (`excluded`, with its
 * reason). No accepted contribution → a zero mean. With a robust `aggregation` (robust.ts) the
 * accepted, norm-clipped contributions are combined by it instead of the mean.
 */
export function reducePart (contribs: readonly Contribution[], n: number, block: number, whole?: number, aggregation?: Aggregation): ReduceResult {
  const mean = new Float32Array(n)
  const q = new Uint8Array(q8Bytes(n, block))
  return { mean, q, report: reducePartInto(contribs, n, block, q, mean, whole, aggregation) }
}

/**
 * reducePart writing the mean's q8 into `out` (q8Bytes(n, block) bytes, 4-byte aligned) and, if
 * given, the f32 mean into `meanOut`: allocates nothing per element.
 *
 * One pass when nobody is clipped (the norm rule needs every norm before any clip factor is
 * known, so the pass sums with factor 1 and takes the norms on the way); when someone is, the
 * sum is redone with the factors — the same f64 operations in the same order as the two-pass
 * rule, so the bytes never depend on the path.
 */
export function reducePartInto (contribs: readonly Contribution[], n: number, block: number, out: Uint8Array, meanOut?: Float32Array, whole?: number, aggregation?: Aggregation): ReduceReport {
  if (out.byteLength !== q8Bytes(n, block)) throw new RangeError(`reducePartInto: out holds ${out.byteLength} bytes, q8 of ${n} elements is ${q8Bytes(n, block)}`)
  if (meanOut !== undefined && meanOut.length < n) throw new RangeError(`reducePartInto: meanOut holds ${meanOut.length} elements, fewer than ${n}`)
  const report: ReduceReport = { accepted: [], rejected: [], clipped: [] }
  const ok: Array<{ peer: string, q: Uint8Array, claim: number | undefined }> = []
  for (const c of contribs) {
    if (c.q === undefined) { report.rejected.push({ peer: c.peer, reason: 'no contribution' }); continue }
    if (c.excluded !== undefined) { report.rejected.push({ peer: c.peer, reason: `excluded: ${c.excluded}` }); continue }
    const why = checkContribution(c.q, n, block)
    if (why !== undefined) { report.rejected.push({ peer: c.peer, reason: why }); continue }
    ok.push({ peer: c.peer, q: c.q, claim: c.norm })
  }
  const qs = ok.map(o => o.q)
  const norms = new Float64Array(ok.length)
  meanQ8Into(qs, ok.map(() => 1), n, block, out, meanOut, norms)
  const cap = normCap(Array.from(norms), ok.map(o => o.claim), n, whole)
  const factors = ok.map((o, c) => { // member order: the sum's rounding is the same whoever computes it
    report.accepted.push(o.peer)
    if (!(norms[c] > cap)) return 1
    report.clipped.push({ peer: o.peer, norm: norms[c], cap })
    return cap / norms[c]
  })
  if (aggregation !== undefined && aggregation.kind !== 'mean') robustInto(qs, factors, n, block, aggregation, out, meanOut)
  else if (report.clipped.length > 0) meanQ8Into(qs, factors, n, block, out, meanOut)
  return report
}

/**
 * A robust aggregation (robust.ts) of the accepted contributions, each scaled by its norm-rule
 * factor, requantized into `out`: the norm rule still bounds each one before the aggregator
 * sees it. Dequantizes every contribution (m × n f32): robust rules need all values of a
 * coordinate at once, so the fused one-pass mean cannot serve them.
 */
function robustInto (qs: readonly Uint8Array[], factors: readonly number[], n: number, block: number, a: Aggregation, out: Uint8Array, meanOut?: Float32Array): void {
  const xs = qs.map((q, c) => {
    const x = new Float32Array(n)
    dequantizeQ8Into(q, n, block, x)
    if (factors[c] !== 1) for (let i = 0; i < n; i++) x[i] = x[i] * factors[c]
    return x
  })
  const agg = aggregate(xs, n, a)
  quantizeQ8Into(agg, n, block, out)
  if (meanOut !== undefined) meanOut.set(agg.subarray(0, n))
}

/**
 * The norm rule's cap on one part's contributions (README.md § Bad input): NORM_CLIP_FACTOR × the
 * lower median of the part norms, floored at the part's share of the claimed whole norms; Infinity
 * with fewer than NORM_RULE_MIN_MEMBERS contributions or a zero reference. Every codec's owner
 * reduction applies this one rule.
 */
export function normCap (norms: readonly number[], claims: ReadonlyArray<number | undefined>, n: number, whole?: number): number {
  if (norms.length < NORM_RULE_MIN_MEMBERS) return Infinity
  let ref = lowerMedian(norms)
  if (whole !== undefined && whole >= n && claims.every(c => c !== undefined && Number.isFinite(c) && c >= 0)) {
    ref = Math.max(ref, lowerMedian(claims as number[]) * Math.sqrt(n / whole))
  }
  return ref > 0 ? NORM_CLIP_FACTOR * ref : Infinity
}

/** The lower median: with 2 values the smaller, with 3 the middle one (one outlier never sets it). */
function lowerMedian (xs: readonly number[]): number {
  const sorted = xs.slice().sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]
}
