/**
 * GpuTopKFeedback (compress-gpu.ts) run on the CPU backend, whose `topkErrorFeedback` is the
 * kernel's CPU twin (gpu/cpu/topk-ef.ts; CONTRIBUTING.md STYLE 1 and STYLE 2): rounds that overlap, as the delayed outer update
 * over d > 1 syncs makes them (worker.ts `delayOuter`: up to d compressed and not yet committed),
 * chain and commit in order exactly as the host's ErrorFeedback (compress.ts) does — the same
 * bytes, sent values, norms and carry, through commits, a discard of several pending rounds and a
 * reset with rounds pending. compress-gpu.test.ts runs the same sequence on a WebGPU device.
 */
import { describe, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../../web/src/gpu/gpu-backend.ts'
import { overlappingRounds } from './overlapping-feedback.ts'

describe('GpuTopKFeedback on the CPU twin, rounds in flight', () => {
  for (const [n, chunk, k, decay] of [[1000, 64, 1, 0.95], [333, 256, 4, 1]] as const) {
    it(`n ${n}, top-${k} of ${chunk}, β ${decay}: up to 3 rounds pending chain and commit as on the host`, async () => {
      await overlappingRounds(cpu as unknown as GpuBackend, n, chunk, k, decay)
    })
  }
})
