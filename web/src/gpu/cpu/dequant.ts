import type { DType } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import { blockInfo, isWeightDType } from '../quant-types.ts'
import { f16ToF32 } from './quant.ts'

/**
 * CPU twins of the weight decoders (GGUF / llama.cpp block layouts, see quant-types.ts): plain
 * loops, one function per type, the definition the WGSL decoders in shaders/lib/quant_decode.wgsl
 * are checked against (CONTRIBUTING.md STYLE 1). Each value is computed in f32 as llama.cpp's
 * dequantize_row_* does (scale products rounded to f32 before the multiply-subtract).
 */

/** bfloat16 bits → number (the high half of an f32). */
export function bf16ToF32 (h: number): number {
  F32_BITS[0] = (h & 0xffff) << 16
  return F32_VIEW[0]
}
const F32_BITS = new Uint32Array(1)
const F32_VIEW = new Float32Array(F32_BITS.buffer)

/** Rounds to f32 (the decoders multiply in f32, as llama.cpp does). */
const f32 = Math.fround

/** The first `n` values of `bytes` decoded from `dtype` (n a multiple of the block; f32 passes through). */
export function dequantize (dtype: DType, bytes: Uint8Array, n: number): Float32Array {
  if (!isWeightDType(dtype)) throw new ShapeError('dequantize', `${dtype} is not a weight dtype`)
  const { elems, bytes: bb } = blockInfo(dtype)
  if (!Number.isInteger(n) || n < 0 || n % elems !== 0) throw new ShapeError('dequantize', `${n} values of ${dtype} is not a whole number of ${elems}-value blocks`)
  const need = (n / elems) * bb
  if (bytes.byteLength < need) throw new ShapeError('dequantize', `${n} values of ${dtype} need ${need} bytes, got ${bytes.byteLength}`)
  const v = new DataView(bytes.buffer, bytes.byteOffset, need)
  const out = new Float32Array(n)
  switch (dtype) {
    case 'f32': for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true); break
    case 'f16': for (let i = 0; i < n; i++) out[i] = f16ToF32(v.getUint16(2 * i, true)); break
    case 'bf16': for (let i = 0; i < n; i++) out[i] = bf16ToF32(v.getUint16(2 * i, true)); break
    case 'q8_0': for (let b = 0; b < n / 32; b++) dequantQ8_0(v, b * 34, out, b * 32); break
    case 'q4_0': for (let b = 0; b < n / 32; b++) dequantQ4_0(v, b * 18, out, b * 32); break
    case 'q4_k': for (let b = 0; b < n / 256; b++) dequantK4or5(v, b * 144, out, b * 256, false); break
    case 'q5_k': for (let b = 0; b < n / 256; b++) dequantK4or5(v, b * 176, out, b * 256, true); break
    case 'q6_k': for (let b = 0; b < n / 256; b++) dequantQ6K(v, b * 210, out, b * 256); break
  }
  return out
}

/** Q8_0 (34 bytes): f16 d, int8 q[32]; x = d·q. */
function dequantQ8_0 (v: DataView, at: number, out: Float32Array, o: number): void {
  const d = f16ToF32(v.getUint16(at, true))
  for (let i = 0; i < 32; i++) out[o + i] = d * v.getInt8(at + 2 + i)
}

/** Q4_0 (18 bytes): f16 d, 16 bytes of nibbles; byte j holds value j (low) and j + 16 (high); x = d·(q − 8). */
function dequantQ4_0 (v: DataView, at: number, out: Float32Array, o: number): void {
  const d = f16ToF32(v.getUint16(at, true))
  for (let j = 0; j < 16; j++) {
    const q = v.getUint8(at + 2 + j)
    out[o + j] = d * ((q & 0x0f) - 8)
    out[o + j + 16] = d * ((q >> 4) - 8)
  }
}

/**
 * Scale and min (6 bits each) of sub-block j in 0..7 from the 12 packed bytes at `at`
 * (llama.cpp get_scale_min_k4): j < 4 in the low 6 bits of bytes j and j + 4; j ≥ 4 in the
 * nibbles of byte j + 4, their top 2 bits in the top bits of bytes j − 4 and j.
 */
function scaleMinK4 (v: DataView, at: number, j: number): [number, number] {
  const q = (i: number): number => v.getUint8(at + i)
  if (j < 4) return [q(j) & 63, q(j + 4) & 63]
  return [(q(j + 4) & 0x0f) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)]
}

/**
 * Q4_K (144 bytes): f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles. Eight sub-blocks of 32;
 * each 64 values use 32 bytes: low nibbles → sub-block 2c, high → 2c + 1. x = d·sc·q − dmin·m.
 * Q5_K (176 bytes): the same after qh[32] at byte 16 (nibbles at 48): value l of sub-block s
 * takes bit s of qh[l] as 16.
 */
function dequantK4or5 (v: DataView, at: number, out: Float32Array, o: number, fifthBit: boolean): void {
  const d = f16ToF32(v.getUint16(at, true))
  const dmin = f16ToF32(v.getUint16(at + 2, true))
  const qs = at + (fifthBit ? 48 : 16)
  for (let c = 0; c < 4; c++) {
    const [sc1, m1] = scaleMinK4(v, at + 4, 2 * c)
    const [sc2, m2] = scaleMinK4(v, at + 4, 2 * c + 1)
    const d1 = f32(d * sc1); const mm1 = f32(dmin * m1)
    const d2 = f32(d * sc2); const mm2 = f32(dmin * m2)
    for (let l = 0; l < 32; l++) {
      const q = v.getUint8(qs + 32 * c + l)
      const h = fifthBit ? v.getUint8(at + 16 + l) : 0
      const hi1 = (h >> (2 * c)) & 1
      const hi2 = (h >> (2 * c + 1)) & 1
      out[o + 64 * c + l] = f32(d1 * ((q & 0x0f) + 16 * hi1)) - mm1
      out[o + 64 * c + 32 + l] = f32(d2 * ((q >> 4) + 16 * hi2)) - mm2
    }
  }
}

/**
 * Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
 * Two halves of 128 values; in half h, value 32·i + l (i = 0..3, l = 0..31) takes the low or high
 * nibble of ql[64h + l + 32·(i & 1)] (high for i ≥ 2), bits 2i..2i+1 of qh[32h + l], and the
 * scale of its 16 values, scales[8h + 2i + l / 16]. x = d·sc·(q − 32).
 */
function dequantQ6K (v: DataView, at: number, out: Float32Array, o: number): void {
  const d = f16ToF32(v.getUint16(at + 208, true))
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 4; i++) {
      for (let l = 0; l < 32; l++) {
        const ql = v.getUint8(at + 64 * h + l + 32 * (i & 1))
        const lo = i < 2 ? ql & 0x0f : ql >> 4
        const hi = (v.getUint8(at + 128 + 32 * h + l) >> (2 * i)) & 3
        const sc = v.getInt8(at + 192 + 8 * h + 2 * i + (l >> 4))
        out[o + 128 * h + 32 * i + l] = f32(d * sc) * ((lo | (hi << 4)) - 32)
      }
    }
  }
}
