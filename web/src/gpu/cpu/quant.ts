/**
 * CPU twins of shaders/quant.wgsl — and the definition of the q8 format, usable on plain arrays
 * (DiLoCo compresses pseudo-gradients with these before they go on the wire).
 *
 * ## Byte layout (little-endian), n elements in blocks of `block` (a multiple of 4, 32..256)
 *   nb = ceil(n / block) blocks, each 4 + block bytes, block j at byte j·(4 + block):
 *     [0, 4)          scale  f32
 *     [4, 4 + block)  q[i]   int8 (two's complement), element j·block + i = q[i] · scale
 *   Elements past n in the last block are 0. Total q8Bytes(n, block) = nb · (4 + block).
 *   With block = 32 this is GGUF's Q8_0 block with the scale widened from f16 to f32.
 *
 * ## Quantisation of one block (bit-identical on every device)
 *   absmax = max |x|;  scale = f32(absmax · f32(1/127))           (one correctly rounded multiply)
 *   |q| = #{ k ∈ 0..126 : |x| > f32((k + ½) · scale) }, sign of x  (round to nearest, ties toward 0)
 *   Blocks with absmax < Q8_MIN_ABSMAX are all zero with scale 0.
 * Only single multiplies and comparisons are used — no division (WGSL allows 2.5 ULP error) and
 * no multiply-add (drivers may fuse it) — so every WebGPU device and this twin agree bit for bit.
 * The small floor keeps scales and thresholds normal, where no device flushes subnormals.
 * Error bound: |x − q·scale| ≤ scale/2 (plus f32 rounding of the thresholds).
 */

/** f32(1/127): scale = absmax · this. */
export const INV_127 = Math.fround(1 / 127)
/** Largest |q|. */
export const Q8_MAX = 127
/** Blocks with a smaller absmax quantize to zero: keeps scale ≥ 2^-107 normal (see above). */
export const Q8_MIN_ABSMAX = 2 ** -100
/** Block sizes accepted: multiples of 4 (whole u32 words on the GPU), at most 256. */
export const Q8_BLOCK_MIN = 32
export const Q8_BLOCK_MAX = 256
/** GGUF Q8_0's block. */
export const Q8_0_BLOCK = 32

export function isValidQ8Block (block: number): boolean {
  return Number.isInteger(block) && block % 4 === 0 && block >= Q8_BLOCK_MIN && block <= Q8_BLOCK_MAX
}

/** Bytes of n elements in q8 blocks of `block`. */
export function q8Bytes (n: number, block: number): number {
  return Math.ceil(n / block) * (4 + block)
}

/** |q| for |x| = ax and a block scale s (> 0): round to nearest, ties toward zero, by bisection. */
function quantMag (ax: number, s: number): number {
  let q = 0
  for (let step = 64; step >= 1; step >>= 1) {
    if (q + step <= Q8_MAX && ax > Math.fround((q + step - 0.5) * s)) q += step
  }
  return q
}

/** x (n) → q8 bytes (q8Bytes(n, block)). Throws RangeError on a bad block or non-finite input. */
export function quantizeQ8 (x: Float32Array, block: number): Uint8Array {
  if (!isValidQ8Block(block)) throw new RangeError(`quantizeQ8: block must be a multiple of 4 in [${Q8_BLOCK_MIN}, ${Q8_BLOCK_MAX}], got ${block}`)
  const n = x.length
  const out = new Uint8Array(q8Bytes(n, block))
  const view = new DataView(out.buffer)
  const nb = Math.ceil(n / block)
  for (let j = 0; j < nb; j++) {
    const lo = j * block
    const hi = Math.min(n, lo + block)
    let absmax = 0
    for (let i = lo; i < hi; i++) {
      const a = Math.abs(x[i])
      if (!Number.isFinite(a)) throw new RangeError(`quantizeQ8: element ${i} is ${x[i]}; only finite values can be quantized`)
      if (a > absmax) absmax = a
    }
    const base = j * (4 + block)
    if (absmax < Q8_MIN_ABSMAX) continue // scale 0, q 0 (already zero)
    const s = Math.fround(absmax * INV_127)
    view.setFloat32(base, s, true)
    for (let i = lo; i < hi; i++) {
      const q = quantMag(Math.abs(x[i]), s)
      view.setInt8(base + 4 + (i - lo), x[i] < 0 ? -q : q)
    }
  }
  return out
}

