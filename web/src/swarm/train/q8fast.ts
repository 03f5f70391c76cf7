/**
 * Fast host loops over the q8 format of web/src/gpu/cpu/quant.ts, for the all-reduce's hot path
 * (owners reduce and requantize whole parts; members dequantize every result). Same bytes and
 * values as the reference twins — tested bit for bit in test/swarm/train/pure.test.ts — but with
 * typed-array views instead of DataView, and the reference's 7-step bisection replaced by one
 * division guess corrected against the reference's exact thresholds f32((k ± ½)·scale).
 */
import { INV_127, Q8_MAX, Q8_MIN_ABSMAX, q8Bytes } from '../../gpu/cpu/quant.ts'

/** Scales of a q8 buffer as a Float32Array when 4-aligned (block % 4 == 0 makes every scale aligned), else undefined. */
function scalesView (q: Uint8Array): Float32Array | undefined {
  return q.byteOffset % 4 === 0 ? new Float32Array(q.buffer, q.byteOffset, q.byteLength >> 2) : undefined
}

/** Reads block j's scale. */
function scaleAt (q: Uint8Array, f32: Float32Array | undefined, view: DataView, j: number, block: number): number {
  const at = j * (4 + block)
  return f32 !== undefined ? f32[at >> 2] : view.getFloat32(at, true)
}

/**
 * Rounding margin of the fast path, in units of the scale: a guess r = |x|·(1/s) that is farther
 * than this from a half step k ± ½ is the reference's |q| without checking. The reference's
 * thresholds f32((k ± ½)·s) differ from (k ± ½)·s by ≤ 127.5·2⁻²⁴ ≈ 7.6e-6 steps and r from
 * |x|/s by ~1e-14 steps, so 1e-4 leaves a wide berth; values within it (≈ 2 in 10⁴) take the
 * reference's exact comparisons.
 */
const HALF_MARGIN = 0.5 - 1e-4

/** |q| of ax for scale s by the reference's rule, |q| = #{k < 127 : ax > f32((k + ½)·s)}, from a guess k. */
function quantMagExact (ax: number, s: number, k: number): number {
  if (k > Q8_MAX) k = Q8_MAX
  while (k < Q8_MAX && ax > Math.fround((k + 0.5) * s)) k++
  while (k > 0 && !(ax > Math.fround((k - 0.5) * s))) k--
  return k
}

/**
 * Quantizes one block x[lo, hi), of largest magnitude `absmax`, into q8 block j of the buffer whose
 * int8 and (4-aligned) f32 views are i8 and f32: the bytes of quantizeQ8 of web/src/gpu/cpu/quant.ts. Elements past hi in the
 * block are written 0, so a buffer may be reused.
 */
function quantizeBlock (x: Float32Array, lo: number, hi: number, j: number, block: number, i8: Int8Array, f32: Float32Array, absmax: number): void {
  const base = j * (4 + block)
  const s = absmax < Q8_MIN_ABSMAX ? 0 : Math.fround(absmax * INV_127)
  f32[base >> 2] = s
  const o = base + 4 - lo
  const inv = s === 0 ? 0 : 1 / s // s = 0: every |q| is 0
  for (let i = lo; i < hi; i++) {
    // Round to nearest by one multiply: |r| ≤ 127.0001, so floor(r + ½) is ((r + 128.5) | 0) − 128,
    // with no branch on the sign (a mispredicted one per element cost more than the rest). Within
    // the margin of a half step (ties included) the reference's exact comparisons decide, out of
    // line: a call with loops here would not be inlined.
    const v = x[i]
    const r = v * inv
    const k = ((r + 128.5) | 0) - 128
    if (Math.abs(r - k) >= HALF_MARGIN) {
      const m = quantMagExact(Math.abs(v), s, Math.abs(k))
      i8[o + i] = v < 0 ? -m : m
    } else {
      i8[o + i] = k
    }
  }
  if (hi - lo < block) i8.fill(0, base + 4 + (hi - lo), base + 4 + block) // the last block's tail
}

