/** CPU twins of shaders/softmax.wgsl: plain loops over rows of C, in f64. */
import { alloc, type Floats } from './elementwise.ts'

/** Largest finite f32. Elements ≤ −F32_MAX (−∞ in practice) are masked. */
const F32_MAX = 3.4028234663852886e38

/**
 * Softmax over rows of C: y = exp(x − max) / Σ exp(x − max) over the unmasked elements.
 * Masked elements (≤ −F32_MAX, i.e. −∞) get 0; a fully masked row is all zeros (not NaN).
 */
export function softmax<A extends Floats> (x: A, C: number): A {
  const out = alloc(x, x.length)
  const rows = C === 0 ? 0 : x.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    let m = -Infinity
    for (let c = 0; c < C; c++) if (x[o + c] > -F32_MAX) m = Math.max(m, x[o + c])
    if (m === -Infinity) continue // fully masked: zeros
    let s = 0
    for (let c = 0; c < C; c++) s += x[o + c] > -F32_MAX ? Math.exp(x[o + c] - m) : 0
    for (let c = 0; c < C; c++) out[o + c] = x[o + c] > -F32_MAX ? Math.exp(x[o + c] - m) / s : 0
  }
  return out
}

/** dx = y · (dy − Σ_row y·dy), from the forward's output y. */
export function softmaxBackward<A extends Floats> (y: A, dy: Floats, C: number): A {
  const out = alloc(y, y.length)
  const rows = C === 0 ? 0 : y.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    let s = 0
    for (let c = 0; c < C; c++) s += y[o + c] * dy[o + c]
    for (let c = 0; c < C; c++) out[o + c] = y[o + c] * (dy[o + c] - s)
  }
  return out
}
