import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { blockInfo } from '../../web/src/gpu/quant-types.ts'
import { Rng } from '../../web/src/util/rng.ts'

/** Where each weight dtype keeps its f16 scales inside a block (byte offsets). */
const F16_FIELDS: Readonly<Record<WeightDType, readonly number[]>> = {
  f32: [], f16: [], bf16: [], q8_0: [0], q4_0: [0], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208]
}

/** f32 → f16 bits (round to nearest even; finite inputs of moderate size only: test data). */
export function f16Bits (x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)[0]
  const sign = (u >>> 16) & 0x8000
  const e = ((u >>> 23) & 0xff) - 127 + 15
  const m = u & 0x7fffff
  if (e <= 0) return sign | Math.round((m | 0x800000) * 2 ** (e - 14 - 10)) // subnormal
  let h = sign | (e << 10) | (m >>> 13)
  const rest = m & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++
  return h
}

/**
 * `rows` rows of K values of `dtype` as GGUF bytes: random quant bytes with finite f16 scales of
 * about `scale` (the file format defines every quant byte pattern as valid; only the scales must
 * be finite). f16/bf16/f32 rows are random normals of about `scale`.
 */
export function randomWeightBytes (dtype: WeightDType, rows: number, K: number, seed: number, scale = 0.05): Uint8Array {
  const rng = new Rng(seed)
  const { elems, bytes } = blockInfo(dtype)
  const n = rows * K
  if (dtype === 'f32') return new Uint8Array(Float32Array.from({ length: n }, () => rng.normal() * scale).buffer)
  if (dtype === 'f16') return new Uint8Array(Uint16Array.from({ length: n }, () => f16Bits(rng.normal() * scale)).buffer)
  if (dtype === 'bf16') {
    const f = Float32Array.from({ length: n }, () => rng.normal() * scale)
    return new Uint8Array(Uint16Array.from(new Uint32Array(f.buffer), u => u >>> 16).buffer)
  }
  const nb = n / elems
  const out = new Uint8Array(nb * bytes)
  for (let i = 0; i < out.length; i++) out[i] = rng.int(256)
  const v = new DataView(out.buffer)
  for (let b = 0; b < nb; b++) {
    // K-quant sub-block scales reach 63 (q4_k/q5_k) or ±127 (q6_k): shrink d to keep |w| ~ scale
    const d = dtype === 'q4_k' || dtype === 'q5_k' ? scale / 32 : dtype === 'q6_k' ? scale / 1024 : scale / 8
    for (const at of F16_FIELDS[dtype]) v.setUint16(b * bytes + at, f16Bits(d * (0.5 + rng.next())), true)
  }
  return out
}
