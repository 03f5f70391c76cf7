import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/elementwise.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectSameShape, groups, isCpu } from './util.ts'
import type { GpuBackend } from '../gpu-backend.ts'

/** Workgroup size of the flat elementwise kernels. */
const WG = 256
const FLAT: Variant = { key: `wg${WG}`, workgroupSize: [WG] }

const BINARY_BINDINGS = [
  { name: 'a', type: 'f32' },
  { name: 'b', type: 'f32' },
  { name: 'out', type: 'f32', access: 'read_write' }
] as const

const ADD = defineKernel({
  name: 'add', shader: 'elementwise', entry: 'add',
  bindings: BINARY_BINDINGS,
  uniforms: [{ name: 'n', type: 'u32' }] // n: elements
})

/** a + b, same shapes. Tolerance vs CPU: exact (one f32 add). */
export function add (a: Tensor, b: Tensor): Tensor {
  const be = backendOf('add', a, b)
  expectSameShape('add', a, b)
  expectDType('add', 'a', a, 'f32')
  expectDType('add', 'b', b, 'f32')
  if (isCpu(be)) return cpu.wrap(twin.add(a.data as Float32Array, b.data as Float32Array), a.shape)
  const g = be as GpuBackend
  const out = g.empty(a.shape)
  g.run(ADD, FLAT, { a, b, out }, { n: a.numel }, g.grid1d(groups(a.numel, WG)))
  return out
}
