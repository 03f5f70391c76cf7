import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { storageBytes } from '../../web/src/gpu/quant-types.ts'
import type { Rng } from '../../web/src/util/rng.ts'

/** f16 bits of a random value ±m·2^e, e in [minExp, maxExp] (always finite and normal). */
export function randomHalfBits (rng: Rng, minExp: number, maxExp: number): number {
  const e = minExp + rng.int(maxExp - minExp + 1)
  return (rng.int(2) << 15) | ((e + 15) << 10) | rng.int(1024)
}

/** Byte offsets of the f16 scales in one block of each block dtype (ggml-common.h). */
const HALF_FIELDS: Partial<Record<WeightDType, readonly number[]>> = {
  q8_0: [0], q4_0: [0], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208]
}
const BLOCK_BYTES: Partial<Record<WeightDType, number>> = { q8_0: 34, q4_0: 18, q4_k: 144, q5_k: 176, q6_k: 210 }

/**
 * Random, valid bytes of a (rows, K) weight matrix stored in `dtype`: values of order 1 for
 * f32/f16/bf16; random quants and sub-block scales with f16 block scales of 2^e, e in
 * `blockScaleExps` (default [-8, -6]: decoded values of order 1; never NaN or infinite).
 */
export function randomWeightBytes (rng: Rng, dtype: WeightDType, rows: number, K: number, blockScaleExps: readonly [number, number] = [-8, -6]): Uint8Array {
  const n = rows * K
  const out = new Uint8Array(storageBytes(dtype, [rows, K]))
  const view = new DataView(out.buffer)
  if (dtype === 'f32') {
    for (let i = 0; i < n; i++) view.setFloat32(i * 4, rng.next() * 2 - 1, true)
    return out
  }
  if (dtype === 'f16') {
    for (let i = 0; i < n; i++) view.setUint16(i * 2, randomHalfBits(rng, -4, 0), true)
    return out
  }
  if (dtype === 'bf16') {
    const f = new Float32Array(1)
    const u = new Uint32Array(f.buffer)
    for (let i = 0; i < n; i++) { f[0] = rng.next() * 2 - 1; view.setUint16(i * 2, u[0] >>> 16, true) }
    return out
  }
  for (let i = 0; i < out.length; i++) out[i] = rng.int(256)
  const bb = BLOCK_BYTES[dtype] ?? 0
  for (let b = 0; b < out.length; b += bb) {
    for (const at of HALF_FIELDS[dtype] ?? []) view.setUint16(b + at, randomHalfBits(rng, blockScaleExps[0], blockScaleExps[1]) & 0x7fff, true)
  }
  return out
}

/** What backend.tensor() takes for these bytes: f32 as a Float32Array, every other weight dtype as bytes. */
export function hostWeights (bytes: Uint8Array, dtype: WeightDType): Float32Array | Uint8Array {
  return dtype === 'f32' ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) : bytes
}
