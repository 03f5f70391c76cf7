import type { DType, TypedArray } from './dtype.ts'
import type { Tensor } from './tensor.ts'

/**
 * Where ops run. `cpu` runs the plain-loop twins in web/src/gpu/cpu/ (the reference and a
 * fallback); `webgpu` runs the WGSL kernels in shaders/. Ops pick the path from their
 * inputs' backend, so model code is written once.
 */
export interface Backend {
  readonly kind: 'cpu' | 'webgpu'
  /** A tensor holding a copy of `data` (length must equal the shape's element count). */
  tensor: (data: TypedArray | number[], shape: readonly number[], dtype?: DType) => Tensor
  /** A tensor whose elements are all zero. */
  zeros: (shape: readonly number[], dtype?: DType) => Tensor
  /** A tensor whose elements the next op will overwrite (zeroed on CPU; pooled memory on GPU). */
  empty: (shape: readonly number[], dtype?: DType) => Tensor
  /** Copies elements to the host (waits for queued GPU work). */
  read: (t: Tensor) => Promise<TypedArray>
  /** Overwrites a tensor's elements from the host. */
  write: (t: Tensor, data: TypedArray) => void
  /** Waits until all queued work has finished. */
  sync: () => Promise<void>
}

/** Typed array constructor for a dense dtype. */
export function arrayFor (dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'f32': return new Float32Array(n)
    case 'i32': return new Int32Array(n)
    case 'u32': return new Uint32Array(n)
    case 'f16': return new Uint16Array(n)
    case 'q8': return new Uint8Array(n)
  }
}

/** Coerces host data into the typed array a dtype stores. */
export function toTyped (data: TypedArray | number[], dtype: DType): TypedArray {
  if (!Array.isArray(data)) return data
  const out = arrayFor(dtype, data.length)
  for (let i = 0; i < data.length; i++) out[i] = data[i]
  return out
}
