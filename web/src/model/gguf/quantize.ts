import { f32ToBf16, f32ToF16, f16ToF32 } from '../safetensors.ts'
import { UnsupportedDTypeError } from '../errors.ts'
import { GGML, ggmlTypeInfo, ggmlTypeName } from './ggml-types.ts'

/**
 * Host-side encoders from f32 values to GGML block bytes, for the GGUF writer (tests build models
 * with it; the bench builds real-shape files). Q8_0 and Q4_0 follow llama.cpp's reference
 * quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) bit for bit, f32 arithmetic
 * included. The K-quants use a simple min/max fit per sub-block, not llama.cpp's search: the
 * blocks are valid and their values are whatever the format defines them to be, which is all a
 * test or benchmark needs.
 */

const QK = 32
const QK_K = 256
const f32 = Math.fround

/** round half away from zero, as C's roundf */
function roundf (v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)
}

function putF16 (out: Uint8Array, at: number, v: number): void {
  const h = f32ToF16(v)
  out[at] = h & 0xff
  out[at + 1] = h >> 8
}

/** Q8_0 block: f16 d, 32 × i8; x = d·q. */
function q8_0 (x: Float32Array, i0: number, out: Uint8Array, o: number): void {
  let amax = 0
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[i0 + j]))
  const d = f32(amax / 127)
  const id = d === 0 ? 0 : f32(1 / d)
  putF16(out, o, d)
  for (let j = 0; j < QK; j++) out[o + 2 + j] = roundf(f32(x[i0 + j] * id)) & 0xff
}

/** Q4_0 block: f16 d, 16 bytes of nibbles (element j low, j + 16 high); x = d·(q − 8). */
function q4_0 (x: Float32Array, i0: number, out: Uint8Array, o: number): void {
  let amax = 0
  let max = 0
  for (let j = 0; j < QK; j++) {
    const v = x[i0 + j]
    if (Math.abs(v) > amax) { amax = Math.abs(v); max = v }
  }
  const d = f32(max / -8)
  const id = d === 0 ? 0 : f32(1 / d)
  putF16(out, o, d)
  const q = (v: number): number => Math.min(15, Math.trunc(f32(f32(v * id) + 8.5)))
  for (let j = 0; j < QK / 2; j++) out[o + 2 + j] = q(x[i0 + j]) | (q(x[i0 + j + QK / 2]) << 4)
}

/**
 * Per-sub-block affine fit for Q4_K / Q5_K: x ≈ d·sc·q − dmin·m with q in [0, qmax], 6-bit sc
 * and m. Returns the f16-rounded super-block scales, the 6-bit scales/mins and the quants.
 */
function fitAffine (x: Float32Array, i0: number, qmax: number): { d: number, dmin: number, sc: number[], m: number[], q: Uint8Array } {
  const scale: number[] = []
  const offs: number[] = []
  for (let s = 0; s < 8; s++) {
    let lo = 0 // the offset is subtracted (m ≥ 0), so the range always includes 0
    let hi = 0
    for (let j = 0; j < 32; j++) { const v = x[i0 + 32 * s + j]; lo = Math.min(lo, v); hi = Math.max(hi, v) }
    scale.push((hi - lo) / qmax)
    offs.push(-lo)
  }
  const d = f16ToF32(f32ToF16(Math.max(...scale) / 63))
  const dmin = f16ToF32(f32ToF16(Math.max(...offs) / 63))
  const sc = scale.map(v => d === 0 ? 0 : Math.min(63, Math.round(v / d)))
  const m = offs.map(v => dmin === 0 ? 0 : Math.min(63, Math.round(v / dmin)))
  const q = new Uint8Array(QK_K)
  for (let s = 0; s < 8; s++) {
    const step = d * sc[s]
    const base = dmin * m[s]
    for (let j = 0; j < 32; j++) q[32 * s + j] = step === 0 ? 0 : Math.max(0, Math.min(qmax, Math.round((x[i0 + 32 * s + j] + base) / step)))
  }
  return { d, dmin, sc, m, q }
}

/** The 12-byte 6-bit scale/min packing of Q4_K and Q5_K (inverse of ggml's get_scale_min_k4). */
function packScales (sc: number[], m: number[], out: Uint8Array, o: number): void {
  for (let j = 0; j < 4; j++) {
    out[o + j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
    out[o + j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6)
    out[o + j + 8] = (sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4)
  }
}

/** Q4_K block (144 B): f16 d, f16 dmin, 12 B scales, 128 B nibbles (per 64: 32 low, 32 high). */
function q4_k (x: Float32Array, i0: number, out: Uint8Array, o: number): void {
  const { d, dmin, sc, m, q } = fitAffine(x, i0, 15)
  putF16(out, o, d)
  putF16(out, o + 2, dmin)
  packScales(sc, m, out, o + 4)
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4)
  }
}

