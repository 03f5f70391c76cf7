/**
 * Host side of shaders/lib/weight_decode.wgsl: the WTYPE code a kernel variant is compiled with
 * for a weight dtype, and the byte views the CPU twins decode. Kernels that read weights in their
 * file encoding (embedding_quant, moe_ffn_quant) bind them as `w: array<u32>` and include the lib.
 */
import type { DType, TypedArray, WeightDType } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import { isWeightDType, WEIGHT_DTYPES } from '../quant-types.ts'
import type { Tensor } from '../tensor.ts'

/** WTYPE codes; must match the W_* constants in shaders/lib/weight_decode.wgsl. */
const WTYPE: Readonly<Record<WeightDType, number>> = Object.freeze({
  f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_k: 5, q5_k: 6, q6_k: 7
})

/** The WTYPE constant for a weight dtype; throws ShapeError naming the op otherwise. */
export function weightType (op: string, name: string, dtype: DType): number {
  if (!isWeightDType(dtype)) throw new ShapeError(op, `${name} must be a weight dtype (${WEIGHT_DTYPES.join(', ')}), got ${dtype}`)
  return WTYPE[dtype]
}

/** A weight tensor's dtype, narrowed; throws ShapeError naming the op and input otherwise. */
export function expectWeightDType (op: string, name: string, t: Tensor): WeightDType {
  const d = t.dtype
  if (!isWeightDType(d)) throw new ShapeError(op, `${name} must be a weight dtype (${WEIGHT_DTYPES.join(', ')}), got ${d}`)
  return d
}

/** The bytes under a typed array (no copy): what cpu/dequant.ts decodes. */
export function bytesOf (a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
}
