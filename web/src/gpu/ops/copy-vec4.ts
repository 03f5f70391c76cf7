import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/copy-vec4.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, groups, isCpu } from './util.ts'

/**
 * A copy of an f32 tensor 16 bytes a thread (shaders/copy_vec4.wgsl): the bandwidth reference
 * of bench/kernels.ts for the quantized decode GEMV. Not used by models (they copy with
 * copyBufferToBuffer).
 */
const COPY = defineKernel({
  name: 'copy_vec4',
  shader: 'copy_vec4',
  bindings: [{ name: 'a', type: 'vec4<f32>' }, { name: 'out', type: 'vec4<f32>', access: 'read_write' }],
  uniforms: [{ name: 'n', type: 'u32' }] // vec4s
})
const WG = 64
const VARIANT: Variant = { key: `wg${WG}`, workgroupSize: [WG] }

/** out = a, a new f32 tensor of a's shape; a's element count must be a multiple of 4. */
export function copyVec4 (a: Tensor): Tensor {
  const be = backendOf('copyVec4', a)
  expectDType('copyVec4', 'a', a, 'f32')
  if (a.numel % 4 !== 0) throw new ShapeError('copyVec4', `a ${shapeString(a.shape)} must hold a multiple of 4 elements, has ${a.numel}`)
  if (isCpu(be)) return cpu.wrap(twin.copyVec4(a.data as Float32Array), a.shape)
  const g = be as GpuBackend
  const out = g.empty(a.shape)
  if (a.numel === 0) return out
  const n = a.numel / 4
  g.run(COPY, VARIANT, { a, out }, { n }, g.grid1d(groups(n, WG)))
  return out
}
