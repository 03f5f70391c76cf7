import { numel, shapeString, type DType, type TypedArray } from './dtype.ts'
import { TensorStateError } from './errors.ts'
import { isBlockDType, storageBytes } from './quant-types.ts'
import type { Tensor } from './tensor.ts'

/**
 * Where ops run. `cpu` runs the plain-loop twins in web/src/gpu/cpu/ (the reference and a
 * fallback); `webgpu` runs the WGSL kernels in shaders/. Ops pick the path from their
 * inputs' backend, so model code is written once.
 */
export interface Backend {
  readonly kind: 'cpu' | 'webgpu'
  /**
   * A tensor holding a copy of `data` (length must equal the shape's element count). f16/bf16
   * take 2-byte words (Uint16Array) or their little-endian bytes (Uint8Array); the GGUF block
   * dtypes take exactly `storageBytes(dtype, shape)` bytes, kept as they are.
   */
  tensor: (data: TypedArray | number[], shape: readonly number[], dtype?: DType) => Tensor
  /** A tensor whose elements are all zero. */
  zeros: (shape: readonly number[], dtype?: DType) => Tensor
  /** A tensor whose elements the next op will overwrite (zeroed on CPU; pooled memory on GPU). */
  empty: (shape: readonly number[], dtype?: DType) => Tensor
  /** Copies elements to the host (waits for queued GPU work): f16/bf16 as Uint16Array, GGUF blocks as their bytes. */
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
    case 'f16': case 'bf16': return new Uint16Array(n)
    case 'q8': return new Uint8Array(n)
    // GGUF blocks: n counts bytes
    case 'q8_0': case 'q4_0': case 'q4_k': case 'q5_k': case 'q6_k': return new Uint8Array(n)
  }
}

/**
 * Checks and copies host data for a tensor of a weight dtype stored in its file encoding:
 * f32 → Float32Array (from floats or little-endian bytes), f16/bf16 → Uint16Array of numel words
 * (from words or little-endian bytes), GGUF blocks →
 * Uint8Array of exactly storageBytes bytes. Other dtypes go through toTyped. `copy: false`
 * (the GPU upload, which copies anyway) returns the caller's array when it can: then f16/bf16
 * bytes stay a Uint8Array.
 */
export function hostTensorData (data: TypedArray | number[], shape: readonly number[], dtype: DType, copy = true): TypedArray {
  if (dtype === 'f32' && data instanceof Uint8Array) { // an f32 weight's file bytes
    if (data.byteLength !== numel(shape) * 4) throw new TensorStateError(`tensor: ${data.byteLength} bytes given for f32 shape ${shapeString(shape)} (expected ${numel(shape) * 4})`)
    return new Float32Array(data.slice().buffer) // slice: a fresh, aligned copy
  }
  if (dtype === 'f16' || dtype === 'bf16') {
    if (data instanceof Uint8Array) {
      if (data.byteLength !== numel(shape) * 2) throw new TensorStateError(`tensor: ${data.byteLength} bytes given for ${dtype} shape ${shapeString(shape)} (expected ${numel(shape) * 2})`)
      return copy ? new Uint16Array(data.slice().buffer) : data
    }
    if (!Array.isArray(data) && !(data instanceof Uint16Array)) throw new TensorStateError(`tensor: ${dtype} data must be a Uint16Array of words or a Uint8Array of bytes, got ${data.constructor.name}`)
  }
  if (isBlockDType(dtype)) {
    const want = storageBytes(dtype, shape)
    if (!Array.isArray(data) && !(data instanceof Uint8Array)) throw new TensorStateError(`tensor: ${dtype} data must be a Uint8Array of GGUF block bytes, got ${data.constructor.name}`)
    if (data.length !== want) throw new TensorStateError(`tensor: ${data.length} bytes given for ${dtype} shape ${shapeString(shape)} (expected ${want})`)
    return Array.isArray(data) ? Uint8Array.from(data) : own(data, copy)
  }
  const typed = toTyped(data, dtype)
  if (dtype !== 'q8' && typed.length !== numel(shape)) throw new TensorStateError(`tensor: ${typed.length} elements given for shape ${shapeString(shape)}`)
  return typed === data ? own(typed, copy) : typed
}

/** `a`, or a copy of it. (Not a closure in hostTensorData: every tensor made from host data would create one.) */
function own<A extends TypedArray> (a: A, copy: boolean): A {
  return copy ? a.slice() as A : a
}

/** Coerces host data into the typed array a dtype stores. */
function toTyped (data: TypedArray | number[], dtype: DType): TypedArray {
  if (!Array.isArray(data)) return data
  const out = arrayFor(dtype, data.length)
  for (let i = 0; i < data.length; i++) out[i] = data[i]
  return out
}
