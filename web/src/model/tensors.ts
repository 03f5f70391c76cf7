import type { Backend } from '../gpu/backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import type { Tensor } from '../gpu/tensor.ts'
import { ModelArgumentError } from './errors.ts'

/**
 * Model-level tensor plumbing that is a copy, not a kernel: row slices for the LM head at the
 * last position, i32 index tensors from host arrays. On WebGPU the copy is encoded in the
 * current batch (copyBufferToBuffer); on CPU it is a typed-array copy.
 */

/** Rows [start, start + count) of a row-major tensor (R, ...) as a new tensor (count, ...). */
export function sliceRows (t: Tensor, start: number, count: number): Tensor {
  const rows = t.shape[0]
  if (start < 0 || count < 0 || start + count > rows) throw new ModelArgumentError(`sliceRows: rows [${start}, ${start + count}) of a ${rows}-row tensor`)
  const rowElems = t.numel / Math.max(rows, 1)
  const shape = [count, ...t.shape.slice(1)]
  const be = t.backend
  if (be.kind === 'cpu') {
    const src = t.data as Float32Array
    return be.tensor(src.subarray(start * rowElems, (start + count) * rowElems), shape, t.dtype)
  }
  const g = be as GpuBackend
  const out = g.empty(shape, t.dtype)
  const bytesPerRow = rowElems * 4
  g.copy(t, out, start * bytesPerRow, 0, count * bytesPerRow)
  return out
}

/** An i32 tensor (n) from host ints. */
export function intTensor (be: Backend, ids: ArrayLike<number>): Tensor {
  const a = Int32Array.from(ids as ArrayLike<number>)
  return be.tensor(a, [a.length], 'i32')
}

/** Positions [start, start + n) as an i32 tensor (n). */
export function positionsTensor (be: Backend, start: number, n: number): Tensor {
  const a = new Int32Array(n)
  for (let i = 0; i < n; i++) a[i] = start + i
  return be.tensor(a, [n], 'i32')
}