/** x (n) → q8 bytes written into `out` (q8Bytes(n, block) long), identical to quantizeQ8 (caller guarantees finite x). */
export function quantizeQ8Into (x: Float32Array, n: number, block: number, out: Uint8Array): void {
  if (out.byteOffset % 4 !== 0) { // scales are written through an f32 view: quantize aligned, then copy
    const tmp = new Uint8Array(out.byteLength)
    quantizeQ8Into(x, n, block, tmp)
    out.set(tmp)
    return
  }
  const i8 = new Int8Array(out.buffer, out.byteOffset, out.byteLength)
  const f32 = new Float32Array(out.buffer, out.byteOffset, out.byteLength >> 2)
  const nb = Math.ceil(n / block)
  for (let j = 0; j < nb; j++) {
    const lo = j * block
    const hi = Math.min(n, lo + block)
    let absmax = 0
    for (let i = lo; i < hi; i++) { const v = Math.abs(x[i]); if (v > absmax) absmax = v }
    quantizeBlock(x, lo, hi, j, block, i8, f32, absmax)
  }
}

/** x (n) → q8 bytes, identical to quantizeQ8 of web/src/gpu/cpu/quant.ts (caller guarantees finite x). */
export function quantizeQ8Fast (x: Float32Array, n: number, block: number): Uint8Array {
  const out = new Uint8Array(q8Bytes(n, block))
  quantizeQ8Into(x, n, block, out)
  return out
}

/**
 * The owner's fused reduction of one part's accepted contributions (reduce.ts applies the rules),
 * block by block, straight into q8: per element sum = ((0 + q₀·s₀f₀) + q₁·s₁f₁) + … in f64 in
 * the given (member) order, with s the block's scale and f the contribution's clip factor, mean =
 * f32(sum / m); then that block of means is quantized into `out`. The same operations in the same
 * order as summing whole vectors first, without a vector-sized f64 sum or f32 mean: one block of
 * scratch stays hot in cache. `meanOut` (n) receives the f32 means; `norms` (m), when given,
 * receives each contribution's L2 norm, computed as normQ8 does (the rules need them).
 */
