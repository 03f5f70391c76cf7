/**
 * Element types a Tensor can hold.
 * - f32/f16: floats (f16 arithmetic only where the adapter has `shader-f16`; f16 weights are
 *   stored and read as 2-byte words everywhere);
 * - bf16: bfloat16 weights (2-byte little-endian words, the safetensors/GGUF encoding);
 * - i32/u32: indices and counts;
 * - q8: our own training-compression format, int8 blocks with one f32 scale per block
 *   (see ops/quant.ts for the layout);
 * - q8_0, q4_0, q4_k, q5_k, q6_k: GGUF/llama.cpp weight blocks, stored as the file's bytes
 *   (see quant-types.ts for the block sizes and cpu/dequant.ts for their meaning).
 */
import { GpuArgumentError } from './errors.ts'
export type DType = 'f32' | 'f16' | 'i32' | 'u32' | 'q8' | 'bf16' | BlockDType

/** GGUF block-quantized weight dtypes: a row of K values is K / blockElems blocks of bytes. */
export type BlockDType = 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k'

/** The dtypes a weight may be stored in (kept in the file's encoding on the GPU). */
export type WeightDType = 'f32' | 'f16' | 'bf16' | BlockDType

export type TypedArray = Float32Array | Int32Array | Uint32Array | Uint16Array | Uint8Array

/** Bytes per element for element-addressed dtypes (q8 counts its int8s; GGUF blocks have none: see storageBytes). */
export function bytesPerElement (dtype: DType): number {
  switch (dtype) {
    case 'f32': case 'i32': case 'u32': return 4
    case 'f16': case 'bf16': return 2
    case 'q8': return 1
    case 'q8_0': case 'q4_0': case 'q4_k': case 'q5_k': case 'q6_k':
      throw new GpuArgumentError(`dtype ${dtype} is block-addressed: use storageBytes(dtype, shape) from quant-types.ts`)
    default: throw new GpuArgumentError(`unknown dtype ${String(dtype)}`)
  }
}

export function numel (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

export function shapeString (shape: readonly number[]): string {
  return `(${shape.join(', ')})`
}

/** Throws unless every dim is a non-negative integer. */
export function checkShape (shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new GpuArgumentError(`${what}: invalid shape ${shapeString(shape)}`)
  }
}
