import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/loss.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { rowThreads, rowThreadsCap } from './norm.ts'
import { backendOf, expectDType, expectRank, expectShape, isCpu } from './util.ts'

/** PyTorch's default ignore_index: tokens with this target are left out of the mean. */
export const IGNORE_INDEX = -100
const LOSS = defineKernel({
  name: 'loss', shader: 'loss',
  bindings: [
    { name: 'logits', type: 'f32' }, // (T, V)
    { name: 'targets', type: 'i32' }, // (T)
    { name: 'out', type: 'f32', access: 'read_write' }, // forward (1); backward (T, V)
    { name: 'scratch', type: 'f32', access: 'read_write' } // forward (T) token losses; backward (1) count
  ],
  uniforms: [
    { name: 'T', type: 'u32' }, // tokens
    { name: 'V', type: 'u32' }, // vocabulary size (row length)
    { name: 'ignore', type: 'i32' } // ignore index
  ]
})

type LossEntry = 'cross_entropy_rows' | 'cross_entropy_mean' | 'count_targets' | 'cross_entropy_backward'

/** Variant builder: per-row entries size WG_X from V; the single-workgroup reductions over T use the cap. */
export function lossVariant (entry: LossEntry, V: number, cap: number): Variant {
  const wg = entry === 'cross_entropy_mean' || entry === 'count_targets' ? cap : rowThreads(V, cap)
  return { key: `${entry}-wg${wg}`, entry, workgroupSize: [wg] }
}

/** GPU vs CPU twin for O(1)-scaled logits: f32 exp/log and f32 sums over V and T. */
export const TOLERANCE = {
  crossEntropy: { atol: 1e-5, rtol: 1e-5 },
  crossEntropyBackward: { atol: 1e-7, rtol: 1e-4 }
} as const

function check (op: string, logits: Tensor, targets: Tensor, ignoreIndex: number): { T: number, V: number } {
  expectDType(op, 'logits', logits, 'f32')
  expectRank(op, 'logits', logits, 2)
  const [T, V] = logits.shape
  expectDType(op, 'targets', targets, 'i32')
  expectShape(op, 'targets', targets, [T])
  if (!Number.isInteger(ignoreIndex) || Math.abs(ignoreIndex) > 2 ** 31 - 1) throw new ShapeError(op, `ignoreIndex must be an i32, got ${ignoreIndex}`)
  if (V === 0 && T > 0) throw new ShapeError(op, `logits (${T}, 0) have no classes`)
  return { T, V }
}

/**
 * Mean cross-entropy of logits (T, V) against targets (T) i32 → (1), over tokens whose target is
 * not `ignoreIndex` (0 when none). Log-sum-exp is max-subtracted; the mean is a deterministic
 * reduction. Targets outside [0, V): the CPU path throws IdRangeError; the GPU path clamps, so
 * callers validate them on the host (`validateIds` in ops/embedding.ts).
 */
export function crossEntropy (logits: Tensor, targets: Tensor, ignoreIndex = IGNORE_INDEX): Tensor {
  const be = backendOf('crossEntropy', logits, targets)
  const { T, V } = check('crossEntropy', logits, targets, ignoreIndex)
  if (isCpu(be)) return cpu.wrap(Float32Array.of(twin.crossEntropy(logits.data as Float32Array, targets.data as Int32Array, V, ignoreIndex)), [1])
  const g = be as GpuBackend
  const out = g.empty([1])
  const scratch = g.empty([T])
  const bindings = { logits, targets, out, scratch }
  const uniforms = { T, V, ignore: ignoreIndex }
  const cap = rowThreadsCap(g)
  g.run(LOSS, lossVariant('cross_entropy_rows', V, cap), bindings, uniforms, g.grid1d(T))
  g.run(LOSS, lossVariant('cross_entropy_mean', V, cap), bindings, uniforms, [1])
  scratch.dispose()
  return out
}

/** d crossEntropy / d logits → (T, V): (softmax − onehot) / count, zero rows for ignored tokens. */
export function crossEntropyBackward (logits: Tensor, targets: Tensor, ignoreIndex = IGNORE_INDEX): Tensor {
  const be = backendOf('crossEntropyBackward', logits, targets)
  const { T, V } = check('crossEntropyBackward', logits, targets, ignoreIndex)
  if (isCpu(be)) return cpu.wrap(twin.crossEntropyBackward(logits.data as Float32Array, targets.data as Int32Array, V, ignoreIndex), [T, V])
  const g = be as GpuBackend
  const out = g.empty([T, V])
  const scratch = g.empty([1])
  const bindings = { logits, targets, out, scratch }
  const uniforms = { T, V, ignore: ignoreIndex }
  const cap = rowThreadsCap(g)
  g.run(LOSS, lossVariant('count_targets', V, cap), bindings, uniforms, [1])
  g.run(LOSS, lossVariant('cross_entropy_backward', V, cap), bindings, uniforms, g.grid1d(T))
  scratch.dispose()
  return out
}
