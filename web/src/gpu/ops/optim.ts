import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/optim.ts'
import type { AdamWOptions } from '../cpu/optim.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { scaleInPlace } from './elementwise.ts'
import { rowThreadsCap } from './norm.ts'
import { backendOf, expectDType, expectSameShape, groups, isCpu } from './util.ts'

export type { AdamWOptions } from '../cpu/optim.ts'

/** Threads per workgroup of the AdamW kernel (one element each). */
const WG = 256
/**
 * Workgroups of the first sum-of-squares pass, at most (the second pass, one workgroup, adds
 * the partials). Fixed per n and adapter, so the summation order is too. The sum-of-squares
 * workgroup size is the row-kernel thread cap (norm.ts): barriers are costly on software adapters.
 */
const MAX_PARTS = 256

const ADAMW = defineKernel({
  name: 'adamw', shader: 'optim', entry: 'adamw',
  bindings: [
    { name: 'grad', type: 'f32' }, // (n)
    { name: 'param', type: 'f32', access: 'read_write' }, // (n)
    { name: 'm', type: 'f32', access: 'read_write' }, // (n) exp_avg
    { name: 'v', type: 'f32', access: 'read_write' } // (n) exp_avg_sq
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, // elements
    { name: 'decay', type: 'f32' }, // 1 − lr·weightDecay
    { name: 'w1', type: 'f32' }, // 1 − beta1
    { name: 'beta2', type: 'f32' },
    { name: 'c2', type: 'f32' }, // 1 − beta2
    { name: 'step_size', type: 'f32' }, // lr / (1 − beta1^step)
    { name: 'bc2_sqrt', type: 'f32' }, // √(1 − beta2^step)
    { name: 'eps', type: 'f32' }
  ]
})
const ADAMW_VARIANT: Variant = { key: `wg${WG}`, workgroupSize: [WG] }

const SUM_SQUARES = defineKernel({
  name: 'sum_squares', shader: 'optim_reduce',
  bindings: [
    { name: 'a', type: 'f32' }, // (n)
    { name: 'partial', type: 'f32', access: 'read_write' }, // (parts)
    { name: 'out', type: 'f32', access: 'read_write' } // (k), written at slot
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, // elements of a
    { name: 'parts', type: 'u32' }, // workgroups of the first pass
    { name: 'slot', type: 'u32' } // index into out
  ]
})
const sumSquaresVariant = (entry: 'sum_squares_partial' | 'sum_squares_final', wg: number): Variant => ({ key: `${entry}-wg${wg}`, entry, workgroupSize: [wg] })

/**
 * GPU vs CPU twin. AdamW: f32 vs f64 arithmetic on the same formula (the update divides by
 * √v + eps, so relative error stays ~1e-6). sumSquares: f32 partial sums vs f64.
 */
export const TOLERANCE = {
  adamw: { atol: 1e-6, rtol: 1e-5 },
  sumSquares: { atol: 1e-6, rtol: 1e-5 },
  clipGradNorm: { atol: 1e-6, rtol: 1e-5 }
} as const

function checkAdamW (o: AdamWOptions): void {
  const bad = (what: string): never => { throw new ShapeError('adamw', what) }
  if (!(Number.isFinite(o.lr) && o.lr >= 0)) bad(`lr must be finite and ≥ 0, got ${o.lr}`)
  if (!(o.beta1 >= 0 && o.beta1 < 1)) bad(`beta1 must be in [0, 1), got ${o.beta1}`)
  if (!(o.beta2 >= 0 && o.beta2 < 1)) bad(`beta2 must be in [0, 1), got ${o.beta2}`)
  if (!(Number.isFinite(o.eps) && o.eps > 0)) bad(`eps must be finite and > 0, got ${o.eps}`)
  if (!(Number.isFinite(o.weightDecay) && o.weightDecay >= 0)) bad(`weightDecay must be finite and ≥ 0, got ${o.weightDecay}`)
  if (!(Number.isInteger(o.step) && o.step >= 1)) bad(`step must be an integer ≥ 1 (1-based), got ${o.step}`)
}

/**
 * One PyTorch AdamW step, in place on param, m and v (all the grad's shape, f32, distinct
 * tensors): decoupled decay p·(1 − lr·wd), then the bias-corrected Adam update for 1-based `step`.
 */
