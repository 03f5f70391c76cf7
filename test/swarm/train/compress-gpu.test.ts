import { beforeAll, describe, expect, it } from 'vitest'
import type { GpuBackend } from '../../../web/src/gpu/gpu-backend.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { GpuTopKFeedback } from '../../../web/src/swarm/train/compress-gpu.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { testGpu } from '../../helpers/gpu.ts'
import { overlappingRounds } from './overlapping-feedback.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

function delta (n: number, seed: number): Float32Array {
  const rng = new Rng(seed)
  return Float32Array.from({ length: n }, () => rng.normal() * 10 ** (rng.int(4) - 3))
}

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

describe('error feedback on the GPU kernel (compress-gpu.ts) vs on the host (compress.ts)', () => {
  for (const [n, chunk, k, decay] of [[1000, 64, 1, 0.95], [333, 256, 4, 1], [130, 128, 3, 0.9]] as const) {
    it(`n ${n}, top-${k} of ${chunk}, β ${decay}: the same bytes, sent and norm over rounds with commit, discard and reset`, async () => {
      const codec = topkCodec({ chunk, k, bits: 2, resultBits: 4 })
      const host = new ErrorFeedback(n, codec, false, decay)
      const dev = new GpuTopKFeedback(gpu, n, codec.spec as { chunk: number, k: number, bits: number }, decay)
      const steps: Array<'commit' | 'discard' | 'reset'> = ['commit', 'discard', 'commit', 'reset', 'commit']
      for (let r = 0; r < steps.length; r++) {
        const d = delta(n, 10 * n + r)
        const a = host.compress(d)
        const b = await dev.compress(d)
        expect(b.q).toEqual(a.q)
        expect(bits(b.sent)).toEqual(bits(a.sent))
        expect(b.norm).toBe(a.norm)
        const step = steps[r]
        if (step === 'commit') { host.commit(); dev.commit() } else if (step === 'discard') { host.discard(); dev.discard() } else { host.reset(); dev.reset() }
        // The device keeps β·e (the next round's carry); the host keeps e.
        const carried = await dev.carried()
        const beta = Math.fround(decay)
        expect(bits(carried)).toEqual(bits(Float32Array.from(host.residual, e => Math.fround(beta * e))))
      }
      dev.dispose()
    })
  }

  it('rounds in flight (delayOuter d > 1): up to 3 pending chain and commit as on the host (compress-gpu-twin.test.ts runs it on the CPU twin)', async () => {
    await overlappingRounds(gpu, 1000, 64, 1, 0.95)
    await overlappingRounds(gpu, 333, 256, 4, 1)
  })

  it('refuses a non-finite Δ without touching the residual, and chunks above the kernel', async () => {
    const dev = new GpuTopKFeedback(gpu, 16, { chunk: 8, k: 1, bits: 2 })
    const d = delta(16, 1)
    await dev.compress(d)
    dev.commit()
    const before = await dev.carried()
    d[9] = NaN
    await expect(dev.compress(d)).rejects.toThrow(/chunk 1 holds a non-finite value/)
    dev.commit()
    expect(bits(await dev.carried())).toEqual(bits(before))
    dev.dispose()
    expect(() => new GpuTopKFeedback(gpu, 16, { chunk: 2048, k: 1, bits: 2 })).toThrow(TrainArgumentError)
  })
})
