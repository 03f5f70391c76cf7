import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/norm.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectSameShape, expectShape, groups, isCpu } from './util.ts'

/** Fewest threads per row: one SIMD width on most GPUs; fewer would idle lanes anyway. */
const ROW_THREADS_MIN = 32
/** Most threads per row on a hardware GPU: WebGPU's guaranteed maxComputeInvocationsPerWorkgroup. */
const ROW_THREADS_MAX = 256
/**
 * Most threads per row on a software adapter (SwiftShader): it runs a workgroup's invocations on
 * one CPU core and every barrier switches between them, so rmsnorm (256, 1024) took 970 ms at
 * 256 threads and 59 ms at 32 on the CI machine.
 */
const SOFTWARE_ROW_THREADS = 32
/** Threads per workgroup of the per-channel dw/db pass (one channel each). */
const PARAMS_WG = 64

let threadsCapOverride: number | undefined

/**
 * Forces the thread cap of the per-row and reduction kernels (norm, softmax, loss, sumSquares)
 * so tests and benchmarks can run every variant on any adapter; `undefined` restores the
 * adapter-based choice. A power of two in [32, 256].
 */
export function setRowThreadsCap (cap?: number): void {
  if (cap !== undefined && !(Number.isInteger(Math.log2(cap)) && cap >= ROW_THREADS_MIN && cap <= ROW_THREADS_MAX)) {
    throw new RangeError(`row threads cap must be a power of two in [${ROW_THREADS_MIN}, ${ROW_THREADS_MAX}], got ${cap}`)
  }
  threadsCapOverride = cap
}

/** The thread cap for this adapter: 256 on hardware, 32 on software adapters (see above). */
export function rowThreadsCap (g: GpuBackend): number {
  return threadsCapOverride ?? (g.info.software ? SOFTWARE_ROW_THREADS : ROW_THREADS_MAX)
}

/**
 * Threads of a one-workgroup-per-row kernel for rows of C elements: the power of two ≥ C,
 * clamped to [32, cap] (the tree reduction needs a power of two). Shared by softmax and loss.
 */
export function rowThreads (C: number, cap = ROW_THREADS_MAX): number {
  const p = 2 ** Math.ceil(Math.log2(Math.max(C, 1)))
  return Math.min(cap, Math.max(ROW_THREADS_MIN, p))
}

const NORM = defineKernel({
  name: 'norm', shader: 'norm',
  bindings: [
    { name: 'x', type: 'f32' }, // (rows, C)
    { name: 'w', type: 'f32' }, // (C)
    { name: 'b', type: 'f32' }, // (C); rmsnorm binds w
    { name: 'out', type: 'f32', access: 'read_write' } // (rows, C)
  ],
  uniforms: [
    { name: 'rows', type: 'u32' }, // rows, one workgroup each
    { name: 'C', type: 'u32' }, // channels per row
    { name: 'eps', type: 'f32' } // added to the variance
  ]
})

const NORM_BACKWARD = defineKernel({
  name: 'norm_backward', shader: 'norm_backward',
  bindings: [
    { name: 'x', type: 'f32' }, // (rows, C)
    { name: 'w', type: 'f32' }, // (C)
    { name: 'dy', type: 'f32' }, // (rows, C)
    { name: 'dx', type: 'f32', access: 'read_write' }, // (rows, C)
    { name: 'stats', type: 'f32', access: 'read_write' }, // (rows, 2) [mean, rstd]
    { name: 'dw', type: 'f32', access: 'read_write' }, // (C)
    { name: 'db', type: 'f32', access: 'read_write' } // (C), or a placeholder for rmsnorm
  ],
  uniforms: NORM.uniforms
})

export type NormKind = 'rmsnorm' | 'layernorm'

/** Variant of a per-row entry (forward or dx pass): WG_X from C and the cap; HAS_BIAS for layernorm. */
export function normRowVariant (entry: string, kind: NormKind, C: number, cap: number): Variant {
  const wg = rowThreads(C, cap)
  return { key: `${entry}-wg${wg}`, entry, workgroupSize: [wg], constants: { HAS_BIAS: kind === 'layernorm' } }
}

/** Variant of the per-channel dw/db pass. */
export function normParamsVariant (kind: NormKind): Variant {
  return { key: `params-${kind}-wg${PARAMS_WG}`, entry: 'norm_backward_params', workgroupSize: [PARAMS_WG], constants: { HAS_BIAS: kind === 'layernorm' } }
}

/**
 * GPU vs CPU-twin tolerances for O(1) inputs: f32 sums of C terms against f64 ones, and
 * inverseSqrt (2 ulp). Gradients subtract similar terms, hence the looser atol.
 */
export const TOLERANCE = {
  rmsnorm: { atol: 1e-5, rtol: 1e-5 },
  rmsnormBackward: { atol: 5e-5, rtol: 1e-4 },
  layernorm: { atol: 1e-5, rtol: 1e-5 },
  layernormBackward: { atol: 5e-5, rtol: 1e-4 }
} as const

