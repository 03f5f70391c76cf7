/**
 * The CPU device's matmul: the twin's exact arithmetic (cpu/matmul.ts, the definition) arranged
 * for speed, as llm.c keeps `matmul_forward_naive` beside its faster `matmul_forward`. The CPU
 * backend serves blocks (the embedded peer of `npm start`, `webswarm serve --device cpu`) and
 * runs the API's embedding and head, so its matmuls are a token's main cost there: the twin's
 * inner loop re-reads the transpose flags and the bias on every multiply-add (≈ 2 ms a byte-llama
 * token, BENCHMARKS.md § API), and a batch of M rows walks the weights M times.
 *
 * Here the layout becomes strides, fixed before the loops, and blocks of four rows of `a` and two
 * columns of `b` are computed together (eight sums in flight, each loaded value used twice or
 * four times): continuous batching's stacked rows then read the weights once per four sessions;
 * a single row shares its pass over four columns of `b` instead. Each output is still one f64 sum over k = 0 … K-1 in order, scaled and biased
 * once, then rounded to f32 — the twin's own steps, so the results are equal bit for bit
 * (test/gpu/matmul-blocked.test.ts), and a session's greedy tokens do not depend on the batch it
 * shared.
 */
import type { MatmulDims } from './matmul.ts'

/** Rows of `a` that share one pass over b's row or column. */
const ROWS = 4

/** out (B, M, N) = alpha · op(a)·op(b) + bias: what `matmul` in cpu/matmul.ts returns, faster. */
export function matmulBlocked (a: Float32Array, b: Float32Array, d: MatmulDims, bias?: Float32Array, alpha = 1): Float32Array {
  const { B, M, N, K } = d
  const out = new Float32Array(B * M * N)
  // Element (m, k) of op(a) is a[am · m + ak · k]; element (k, n) of op(b) is b[bk · k + bn · n].
  const am = d.transA ? 1 : K
  const ak = d.transA ? M : 1
  const bk = d.transB ? 1 : N
  const bn = d.transB ? K : 1
  for (let bi = 0; bi < B; bi++) {
    const ab = bi * M * K
    const bb = d.bBatched ? bi * K * N : 0
    const ob = bi * M * N
    let m = 0
    for (; m + ROWS <= M; m += ROWS) {
      const a0 = ab + m * am
      const a1 = a0 + am
      const a2 = a1 + am
      const a3 = a2 + am
      let n = 0
      // A 4 × 2 tile of outputs: eight sums in flight, six loads for eight multiply-adds.
      for (; n + 2 <= N; n += 2) {
        const b0 = bb + n * bn
        const b1 = b0 + bn
        let s00 = 0
        let s01 = 0
        let s10 = 0
        let s11 = 0
        let s20 = 0
        let s21 = 0
        let s30 = 0
        let s31 = 0
        for (let k = 0; k < K; k++) {
          const kb = k * bk
          const ka = k * ak
          const x0 = b[b0 + kb]
          const x1 = b[b1 + kb]
          const y0 = a[a0 + ka]
          const y1 = a[a1 + ka]
          const y2 = a[a2 + ka]
          const y3 = a[a3 + ka]
          s00 += y0 * x0
          s01 += y0 * x1
          s10 += y1 * x0
          s11 += y1 * x1
          s20 += y2 * x0
          s21 += y2 * x1
          s30 += y3 * x0
          s31 += y3 * x1
        }
        // `+ 0` without a bias, as the twin: -0 becomes +0 there too.
        const c0 = bias !== undefined ? bias[n] : 0
        const c1 = bias !== undefined ? bias[n + 1] : 0
        const o = ob + m * N + n
        out[o] = alpha * s00 + c0
        out[o + 1] = alpha * s01 + c1
        out[o + N] = alpha * s10 + c0
        out[o + N + 1] = alpha * s11 + c1
        out[o + 2 * N] = alpha * s20 + c0
        out[o + 2 * N + 1] = alpha * s21 + c1
        out[o + 3 * N] = alpha * s30 + c0
        out[o + 3 * N + 1] = alpha * s31 + c1
      }
      // An odd N's last column.
      for (; n < N; n++) {
        const b0 = bb + n * bn
        let s0 = 0
        let s1 = 0
        let s2 = 0
        let s3 = 0
        for (let k = 0; k < K; k++) {
          const bv = b[b0 + k * bk]
          const ka = k * ak
          s0 += a[a0 + ka] * bv
          s1 += a[a1 + ka] * bv
          s2 += a[a2 + ka] * bv
          s3 += a[a3 + ka] * bv
        }
        const add = bias !== undefined ? bias[n] : 0
        const o = ob + m * N + n
        out[o] = alpha * s0 + add
        out[o + N] = alpha * s1 + add
        out[o + 2 * N] = alpha * s2 + add
        out[o + 3 * N] = alpha * s3 + add
      }
    }
    // The rows left (all of a decode step's single row): four columns of b share each pass over
    // the row of a instead, so four sums are in flight, not one chain of dependent adds.
    for (; m < M; m++) {
      const a0 = ab + m * am
      const o = ob + m * N
      let n = 0
      for (; n + ROWS <= N; n += ROWS) {
        const b0 = bb + n * bn
        const b1 = b0 + bn
        const b2 = b1 + bn
        const b3 = b2 + bn
        let s0 = 0
        let s1 = 0
        let s2 = 0
        let s3 = 0
        for (let k = 0; k < K; k++) {
          const av = a[a0 + k * ak]
          const kb = k * bk
          s0 += av * b[b0 + kb]
          s1 += av * b[b1 + kb]
          s2 += av * b[b2 + kb]
          s3 += av * b[b3 + kb]
        }
        out[o + n] = alpha * s0 + (bias !== undefined ? bias[n] : 0)
        out[o + n + 1] = alpha * s1 + (bias !== undefined ? bias[n + 1] : 0)
        out[o + n + 2] = alpha * s2 + (bias !== undefined ? bias[n + 2] : 0)
        out[o + n + 3] = alpha * s3 + (bias !== undefined ? bias[n + 3] : 0)
      }
      for (; n < N; n++) {
        const b0 = bb + n * bn
        let s = 0
        for (let k = 0; k < K; k++) s += a[a0 + k * ak] * b[b0 + k * bk]
        out[o + n] = alpha * s + (bias !== undefined ? bias[n] : 0)
      }
    }
  }
  return out
}
