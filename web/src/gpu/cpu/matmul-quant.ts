import type { WeightDType } from '../dtype.ts'
import { dequantize } from './dequant.ts'

/**
 * CPU twin of shaders/matmul_quant.wgsl (CONTRIBUTING.md STYLE 1): out (M, N) = x (M, K) · dequant(w)ᵀ + bias,
 * w (N, K) as the file's bytes. Each weight row is decoded by cpu/dequant.ts, then a plain dot
 * product summed in f64 and rounded to f32 once per output.
 */
export function matmulQuant (x: Float32Array, w: Uint8Array, dtype: WeightDType, M: number, N: number, K: number, bias?: Float32Array): Float32Array {
  const out = new Float32Array(M * N)
  const rowBytes = w.byteLength / Math.max(N, 1)
  for (let n = 0; n < N; n++) {
    const row = dequantize(dtype, w.subarray(n * rowBytes, (n + 1) * rowBytes), K)
    for (let m = 0; m < M; m++) {
      let s = 0
      for (let k = 0; k < K; k++) s += x[m * K + k] * row[k]
      out[m * N + n] = s + (bias !== undefined ? bias[n] : 0)
    }
  }
  return out
}
