/**
 * CPU twins of shaders/matmul.wgsl and shaders/matmul_naive.wgsl: plain loops, the definition
 * of the op (CONTRIBUTING.md STYLE 1). Sums are accumulated in f64 and rounded to f32 once per output.
 */

export interface MatmulDims {
  /** Batch count; b is shared by every batch when `bBatched` is false. */
  B: number
  M: number
  N: number
  K: number
  /** a is stored (B, K, M) instead of (B, M, K). */
  transA: boolean
  /** b is stored (B?, N, K) instead of (B?, K, N). */
  transB: boolean
  /** b has its own matrix per batch (rank 3); otherwise one matrix broadcast over B. */
  bBatched: boolean
}

/**
 * out (B, M, N) = alpha · op(a)·op(b) + bias.
 * a: (B, M, K) | (B, K, M);  b: (B?, K, N) | (B?, N, K);  bias: (N) or undefined.
 */
export function matmul (a: Float32Array, b: Float32Array, d: MatmulDims, bias?: Float32Array, alpha = 1): Float32Array {
  const { B, M, N, K } = d
  const out = new Float32Array(B * M * N)
  for (let bi = 0; bi < B; bi++) {
    const ab = bi * M * K
    const bb = d.bBatched ? bi * K * N : 0
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0
        for (let k = 0; k < K; k++) {
          const av = d.transA ? a[ab + k * M + m] : a[ab + m * K + k]
          const bv = d.transB ? b[bb + n * K + k] : b[bb + k * N + n]
          s += av * bv
        }
        out[bi * M * N + m * N + n] = alpha * s + (bias !== undefined ? bias[n] : 0)
      }
    }
  }
  return out
}

/** The naive kernel's definition: out (M, N) = a (M, K) · b (K, N), no options. */
export function matmulNaive (a: Float32Array, b: Float32Array, M: number, N: number, K: number): Float32Array {
  return matmul(a, b, { B: 1, M, N, K, transA: false, transB: false, bBatched: false })
}
