/**
 * Element types a Tensor can hold.
 * - f32/f16: floats (f16 only where the adapter has `shader-f16`);
 * - i32/u32: indices and counts;
 * - q8: int8 blocks with one f32 scale per block (see ops/quant.ts for the layout).
 */
export type DType = 'f32' | 'f16' | 'i32' | 'u32' | 'q8'

export type TypedArray = Float32Array | Int32Array | Uint32Array | Uint16Array | Uint8Array

/** Bytes per element for element-addressed dtypes (q8 is block-addressed). */
export function bytesPerElement (dtype: DType): number {
  switch (dtype) {
    case 'f32': case 'i32': case 'u32': return 4
    case 'f16': return 2
    case 'q8': return 1
    default: throw new Error(`unknown dtype ${String(dtype)}`)
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
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what}: invalid shape ${shapeString(shape)}`)
  }
}
