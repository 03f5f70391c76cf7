/**
 * One check, for the GPU kernel and its CPU twin: GpuTopKFeedback with up to 3 rounds compressed
 * and not yet committed (worker.ts `delayOuter` 3) against the host's ErrorFeedback, round by
 * round: the same bytes, sent values and norm, and after every commit, discard or reset the same
 * carry (the device keeps β·e, the host e).
 */
import { expect } from 'vitest'
import type { GpuBackend } from '../../../web/src/gpu/gpu-backend.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { GpuTopKFeedback } from '../../../web/src/swarm/train/compress-gpu.ts'
import { Rng } from '../../../web/src/util/rng.ts'

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

/** A schedule of a delayed outer update: compress (a sync starts), commit (the oldest lands), discard, reset. */
const SCHEDULE = ['c', 'c', 'c', 'commit', 'c', 'commit', 'c', 'commit', 'commit', 'c', 'c', 'discard', 'c', 'c', 'reset', 'c', 'commit', 'c', 'c', 'commit', 'commit'] as const

export async function overlappingRounds (gpu: GpuBackend, n: number, chunk: number, k: number, decay: number): Promise<void> {
  const codec = topkCodec({ chunk, k, bits: 2, resultBits: 4 })
  const host = new ErrorFeedback(n, codec, false, decay)
  const dev = new GpuTopKFeedback(gpu, n, codec.spec as { chunk: number, k: number, bits: number }, decay)
  const rng = new Rng(n + chunk)
  const beta = Math.fround(decay)
  let pending = 0
  let most = 0
  try {
    for (const [i, step] of SCHEDULE.entries()) {
      if (step === 'c') {
        const d = Float32Array.from({ length: n }, () => rng.normal() * 10 ** (rng.int(4) - 3))
        const a = host.compress(d)
        const b = await dev.compress(d)
        expect(Buffer.from(b.q).equals(Buffer.from(a.q)), `round ${i}: bytes`).toBe(true)
        expect(bits(b.sent), `round ${i}: sent`).toEqual(bits(a.sent))
        expect(b.norm, `round ${i}: norm`).toBe(a.norm)
        most = Math.max(most, ++pending)
        continue
      }
      if (step === 'commit') { host.commit(); dev.commit(); pending-- } else if (step === 'discard') { host.discard(); dev.discard(); pending = 0 } else { host.reset(); dev.reset(); pending = 0 }
      expect(bits(await dev.carried()), `after ${step} at ${i}`).toEqual(bits(Float32Array.from(host.residual, e => Math.fround(beta * e))))
    }
    expect(most).toBe(3)
    expect(pending).toBe(0)
  } finally {
    dev.dispose()
  }
}