export function meanQ8Into (qs: readonly Uint8Array[], factors: readonly number[], n: number, block: number, out: Uint8Array, meanOut?: Float32Array, norms?: Float64Array): void {
  if (out.byteOffset % 4 !== 0) throw new RangeError('meanQ8Into: out must start at a multiple of 4 bytes (its scales are written as f32)')
  const m = qs.length
  const i8s = qs.map(q => new Int8Array(q.buffer, q.byteOffset, q.byteLength))
  const f32s = qs.map(scalesView)
  const views = qs.map(q => new DataView(q.buffer, q.byteOffset, q.byteLength))
  const oi8 = new Int8Array(out.buffer, out.byteOffset, out.byteLength)
  const of32 = new Float32Array(out.buffer, out.byteOffset, out.byteLength >> 2)
  const sum = blockScratch(block)
  const mean = blockMeans(block)
  const sq = new Float64Array(m) // Σ over blocks of (Σ q²)·s·s, normQ8's operations
  const nb = Math.ceil(n / block)
  // The first two terms are fused into one pass and the division into the last (with the
  // block's absmax): for two members, the usual case, one pass over each block.
  for (let j = 0; j < nb; j++) {
    const lo = j * block
    const len = Math.min(n, lo + block) - lo
    const base = j * (4 + block) + 4
    let absmax = 0
    if (m === 0) {
      mean.fill(0)
    } else if (m === 1) {
      const a = i8s[0]
      const s = scaleAt(qs[0], f32s[0], views[0], j, block)
      const sa = s * factors[0]
      let na = 0
      for (let i = 0; i < len; i++) {
        const va = a[base + i]
        na += va * va
        mean[i] = (0 + va * sa) / 1
        const av = Math.abs(mean[i]); if (av > absmax) absmax = av
      }
      sq[0] += na * s * s
    } else {
      const a = i8s[0]
      const b = i8s[1]
      const s0 = scaleAt(qs[0], f32s[0], views[0], j, block)
      const s1 = scaleAt(qs[1], f32s[1], views[1], j, block)
      const sa = s0 * factors[0]
      const sb = s1 * factors[1]
      let na = 0
      let nb2 = 0
      if (m === 2) {
        for (let i = 0; i < len; i++) {
          const va = a[base + i]
          const vb = b[base + i]
          na += va * va
          nb2 += vb * vb
          mean[i] = ((0 + va * sa) + vb * sb) / 2
          const av = Math.abs(mean[i]); if (av > absmax) absmax = av
        }
      } else {
        for (let i = 0; i < len; i++) {
          const va = a[base + i]
          const vb = b[base + i]
          na += va * va
          nb2 += vb * vb
          sum[i] = (0 + va * sa) + vb * sb
        }
        for (let c = 2; c < m; c++) {
          const q = i8s[c]
          const s = scaleAt(qs[c], f32s[c], views[c], j, block)
          const sc = s * factors[c]
          let nc = 0
          for (let i = 0; i < len; i++) { const v = q[base + i]; nc += v * v; sum[i] += v * sc }
          sq[c] += nc * s * s
        }
        for (let i = 0; i < len; i++) {
          mean[i] = sum[i] / m
          const av = Math.abs(mean[i]); if (av > absmax) absmax = av
        }
      }
      sq[0] += na * s0 * s0
      sq[1] += nb2 * s1 * s1
    }
    if (meanOut !== undefined) for (let i = 0; i < len; i++) meanOut[lo + i] = mean[i]
    quantizeBlock(mean, 0, len, j, block, oi8, of32, absmax)
  }
  if (norms !== undefined) for (let c = 0; c < m; c++) norms[c] = Math.sqrt(sq[c])
}

let sumScratch = new Float64Array(0)
let meanScratch = new Float32Array(0)
/** One block of f64 sums, reused (the reduction runs for every part of every round). */
function blockScratch (block: number): Float64Array {
  if (sumScratch.length < block) sumScratch = new Float64Array(block)
  return sumScratch
}
/** One block of f32 means, reused. */
function blockMeans (block: number): Float32Array {
  if (meanScratch.length < block) meanScratch = new Float32Array(block)
  return meanScratch
}

/** out[i] = f32(q[i] · scale) for i < n, identical to dequantizeQ8. */
export function dequantizeQ8Into (q: Uint8Array, n: number, block: number, out: Float32Array, offset = 0): void {
  const i8 = new Int8Array(q.buffer, q.byteOffset, q.byteLength)
  const f32 = scalesView(q)
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength)
  // int8 × f32 is exact in f64 (8 + 24 significant bits), so the store's rounding to f32 is
  // the reference's single rounding: no Math.fround needed.
  for (let j = 0, i = 0; i < n; j++) {
    const s = scaleAt(q, f32, view, j, block)
    const base = j * (4 + block) + 4 - i
    const hi = Math.min(n, i + block)
    const o = offset
    for (; i < hi; i++) out[o + i] = i8[base + i] * s
  }
}

/** L2 norm of a q8 vector of n elements (f64). */
export function normQ8 (q: Uint8Array, n: number, block: number): number {
  const i8 = new Int8Array(q.buffer, q.byteOffset, q.byteLength)
  const f32 = scalesView(q)
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength)
  let total = 0
  for (let j = 0, i = 0; i < n; j++) {
    const s = scaleAt(q, f32, view, j, block)
    const base = j * (4 + block) + 4 - i
    const hi = Math.min(n, i + block)
    let bs = 0
    for (; i < hi; i++) { const v = i8[base + i]; bs += v * v }
    total += bs * s * s
  }
  return Math.sqrt(total)
}
