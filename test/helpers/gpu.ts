import { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'

let shared: Promise<GpuBackend> | undefined

/**
 * One WebGPU device per test file (Dawn + SwiftShader in Node on CI). Tests of GPU kernels
 * must run real WGSL: this throws, failing the test, when no adapter is found.
 */
export async function testGpu (): Promise<GpuBackend> {
  shared ??= GpuBackend.create()
  return await shared
}
