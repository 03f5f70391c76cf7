/**
 * CPU twins of shaders/norm.wgsl and shaders/norm_backward.wgsl: plain loops over rows of C
 * channels, sums in f64. Arrays are (rows, C) row-major; w and b are (C).
 */
import { alloc, type Floats } from './elementwise.ts'

/** Hugging Face LlamaRMSNorm: y = w · (x · rsqrt(mean(x²) + eps)). */
export function rmsnorm<A extends Floats> (x: A, w: Floats, C: number, eps: number): A {
  const out = alloc(x, x.length)
  const rows = C === 0 ? 0 : x.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    let ss = 0
    for (let c = 0; c < C; c++) ss += x[o + c] * x[o + c]
    const rstd = 1 / Math.sqrt(ss / C + eps)
    for (let c = 0; c < C; c++) out[o + c] = w[c] * (x[o + c] * rstd)
  }
  return out
}

/** Gradients of rmsnorm: dx = r·g − x·r³·Σ(g·x)/C with g = dy·w; dw = Σ_rows dy·x·r. */
export function rmsnormBackward<A extends Floats> (x: A, w: Floats, dy: Floats, C: number, eps: number): { dx: A, dw: A } {
  const dx = alloc(x, x.length)
  const dw = alloc(x, C)
  const rows = C === 0 ? 0 : x.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    let ss = 0
    let gx = 0
    for (let c = 0; c < C; c++) {
      ss += x[o + c] * x[o + c]
      gx += dy[o + c] * w[c] * x[o + c]
    }
    const rstd = 1 / Math.sqrt(ss / C + eps)
    const k = (rstd * rstd * rstd * gx) / C
    for (let c = 0; c < C; c++) {
      dx[o + c] = rstd * dy[o + c] * w[c] - x[o + c] * k
      dw[c] += dy[o + c] * x[o + c] * rstd
    }
  }
  return { dx, dw }
}

/** Mean and reciprocal standard deviation (biased variance) of row r. */
function rowStats (x: Floats, o: number, C: number, eps: number): { mean: number, rstd: number } {
  let s = 0
  for (let c = 0; c < C; c++) s += x[o + c]
  const mean = s / C
  let ss = 0
  for (let c = 0; c < C; c++) ss += (x[o + c] - mean) ** 2
  return { mean, rstd: 1 / Math.sqrt(ss / C + eps) }
}

/** torch.nn.LayerNorm over the last dim: y = (x − mean)·rsqrt(var + eps)·w + b. */
export function layernorm<A extends Floats> (x: A, w: Floats, b: Floats, C: number, eps: number): A {
  const out = alloc(x, x.length)
  const rows = C === 0 ? 0 : x.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    const { mean, rstd } = rowStats(x, o, C, eps)
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c] - mean) * rstd * w[c] + b[c]
  }
  return out
}

/**
 * Gradients of layernorm with xh = (x − mean)·r, g = dy·w:
 * dx = r·(g − mean(g) − xh·mean(g·xh)); dw = Σ_rows dy·xh; db = Σ_rows dy.
 */
export function layernormBackward<A extends Floats> (x: A, w: Floats, dy: Floats, C: number, eps: number): { dx: A, dw: A, db: A } {
  const dx = alloc(x, x.length)
  const dw = alloc(x, C)
  const db = alloc(x, C)
  const rows = C === 0 ? 0 : x.length / C
  for (let r = 0; r < rows; r++) {
    const o = r * C
    const { mean, rstd } = rowStats(x, o, C, eps)
    let sg = 0
    let sgx = 0
    for (let c = 0; c < C; c++) {
      const g = dy[o + c] * w[c]
      sg += g
      sgx += g * (x[o + c] - mean) * rstd
    }
    const mg = sg / C
    const mgx = sgx / C
    for (let c = 0; c < C; c++) {
      const xh = (x[o + c] - mean) * rstd
      dx[o + c] = rstd * (dy[o + c] * w[c] - mg - xh * mgx)
      dw[c] += dy[o + c] * xh
      db[c] += dy[o + c]
    }
  }
  return { dx, dw, db }
}
