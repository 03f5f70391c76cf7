/**
 * CPU twin of shaders/rope.wgsl: rotary position embedding, rotate-half form (Hugging Face Llama).
 * Plain loops; the definition of the op.
 */

/**
 * inv_freq[i] = 1 / theta^(2i/D), i < D/2, rounded to f32 at each step as PyTorch computes
 * `1.0 / (theta ** (torch.arange(0, D, 2).float() / D))`: the exponent is an f32 division, the
 * power and the reciprocal are f32 results. We take the correctly rounded f32 power; PyTorch's
 * vectorised powf (SLEEF, 1-ulp) differs from it in the last bit for a few (D, i) pairs
 * (12 of 2120 entries checked against torch 1.13 on AVX2, none at D ≤ 80 with theta 10000).
 */
export function invFreq (D: number, theta: number): Float32Array {
  const half = D / 2
  const out = new Float32Array(half)
  const base = Math.fround(theta)
  for (let i = 0; i < half; i++) {
    const e = Math.fround((2 * i) / D)
    out[i] = Math.fround(1 / Math.fround(Math.pow(base, e)))
  }
  return out
}

/**
 * inv_freq with per-frequency divisors (llama.cpp's `rope_freqs` tensor; Llama 3.1's scaling):
 * invFreq(D, theta)[i] / factors[i], rounded to f32.
 */
export function scaledInvFreq (D: number, theta: number, factors: ArrayLike<number>): Float32Array {
  const inv = invFreq(D, theta)
  return inv.map((v, i) => Math.fround(v / factors[i]))
}

/**
 * x (T, H, D), positions (T) → (T, H, D). `invFreqTable` (D/2) replaces invFreq(D, theta).
 * angle = f32(pos · inv_freq[i]) (one f32 product, as HF's f32 matmul of inv_freq and positions);
 * cos/sin of that f32 angle in double precision (PyTorch's f32 cos/sin are within 1 ulp of it);
 * out[i] = x[i]·cos − x[i+D/2]·sin, out[i+D/2] = x[i+D/2]·cos + x[i]·sin.
 * `inverse` rotates by −angle: the inverse and the transpose (backward) of the rotation.
 */
export function rope (x: Float32Array, positions: Int32Array, T: number, H: number, D: number, theta: number, inverse: boolean, invFreqTable?: Float32Array): Float32Array {
  const half = D / 2
  const inv = invFreqTable ?? invFreq(D, theta)
  const out = new Float32Array(T * H * D)
  for (let t = 0; t < T; t++) {
    const pos = positions[t]
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * inv[i])
      const c = Math.cos(angle)
      const s = inverse ? -Math.sin(angle) : Math.sin(angle)
      for (let h = 0; h < H; h++) {
        const base = (t * H + h) * D
        const x1 = x[base + i]
        const x2 = x[base + i + half]
        out[base + i] = x1 * c - x2 * s
        out[base + i + half] = x2 * c + x1 * s
      }
    }
  }
  return out
}
