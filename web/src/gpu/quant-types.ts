import { bytesPerElement, numel, shapeString, type BlockDType, type DType, type WeightDType } from './dtype.ts'

/**
 * Storage facts of the weight dtypes (issue #10 contract, item 1). A tensor of a block dtype with
 * logical shape (..., K) holds exactly the GGUF bytes of its rows, row-major, K % blockElems = 0;
 * f16/bf16 hold 2-byte little-endian words. Block layouts (llama.cpp ggml-common.h):
 *   q8_0  34 B / 32:  f16 d, int8 q[32]                                x = d·q
 *   q4_0  18 B / 32:  f16 d, u8 qs[16] (lo nibbles: 0..15, hi: 16..31) x = d·(q − 8)
 *   q4_k 144 B / 256: f16 d, f16 dmin, u8 scales[12] (8 × 6-bit scale/min), u8 qs[128]
 *   q5_k 176 B / 256: f16 d, f16 dmin, u8 scales[12], u8 qh[32] (5th bits), u8 qs[128]
 *   q6_k 210 B / 256: u8 ql[128], u8 qh[64], int8 scales[16], f16 d
 * The arithmetic is defined by the plain loops in cpu/dequant.ts.
 */
import { WebSwarmError } from '../util/errors.ts'

/** A dtype the model loader and the runtime cannot serve (unknown GGML type, q8 without a block…). */
export class UnsupportedDTypeError extends WebSwarmError {
  override name = 'UnsupportedDTypeError'
  readonly errorCode = 'gpu.unsupported-dtype'
  readonly callerFault = true
}

/** The block-quantized dtypes, in GGML id order. */
const BLOCK_DTYPES: readonly BlockDType[] = Object.freeze(['q4_0', 'q8_0', 'q4_k', 'q5_k', 'q6_k'])

/** Every dtype a weight may be stored in; linear/embedding accept each. */
export const WEIGHT_DTYPES: readonly WeightDType[] = Object.freeze(['f32', 'f16', 'bf16', ...BLOCK_DTYPES])

const BLOCKS: Readonly<Record<WeightDType, { elems: number, bytes: number }>> = Object.freeze({
  f32: { elems: 1, bytes: 4 },
  f16: { elems: 1, bytes: 2 },
  bf16: { elems: 1, bytes: 2 },
  q8_0: { elems: 32, bytes: 34 },
  q4_0: { elems: 32, bytes: 18 },
  q4_k: { elems: 256, bytes: 144 },
  q5_k: { elems: 256, bytes: 176 },
  q6_k: { elems: 256, bytes: 210 }
})

/** True for the dtypes a weight may be stored in (f32, f16, bf16 and the GGUF blocks). */
export function isWeightDType (dtype: DType): dtype is WeightDType {
  return Object.hasOwn(BLOCKS, dtype)
}

/** True for the GGUF block dtypes (q8_0, q4_0, q4_k, q5_k, q6_k). */
export function isBlockDType (dtype: DType): dtype is BlockDType {
  return (BLOCK_DTYPES as readonly DType[]).includes(dtype)
}

/** Elements and bytes of one block of a weight dtype (1 element for f32/f16/bf16). */
export function blockInfo (dtype: DType): { elems: number, bytes: number } {
  if (!isWeightDType(dtype)) throw new UnsupportedDTypeError(`blockInfo: ${dtype} is not a weight dtype (have ${WEIGHT_DTYPES.join(', ')})`)
  return BLOCKS[dtype]
}

/**
 * Bytes a tensor of this dtype and shape stores. Block dtypes need the last dim to be a whole
 * number of blocks (rows never share a block). q8 is sized by its meta.block (ops/quant.ts).
 */
export function storageBytes (dtype: DType, shape: readonly number[]): number {
  if (dtype === 'q8') throw new UnsupportedDTypeError('storageBytes: q8 is sized by its block (see q8Bytes in cpu/quant.ts)')
  if (!isBlockDType(dtype)) return numel(shape) * bytesPerElement(dtype)
  const { elems, bytes } = BLOCKS[dtype]
  const K = shape.length === 0 ? 1 : shape[shape.length - 1]
  if (K % elems !== 0) throw new UnsupportedDTypeError(`${dtype} tensor ${shapeString(shape)}: last dim ${K} is not a multiple of the block of ${elems}`)
  return (numel(shape) / elems) * bytes
}

/** GGML type ids (ggml.h `enum ggml_type`) of the dtypes we serve. */
const GGML_TYPE = Object.freeze({ f32: 0, f16: 1, q4_0: 2, q8_0: 8, q4_k: 12, q5_k: 13, q6_k: 14, bf16: 30 } as const satisfies Record<WeightDType, number>)

/** Names of the GGML types we do not serve, for the error message. */
const OTHER_GGML_TYPES: Readonly<Record<number, string>> = Object.freeze({
  3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 15: 'Q8_K', 16: 'IQ2_XXS',
  17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS',
  24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4'
})

/** The dtype a GGUF tensor of GGML type `typeId` is stored in; throws naming the type and the tensor otherwise. */
export function dtypeFromGgml (typeId: number, tensorName: string): WeightDType {
  for (const [dtype, id] of Object.entries(GGML_TYPE) as Array<[WeightDType, number]>) if (id === typeId) return dtype
  const name = OTHER_GGML_TYPES[typeId] ?? 'unknown'
  throw new UnsupportedDTypeError(`tensor '${tensorName}': GGML type ${typeId} (${name}) is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)`)
}

/** The GGML type id of a weight dtype (the GGUF writer's inverse of dtypeFromGgml). */
export function ggmlTypeOf (dtype: DType): number {
  if (!isWeightDType(dtype)) throw new UnsupportedDTypeError(`ggmlTypeOf: ${dtype} has no GGML type`)
  return GGML_TYPE[dtype]
}