/** Checks x (..., C), w (C), b (C), dy like x; returns C and the row count. */
function checkNorm (op: string, x: Tensor, w: Tensor, eps: number, b?: Tensor, dy?: Tensor): { C: number, rows: number } {
  for (const [name, t] of [['x', x], ['w', w], ['b', b], ['dy', dy]] as const) {
    if (t !== undefined) expectDType(op, name, t, 'f32')
  }
  if (x.rank === 0) throw new ShapeError(op, `x must have rank ≥ 1 (…, C), got ${shapeString(x.shape)}`)
  const C = x.shape[x.rank - 1]
  expectShape(op, 'w', w, [C])
  if (b !== undefined) expectShape(op, 'b', b, [C])
  if (dy !== undefined) expectSameShape(op, x, dy)
  if (!Number.isFinite(eps) || eps < 0) throw new ShapeError(op, `eps must be a finite number ≥ 0, got ${eps}`)
  return { C, rows: C === 0 ? 0 : x.numel / C }
}

function forward (kind: NormKind, x: Tensor, w: Tensor, b: Tensor | undefined, eps: number): Tensor {
  const be = backendOf(kind, x, w, b)
  const { C, rows } = checkNorm(kind, x, w, eps, b)
  if (isCpu(be)) {
    const xd = x.data as Float32Array
    const wd = w.data as Float32Array
    const y = kind === 'rmsnorm' ? twin.rmsnorm(xd, wd, C, eps) : twin.layernorm(xd, wd, b!.data as Float32Array, C, eps)
    return cpu.wrap(y, x.shape)
  }
  const g = be as GpuBackend
  const out = g.empty(x.shape)
  g.run(NORM, normRowVariant(kind, kind, C, rowThreadsCap(g)), { x, w, b: b ?? w, out }, { rows, C, eps }, g.grid1d(rows))
  return out
}

/** Hugging Face LlamaRMSNorm over the last dim: x (…, C), w (C) → (…, C). */
export function rmsnorm (x: Tensor, w: Tensor, eps: number): Tensor {
  return forward('rmsnorm', x, w, undefined, eps)
}

/** torch LayerNorm over the last dim: x (…, C), w (C), b (C) → (…, C). */
export function layernorm (x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
  return forward('layernorm', x, w, b, eps)
}

/** Two dispatches: dx and per-row stats (one workgroup per row), then dw/db (one thread per channel). */
function backwardGpu (g: GpuBackend, kind: NormKind, x: Tensor, w: Tensor, dy: Tensor, C: number, rows: number, eps: number): { dx: Tensor, dw: Tensor, db: Tensor } {
  const dx = g.empty(x.shape)
  const dw = g.empty([C])
  const db = g.empty(kind === 'layernorm' ? [C] : [1])
  const stats = g.empty([rows, 2])
  const bindings = { x, w, dy, dx, stats, dw, db }
  const uniforms = { rows, C, eps }
  g.run(NORM_BACKWARD, normRowVariant(`${kind}_backward_dx`, kind, C, rowThreadsCap(g)), bindings, uniforms, g.grid1d(rows))
  g.run(NORM_BACKWARD, normParamsVariant(kind), bindings, uniforms, g.grid1d(groups(C, PARAMS_WG)))
  stats.dispose()
  return { dx, dw, db }
}

/** Gradients of rmsnorm for upstream dy (…, C): dx (…, C), dw (C). Recomputes the row statistics. */
export function rmsnormBackward (x: Tensor, w: Tensor, dy: Tensor, eps: number): { dx: Tensor, dw: Tensor } {
  const be = backendOf('rmsnormBackward', x, w, dy)
  const { C, rows } = checkNorm('rmsnormBackward', x, w, eps, undefined, dy)
  if (isCpu(be)) {
    const r = twin.rmsnormBackward(x.data as Float32Array, w.data as Float32Array, dy.data as Float32Array, C, eps)
    return { dx: cpu.wrap(r.dx, x.shape), dw: cpu.wrap(r.dw, [C]) }
  }
  const { dx, dw, db } = backwardGpu(be as GpuBackend, 'rmsnorm', x, w, dy, C, rows, eps)
  db.dispose() // placeholder: the layout has a db binding, rmsnorm never writes it
  return { dx, dw }
}

/** Gradients of layernorm for upstream dy (…, C): dx (…, C), dw (C), db (C). */
export function layernormBackward (x: Tensor, w: Tensor, dy: Tensor, eps: number): { dx: Tensor, dw: Tensor, db: Tensor } {
  const be = backendOf('layernormBackward', x, w, dy)
  const { C, rows } = checkNorm('layernormBackward', x, w, eps, undefined, dy)
  if (isCpu(be)) {
    const r = twin.layernormBackward(x.data as Float32Array, w.data as Float32Array, dy.data as Float32Array, C, eps)
    return { dx: cpu.wrap(r.dx, x.shape), dw: cpu.wrap(r.dw, [C]), db: cpu.wrap(r.db, [C]) }
  }
  return backwardGpu(be as GpuBackend, 'layernorm', x, w, dy, C, rows, eps)
}
