/**
 * The verify tolerance (VERIFY_TOLERANCE) against WebGPU with an f16 KV cache: needs shader-f16,
 * so this file runs in `npm run test:f16` on Mesa's lavapipe (vitest.f16.config.ts). Same inputs
 * and positions as verify-calibration.test.ts; figures printed for client/README.md.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { compareRows, VERIFY_TOLERANCE } from '../../web/src/swarm/client/verify-compare.ts'
import { testGpu } from '../helpers/gpu.ts'
import { inputs, MARGIN, run, spansOf } from './verify-calibration-helpers.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

describe('verify tolerance: WebGPU with an f16 KV cache stays under VERIFY_TOLERANCE', () => {
  it('runs on an adapter with shader-f16', () => {
    expect(gpu.info.f16, `adapter ${gpu.info.description}: install Mesa 25 lavapipe (bookworm-backports mesa-vulkan-drivers)`).toBe(true)
  })

  for (const name of ['tiny-llama', 'tiny-mixtral']) {
    it(`${name}: WebGPU f16 KV (whole and split) vs CPU f32`, async () => {
      const dir = `test/fixtures/${name}`
      const whole = await spansOf(dir, cpu, [0, 2])
      const C = whole[0].config.hiddenSize
      const x = inputs(C, 1)
      const ref = await run(whole, 'f32', x, C)
      for (const [label, split] of [['whole', [0, 2]], ['split 1+1', [0, 1, 2]]] as const) {
        const y = await run(await spansOf(dir, gpu, [...split]), 'f16', x, C)
        const { mismatch, max } = compareRows(y, ref, C, VERIFY_TOLERANCE / MARGIN)
        console.log(`verify calibration: ${name} webgpu f16 kv ${label} vs cpu f32: ${max.toExponential(2)}`)
        expect(mismatch, `${name} ${label}: honest deviation ${max}`).toBeUndefined()
        expect(max).toBeGreaterThan(0)
      }
    })
  }
})
