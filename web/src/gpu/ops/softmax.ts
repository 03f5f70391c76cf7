import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/softmax.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { rowThreads, rowThreadsCap } from './norm.ts'
import { backendOf, expectDType, expectSameShape, isCpu } from './util.ts'

const SOFTMAX = defineKernel({
  name: 'softmax', shader: 'softmax',
  bindings: [
    { name: 'a', type: 'f32' }, // (rows, C) x, or y for the backward
    { name: 'b', type: 'f32' }, // (rows, C) dy for the backward; the forward binds x again
    { name: 'out', type: 'f32', access: 'read_write' } // (rows, C)
  ],
  uniforms: [
    { name: 'rows', type: 'u32' }, // rows, one workgroup each
    { name: 'C', type: 'u32' } // row length
  ]
})

/** Variant builder: one workgroup per row, WG_X from the row length and the adapter's cap. */
export function softmaxVariant (entry: 'softmax' | 'softmax_backward', C: number, cap: number): Variant {
  const wg = rowThreads(C, cap)
  return { key: `${entry}-wg${wg}`, entry, workgroupSize: [wg] }
}

/** GPU vs CPU-twin tolerances: f32 exp (few ulp) and f32 row sums against f64. */
export const TOLERANCE = {
  softmax: { atol: 1e-6, rtol: 1e-5 },
  softmaxBackward: { atol: 1e-6, rtol: 1e-5 }
} as const

function rowsOf (op: string, t: Tensor): { rows: number, C: number } {
  expectDType(op, 'input', t, 'f32')
  if (t.rank === 0) throw new ShapeError(op, `input must have rank ≥ 1 (…, C), got ${shapeString(t.shape)}`)
  const C = t.shape[t.rank - 1]
  return { rows: C === 0 ? 0 : t.numel / C, C }
}

function run (g: GpuBackend, entry: 'softmax' | 'softmax_backward', a: Tensor, b: Tensor, rows: number, C: number): Tensor {
  const out = g.empty(a.shape)
  g.run(SOFTMAX, softmaxVariant(entry, C, rowThreadsCap(g)), { a, b, out }, { rows, C }, g.grid1d(rows))
  return out
}

/**
 * Softmax over the last dim, max-subtracted: x (…, C) → (…, C). Elements equal to −∞ (or
 * −3.4e38) are masked to probability 0; a row with every element masked is all zeros.
 */
export function softmax (x: Tensor): Tensor {
  const be = backendOf('softmax', x)
  const { rows, C } = rowsOf('softmax', x)
  if (isCpu(be)) return cpu.wrap(twin.softmax(x.data as Float32Array, C), x.shape)
  return run(be as GpuBackend, 'softmax', x, x, rows, C)
}

/** dx = y · (dy − Σ y·dy) over the last dim, from the forward's output y (…, C). */
export function softmaxBackward (y: Tensor, dy: Tensor): Tensor {
  const be = backendOf('softmaxBackward', y, dy)
  const { rows, C } = rowsOf('softmaxBackward', y)
  expectDType('softmaxBackward', 'dy', dy, 'f32')
  expectSameShape('softmaxBackward', y, dy)
  if (isCpu(be)) return cpu.wrap(twin.softmaxBackward(y.data as Float32Array, dy.data as Float32Array, C), y.shape)
  return run(be as GpuBackend, 'softmax_backward', y, dy, rows, C)
}