/** q8 bytes → x (n): x = f32(q · scale). */
export function dequantizeQ8 (bytes: Uint8Array, n: number, block: number): Float32Array {
  if (!isValidQ8Block(block)) throw new RangeError(`dequantizeQ8: block must be a multiple of 4 in [${Q8_BLOCK_MIN}, ${Q8_BLOCK_MAX}], got ${block}`)
  if (bytes.byteLength < q8Bytes(n, block)) throw new RangeError(`dequantizeQ8: ${bytes.byteLength} bytes, ${n} elements in blocks of ${block} need ${q8Bytes(n, block)}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const j = Math.floor(i / block)
    const base = j * (4 + block)
    out[i] = Math.fround(view.getInt8(base + 4 + (i - j * block)) * view.getFloat32(base, true))
  }
  return out
}

/**
 * out (M, N) = x (M, K) · dequant(w)ᵀ, w q8 (N, K) in blocks of 32 along K (K % 32 = 0):
 * out[m, n] = Σ_j scale[n, j] · Σ_i q[n, j·32 + i] · x[m, j·32 + i].
 */
export function matmulQ8 (x: Float32Array, w: Uint8Array, M: number, N: number, K: number): Float32Array {
  const B = Q8_0_BLOCK
  const view = new DataView(w.buffer, w.byteOffset, w.byteLength)
  const out = new Float32Array(M * N)
  const blocks = K / B
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0
      for (let j = 0; j < blocks; j++) {
        const base = (n * blocks + j) * (4 + B)
        let d = 0
        for (let i = 0; i < B; i++) d += view.getInt8(base + 4 + i) * x[m * K + j * B + i]
        s += view.getFloat32(base, true) * d
      }
      out[m * N + n] = s
    }
  }
  return out
}

/**
 * GGUF Q8_0 bytes (per block: f16 scale, 32 int8; 34 bytes) → our q8 layout with block 32
 * (the scale widened to f32 exactly). n must be a multiple of 32.
 */
export function q8FromGgufQ8_0 (gguf: Uint8Array, n: number): Uint8Array {
  const GGUF_BLOCK_BYTES = 2 + Q8_0_BLOCK
  if (n % Q8_0_BLOCK !== 0) throw new RangeError(`q8FromGgufQ8_0: ${n} elements is not a multiple of ${Q8_0_BLOCK}`)
  const nb = n / Q8_0_BLOCK
  if (gguf.byteLength < nb * GGUF_BLOCK_BYTES) throw new RangeError(`q8FromGgufQ8_0: ${gguf.byteLength} bytes, ${nb} blocks need ${nb * GGUF_BLOCK_BYTES}`)
  const src = new DataView(gguf.buffer, gguf.byteOffset, gguf.byteLength)
  const out = new Uint8Array(q8Bytes(n, Q8_0_BLOCK))
  const dst = new DataView(out.buffer)
  for (let j = 0; j < nb; j++) {
    dst.setFloat32(j * (4 + Q8_0_BLOCK), f16ToF32(src.getUint16(j * GGUF_BLOCK_BYTES, true)), true)
    out.set(gguf.subarray(j * GGUF_BLOCK_BYTES + 2, (j + 1) * GGUF_BLOCK_BYTES), j * (4 + Q8_0_BLOCK) + 4)
  }
  return out
}

/** IEEE half → number (exact). */
export function f16ToF32 (h: number): number {
  const sign = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return sign * m * 2 ** -24
  if (e === 31) return m === 0 ? sign * Infinity : NaN
  return sign * (1 + m / 1024) * 2 ** (e - 15)
}
