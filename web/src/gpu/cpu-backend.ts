import { arrayFor, hostTensorData, type Backend } from './backend.ts'
import { numel, shapeString, type DType, type TypedArray } from './dtype.ts'
import { TensorStateError } from './errors.ts'
import { isBlockDType, storageBytes } from './quant-types.ts'
import { Tensor } from './tensor.ts'

/**
 * A CPU tensor's release: the garbage collector frees its array. One function for all: under tsx
 * (esbuild's keepNames) every closure created costs a defineProperty, and every op wraps its
 * result (BENCHMARKS.md § API: a tenth of a decode step's CPU).
 */
const keep = (): void => {}

/** Runs ops with the CPU twins: the algorithm's definition, and the fallback without WebGPU. */
export class CpuBackend implements Backend {
  readonly kind = 'cpu' as const

  tensor (data: TypedArray | number[], shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return this.wrap(hostTensorData(data, shape, dtype), shape, dtype)
  }

  /** Wraps an existing array without copying (the tensor owns it from now on). */
  wrap (data: TypedArray, shape: readonly number[], dtype: DType = 'f32', meta: Record<string, number> = {}): Tensor {
    return new Tensor(this, shape, dtype, { data, bytes: data.byteLength, refs: 1, release: keep }, meta)
  }

  zeros (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    // zero GGUF blocks are valid: every scale is 0
    return this.wrap(arrayFor(dtype, isBlockDType(dtype) ? storageBytes(dtype, shape) : numel(shape)), shape, dtype)
  }

  empty (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return this.zeros(shape, dtype)
  }

  async read (t: Tensor): Promise<TypedArray> {
    return t.data.slice()
  }

  write (t: Tensor, data: TypedArray): void {
    if (t.dtype !== 'q8' && data.byteLength !== storageBytes(t.dtype, t.shape)) {
      throw new TensorStateError(`write: ${data.byteLength} bytes for ${t.dtype} tensor ${shapeString(t.shape)} (expected ${storageBytes(t.dtype, t.shape)})`)
    }
    new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  }

  async sync (): Promise<void> {}
}

/** The process-wide CPU backend. */
export const cpu = new CpuBackend()
