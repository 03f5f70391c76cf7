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

/** x (n) → q8 bytes, identical to quantizeQ8 of web/src/gpu/cpu/quant.ts (caller guarantees finite x). */
export function quantizeQ8Fast (x: ArrayLike<number>, n: number, block: number): Uint8Array {
  const out = new Uint8Array(q8Bytes(n, block))
  const i8 = new Int8Array(out.buffer)
  const f32 = new Float32Array(out.buffer, 0, out.byteLength >> 2)
  const f = Math.fround
  const nb = Math.ceil(n / block)
  for (let j = 0; j < nb; j++) {
    const lo = j * block
    const hi = Math.min(n, lo + block)
    let absmax = 0
    for (let i = lo; i < hi; i++) { const v = Math.abs(x[i]); if (v > absmax) absmax = v }
    if (absmax < Q8_MIN_ABSMAX) continue
    const s = f(absmax * INV_127)
    const base = j * (4 + block)
    f32[base >> 2] = s
    const inv = 1 / s
    for (let i = lo; i < hi; i++) {
      const v = x[i]
      const ax = Math.abs(v)
      // guess, then the reference's rule: |q| = #{k < 127 : ax > f32((k + ½)·s)}
      let k = Math.min(Q8_MAX, Math.floor(ax * inv + 0.5))
      while (k < Q8_MAX && ax > f((k + 0.5) * s)) k++
      while (k > 0 && !(ax > f((k - 0.5) * s))) k--
      i8[base + 4 + (i - lo)] = v < 0 ? -k : k
    }
  }
  return out
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

/** sum[i] += q[i] · scale · factor in f64 (the owner's reduction), for i < n. */
export function accumulateQ8 (q: Uint8Array, n: number, block: number, factor: number, sum: Float64Array): void {
  const i8 = new Int8Array(q.buffer, q.byteOffset, q.byteLength)
  const f32 = scalesView(q)
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength)
  for (let j = 0, i = 0; i < n; j++) {
    const s = scaleAt(q, f32, view, j, block) * factor
    const base = j * (4 + block) + 4 - i
    const hi = Math.min(n, i + block)
    for (; i < hi; i++) sum[i] += i8[base + i] * s
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

/**
 * sum[i] += q[i] · scale for i < n (accumulateQ8 with factor 1, the same f64 operations) and the
 * L2 norm of q (normQ8's operations): one pass over the bytes instead of two.
 */
export function accumulateNormQ8 (q: Uint8Array, n: number, block: number, sum: Float64Array): number {
  const i8 = new Int8Array(q.buffer, q.byteOffset, q.byteLength)
  const f32 = scalesView(q)
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength)
  let total = 0
  for (let j = 0, i = 0; i < n; j++) {
    const s = scaleAt(q, f32, view, j, block)
    const base = j * (4 + block) + 4 - i
    const hi = Math.min(n, i + block)
    let bs = 0
    for (; i < hi; i++) { const v = i8[base + i]; bs += v * v; sum[i] += v * s }
    total += bs * s * s
  }
  return Math.sqrt(total)
}
