/**
 * Calibrates the verifier's tolerance (VERIFY_TOLERANCE, client/verify-compare.ts) on honest
 * runs: the same inputs through the same blocks on the CPU twins with an f32 KV cache, the CPU
 * twins with an f16 KV cache, WebGPU (SwiftShader here) in f32, and split differently over
 * servers, in a prefill and then one token at a time (as a decode). Every honest pair must stay
 * under the threshold with a margin; the figures are printed for client/README.md § Verification.
 * (WebGPU with an f16 cache needs shader-f16: verify-calibration.f16.test.ts, in npm run test:f16.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { compareRows, VERIFY_TOLERANCE } from '../../web/src/swarm/client/verify-compare.ts'
import { testGpu } from '../helpers/gpu.ts'
import { inputs, MARGIN, run, spansOf } from './verify-calibration-helpers.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })
const figures: string[] = []
afterAll(() => { console.log(`verify calibration (relative L2 per position, max):\n${figures.join('\n')}`) })

describe('verify tolerance: honest backends, caches and splits stay under VERIFY_TOLERANCE', () => {
  for (const name of ['tiny-llama', 'tiny-mixtral']) {
    it(`${name}: CPU f32 vs CPU f16 KV vs WebGPU f32 vs a split over two servers`, async () => {
      const dir = `test/fixtures/${name}`
      const whole = await spansOf(dir, cpu, [0, 2])
      const C = whole[0].config.hiddenSize
      let worst = 0
      for (const seed of [1, 2]) {
        const x = inputs(C, seed)
        const ref = await run(whole, 'f32', x, C)
        const others: Array<[string, Float32Array]> = [
          ['cpu f16 kv', await run(whole, 'f16', x, C)],
          ['cpu f32 split 1+1', await run(await spansOf(dir, cpu, [0, 1, 2]), 'f32', x, C)],
          ['webgpu f32', await run(await spansOf(dir, gpu, [0, 2]), 'f32', x, C)],
          ['webgpu f32 split 1+1', await run(await spansOf(dir, gpu, [0, 1, 2]), 'f32', x, C)]
        ]
        for (const [label, y] of others) {
          const { mismatch, max } = compareRows(y, ref, C, VERIFY_TOLERANCE / MARGIN)
          figures.push(`  ${name} seed ${seed} ${label} vs cpu f32: ${max.toExponential(2)}`)
          expect(mismatch, `${name} ${label}: honest deviation ${max} over ${VERIFY_TOLERANCE} / ${MARGIN}`).toBeUndefined()
          worst = Math.max(worst, max)
        }
      }
      // Not vacuous: honest backends do differ, by a measurable amount.
      expect(worst).toBeGreaterThan(0)
    })
  }
})