/** Q5_K block (176 B): as Q4_K plus 32 B of fifth bits (bit 2c: element 64c + l, bit 2c+1: 64c + 32 + l). */
function q5_k (x: Float32Array, i0: number, out: Uint8Array, o: number): void {
  const { d, dmin, sc, m, q } = fitAffine(x, i0, 31)
  putF16(out, o, d)
  putF16(out, o + 2, dmin)
  packScales(sc, m, out, o + 4)
  for (let l = 0; l < 32; l++) out[o + 16 + l] = 0
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) {
      const a = q[64 * c + l]
      const b = q[64 * c + 32 + l]
      out[o + 48 + 32 * c + l] = (a & 0xf) | ((b & 0xf) << 4)
      out[o + 16 + l] |= ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1))
    }
  }
}

/**
 * Q6_K block (210 B): 128 B low nibbles, 64 B high 2-bit pairs, 16 × i8 scales, f16 d;
 * x = d·sc·(q − 32) with q in [0, 63], one scale per 16 elements.
 */
function q6_k (x: Float32Array, i0: number, out: Uint8Array, o: number): void {
  const scale: number[] = []
  for (let s = 0; s < 16; s++) {
    let amax = 0
    for (let j = 0; j < 16; j++) amax = Math.max(amax, Math.abs(x[i0 + 16 * s + j]))
    scale.push(amax / 31)
  }
  const d = f16ToF32(f32ToF16(Math.max(...scale) / 127))
  const sc = scale.map(v => d === 0 ? 0 : Math.min(127, Math.round(v / d)))
  out.fill(0, o, o + 192)
  for (let s = 0; s < 16; s++) out[o + 192 + s] = sc[s] & 0xff
  putF16(out, o + 208, d)
  for (let e = 0; e < QK_K; e++) {
    const step = d * sc[e >> 4]
    const u = step === 0 ? 32 : Math.max(0, Math.min(63, Math.round(x[i0 + e] / step) + 32))
    const n = e >> 7 // half
    const g = (e >> 5) & 3 // group of 32 within the half
    const l = e & 31
    const lo = o + 64 * n + l + (g & 1) * 32
    out[lo] |= (u & 0xf) << ((g >> 1) * 4)
    out[o + 128 + 32 * n + l] |= (u >> 4) << (2 * g)
  }
}

type BlockFn = (x: Float32Array, i0: number, out: Uint8Array, o: number) => void

const BLOCK_FNS: ReadonlyMap<number, BlockFn> = new Map([
  [GGML.Q8_0, q8_0], [GGML.Q4_0, q4_0], [GGML.Q4_K, q4_k], [GGML.Q5_K, q5_k], [GGML.Q6_K, q6_k]
])

/** GGML types the writer can encode. */
export const ENCODABLE_TYPES: readonly number[] = [GGML.F32, GGML.F16, GGML.BF16, GGML.Q8_0, GGML.Q4_0, GGML.Q4_K, GGML.Q5_K, GGML.Q6_K]

/** Bytes `n` elements of a type take (n a whole number of blocks). */
export function encodedBytes (type: number, n: number): number {
  const info = ggmlTypeInfo(type)
  if (info === undefined) throw new UnsupportedDTypeError(`unknown GGML type id ${type}`)
  if (n % info.blockElems !== 0) throw new UnsupportedDTypeError(`${n} elements are not whole ${info.name} blocks of ${info.blockElems}`)
  return n / info.blockElems * info.blockBytes
}

/** f32 values → the bytes of `type` (x.length a whole number of blocks). */
export function encodeValues (type: number, x: Float32Array): Uint8Array {
  const out = new Uint8Array(encodedBytes(type, x.length))
  const dv = new DataView(out.buffer)
  switch (type) {
    case GGML.F32: for (let i = 0; i < x.length; i++) dv.setFloat32(4 * i, x[i], true); return out
    case GGML.F16: for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, f32ToF16(x[i]), true); return out
    case GGML.BF16: for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, f32ToBf16(x[i]), true); return out
  }
  const fn = BLOCK_FNS.get(type)
  const info = ggmlTypeInfo(type)
  if (fn === undefined || info === undefined) throw new UnsupportedDTypeError(`the GGUF writer cannot encode ${ggmlTypeName(type)}`)
  for (let b = 0; b < x.length / info.blockElems; b++) fn(x, b * info.blockElems, out, b * info.blockBytes)
  return out
}
