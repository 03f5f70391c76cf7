import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/rope.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import { keep, type Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, groups, isCpu } from './util.ts'

/**
 * GPU vs CPU twin, for |x| ≲ 1 and |position · inv_freq| < 1e5 rad. The shader's cos/sin are
 * within ~3e-7 of the exact values for the f32 angle (see shaders/rope.wgsl); each output adds
 * two rounded products. Measured worst |err| on SwiftShader (x uniform in ±1, D = 64, 2048
 * tokens): 1.6e-7 at positions < 8192, 2.4e-7 at positions < 1e5.
 */
export const TOLERANCE = {
  rope: { atol: 5e-7, rtol: 1e-6 }
} as const

/** Threads per workgroup of the flat rope kernel (one thread per rotated pair). */
const WG = 256
const FLAT: Variant = { key: `wg${WG}`, workgroupSize: [WG] }

const ROPE = defineKernel({
  name: 'rope', shader: 'rope', entry: 'rope',
  bindings: [
    { name: 'x', type: 'f32' }, //             (T, H, D)
    { name: 'positions', type: 'i32' }, //     (T)
    { name: 'inv_freq', type: 'f32' }, //      (D/2)
    { name: 'out', type: 'f32', access: 'read_write' } // (T, H, D)
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, //       rotated pairs: T·H·D/2
    { name: 'half', type: 'u32' }, //    D/2
    { name: 'H', type: 'u32' }, //       heads
    { name: 'inverse', type: 'u32' } //  1: rotate by −angle
  ]
})

/** inv_freq tables per device, keyed by `${D}/${theta}`; a model uses one or two. */
const invFreqTables = new WeakMap<GpuBackend, Map<string, Tensor>>()

function invFreqTensor (g: GpuBackend, D: number, theta: number): Tensor {
  let perDevice = invFreqTables.get(g)
  if (perDevice === undefined) { perDevice = new Map(); invFreqTables.set(g, perDevice) }
  const key = `${D}/${theta}`
  let t = perDevice.get(key)
  if (t === undefined || t.disposed) {
    t = keep(g.tensor(twin.invFreq(D, theta), [D / 2]))
    perDevice.set(key, t)
  }
  return t
}

/** Uploaded custom inv_freq tables, by the host array (a model keeps one per layer). */
const customTables = new WeakMap<GpuBackend, WeakMap<Float32Array, Tensor>>()

function customInvFreqTensor (g: GpuBackend, table: Float32Array): Tensor {
  let perDevice = customTables.get(g)
  if (perDevice === undefined) { perDevice = new WeakMap(); customTables.set(g, perDevice) }
  let t = perDevice.get(table)
  if (t === undefined || t.disposed) {
    t = keep(g.tensor(table, [table.length]))
    perDevice.set(table, t)
  }
  return t
}

/**
 * Rotary embedding, rotate-half (HF Llama): x (T, H, D), positions i32 (T) → (T, H, D).
 * `inverse` rotates by −angle, which is both the inverse and the backward (the rotation's
 * transpose): dx = rope(dy, positions, theta, true). `invFreqTable` (D/2) replaces the
 * 1/theta^(2i/D) table (Llama 3.1's scaled frequencies, see twin.scaledInvFreq).
 */
export function rope (x: Tensor, positions: Tensor, theta: number, inverse = false, invFreqTable?: Float32Array): Tensor {
  const op = 'rope'
  const be = backendOf(op, x, positions)
  expectRank(op, 'x (T, H, D)', x, 3)
  expectRank(op, 'positions (T)', positions, 1)
  expectDType(op, 'x', x, 'f32')
  expectDType(op, 'positions', positions, 'i32')
  const [T, H, D] = x.shape
  if (positions.shape[0] !== T) throw new ShapeError(op, `positions ${shapeString(positions.shape)} must have one entry per token of x ${shapeString(x.shape)}`)
  if (D % 2 !== 0) throw new ShapeError(op, `head dim D must be even, got x ${shapeString(x.shape)}`)
  if (!(Number.isFinite(theta) && theta > 0)) throw new ShapeError(op, `theta must be a positive number, got ${theta}`)
  if (invFreqTable !== undefined && invFreqTable.length !== D / 2) throw new ShapeError(op, `invFreqTable has ${invFreqTable.length} entries, head dim ${D} needs ${D / 2}`)
  if (isCpu(be)) return cpu.wrap(twin.rope(x.data as Float32Array, positions.data as Int32Array, T, H, D, theta, inverse, invFreqTable), x.shape)
  const g = be as GpuBackend
  const out = g.empty(x.shape)
  const n = T * H * (D / 2)
  if (n === 0) return out
  g.run(ROPE, FLAT, { x, positions, inv_freq: invFreqTable === undefined ? invFreqTensor(g, D, theta) : customInvFreqTensor(g, invFreqTable), out }, { n, half: D / 2, H, inverse: inverse ? 1 : 0 }, g.grid1d(groups(n, WG)))
  return out
}
