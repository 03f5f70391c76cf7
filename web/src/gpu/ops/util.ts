import type { Backend } from '../backend.ts'
import { cpu, type CpuBackend } from '../cpu-backend.ts'
import { shapeString, type DType } from '../dtype.ts'
import { ShapeError, SplitTensorError, TensorStateError } from '../errors.ts'
import { SPLIT_OPS } from '../split.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import type { Tensor } from '../tensor.ts'

/** Shared checks and backend selection for op functions. */

export function isGpu (b: Backend): b is GpuBackend {
  return b.kind === 'webgpu'
}

export function isCpu (b: Backend): b is CpuBackend {
  return b.kind === 'cpu'
}

/**
 * The backend all tensors share (ops never mix backends silently). Tensors split into row parts
 * (split.ts) are refused here, naming the op, except by the ops in SPLIT_OPS.
 */
export function backendOf (op: string, ...ts: Array<Tensor | undefined>): Backend {
  let be: Backend | undefined
  for (const t of ts) {
    if (t === undefined) continue
    if (t.disposed) throw new TensorStateError(`${op}: input tensor was disposed`)
    if (t.split && !SPLIT_OPS.has(op)) throw new SplitTensorError(op, `a ${t.dtype} input ${shapeString(t.shape)} is split into row parts (larger than one binding); only ${[...SPLIT_OPS].join(', ')} take split tensors`)
    if (be === undefined) be = t.backend
    else if (be !== t.backend) throw new ShapeError(op, 'inputs live on different backends')
  }
  return be ?? cpu
}

export function expectDType (op: string, name: string, t: Tensor, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) throw new ShapeError(op, `${name} must be ${dtypes.join(' or ')}, got ${t.dtype}`)
}

export function expectRank (op: string, name: string, t: Tensor, ...ranks: number[]): void {
  if (!ranks.includes(t.rank)) throw new ShapeError(op, `${name} must have rank ${ranks.join(' or ')}, got ${shapeString(t.shape)}`)
}

/** `shape` entries of -1 match anything. */
export function expectShape (op: string, name: string, t: Tensor, shape: readonly number[]): void {
  const ok = t.rank === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i])
  if (!ok) throw new ShapeError(op, `${name} must have shape ${shapeString(shape.map(d => d === -1 ? NaN : d)).replace(/NaN/g, '*')}, got ${shapeString(t.shape)}`)
}

export function expectSameShape (op: string, a: Tensor, b: Tensor): void {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(op, `shapes differ: ${shapeString(a.shape)} vs ${shapeString(b.shape)}`)
  }
}

/** Workgroups needed to cover n items with groups of size wg. */
export function groups (n: number, wg: number): number {
  return Math.ceil(n / wg)
}
