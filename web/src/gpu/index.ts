/**
 * WebGPU runtime and kernel library.
 *
 *   const gpu = await GpuBackend.create()            // or `cpu` for the CPU twins
 *   const a = gpu.tensor(new Float32Array([1, 2]), [2])
 *   const c = add(a, a)                              // ops pick the path from their inputs
 *   console.log(await c.readF32())                   // Float32Array [2, 4]
 */
export type { Backend } from './backend.ts'
export { CpuBackend, cpu } from './cpu-backend.ts'
export { GpuBackend } from './gpu-backend.ts'
export type { GpuInfo, AcquireOptions } from './device.ts'
export { Tensor, tidy, keep } from './tensor.ts'
export type { DType, TypedArray } from './dtype.ts'
export * from './errors.ts'