export function adamw (param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamWOptions): void {
  const be = backendOf('adamw', param, grad, m, v)
  const named = [['param', param], ['grad', grad], ['m', m], ['v', v]] as const
  for (const [name, t] of named) {
    expectDType('adamw', name, t, 'f32')
    expectSameShape('adamw', param, t)
  }
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      if (named[i][1].storage === named[j][1].storage) throw new ShapeError('adamw', `${named[i][0]} and ${named[j][0]} must be distinct tensors`)
    }
  }
  checkAdamW(opts)
  if (isCpu(be)) {
    twin.adamw(param.data as Float32Array, grad.data as Float32Array, m.data as Float32Array, v.data as Float32Array, opts)
    return
  }
  const g = be as GpuBackend
  const s = twin.adamwScalars(opts)
  const n = param.numel
  g.run(ADAMW, ADAMW_VARIANT, { grad, param, m, v }, {
    n, decay: s.decay, w1: s.w1, beta2: opts.beta2, c2: s.c2, step_size: s.stepSize, bc2_sqrt: s.bc2Sqrt, eps: opts.eps
  }, g.grid1d(groups(n, WG)))
}

/** Encodes Σ a² into out[slot] (two dispatches; `partial` holds ≥ MAX_PARTS floats). */
function encodeSumSquares (g: GpuBackend, a: Tensor, partial: Tensor, out: Tensor, slot: number): void {
  const n = a.numel
  const wg = rowThreadsCap(g)
  const parts = Math.min(MAX_PARTS, groups(n, wg))
  const bindings = { a, partial, out }
  g.run(SUM_SQUARES, sumSquaresVariant('sum_squares_partial', wg), bindings, { n, parts, slot }, [parts])
  g.run(SUM_SQUARES, sumSquaresVariant('sum_squares_final', wg), bindings, { n, parts, slot }, [1])
}

/** Σ t² over every element of an f32 tensor → (1), by a deterministic two-pass reduction. */
export function sumSquares (t: Tensor): Tensor {
  const be = backendOf('sumSquares', t)
  expectDType('sumSquares', 't', t, 'f32')
  if (isCpu(be)) return cpu.wrap(Float32Array.of(twin.sumSquares(t.data as Float32Array)), [1])
  const g = be as GpuBackend
  const out = g.empty([1])
  const partial = g.empty([MAX_PARTS])
  encodeSumSquares(g, t, partial, out, 0)
  partial.dispose()
  return out
}

/**
 * torch.nn.utils.clip_grad_norm_: the L2 norm over all elements of all `grads`; when
 * maxNorm / (norm + 1e-6) < 1 every grad is scaled in place by that factor. Returns the
 * pre-clip norm (read back once). A non-finite norm is returned as is so the caller can skip the
 * step; an infinite one gives the factor 0 (as in torch), a NaN one leaves the grads unscaled.
 */
export async function clipGradNorm (grads: readonly Tensor[], maxNorm: number): Promise<number> {
  if (!(maxNorm >= 0)) throw new ShapeError('clipGradNorm', `maxNorm must be ≥ 0 (Infinity disables clipping), got ${maxNorm}`)
  if (grads.length === 0) return 0
  const be = backendOf('clipGradNorm', ...grads)
  grads.forEach((t, i) => expectDType('clipGradNorm', `grads[${i}]`, t, 'f32'))
  let sums: ArrayLike<number>
  if (isCpu(be)) {
    sums = grads.map(t => twin.sumSquares(t.data as Float32Array))
  } else {
    const g = be as GpuBackend
    const out = g.empty([grads.length])
    const partial = g.empty([MAX_PARTS])
    grads.forEach((t, i) => encodeSumSquares(g, t, partial, out, i))
    partial.dispose()
    sums = await out.readF32()
    out.dispose()
  }
  let total = 0
  for (let i = 0; i < sums.length; i++) total += sums[i]
  const norm = Math.sqrt(total)
  const coef = twin.clipCoefficient(norm, maxNorm)
  if (coef < 1) for (const t of grads) scaleInPlace(t, coef)
  return norm
}
