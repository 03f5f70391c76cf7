import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import * as twin from '../../web/src/gpu/cpu/moe.ts'
import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { expertFFN, expertFFNBackward, TOLERANCE } from '../../web/src/gpu/ops/moe.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { hostWeights, randomWeightBytes } from '../helpers/random-weights.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Block-scale exponents that keep decoded weights ≤ ~0.5 (|x| ≤ 1 inputs, sums of ≤ 512 terms). */
const SCALE_EXPS: Record<WeightDType, [number, number]> = {
  f32: [0, 0], f16: [0, 0], bf16: [0, 0], q8_0: [-10, -8], q4_0: [-6, -4], q4_k: [-13, -11], q5_k: [-14, -12], q6_k: [-15, -13]
}

/** Sorted-row offsets of N rows over E experts, some experts empty; rows before `skip` belong to none. */
export function randomOffsets (rng: Rng, N: number, E: number, skip = 0): Int32Array {
  const cuts = Array.from({ length: E - 1 }, () => skip + rng.int(N - skip + 1)).sort((a, b) => a - b)
  return Int32Array.from([skip, ...cuts, N])
}

interface Case { N: number, C: number, I: number, E: number, d1: WeightDType, d3: WeightDType, d2: WeightDType, skip?: number }

const CASES: Case[] = [
  { N: 7, C: 64, I: 96, E: 3, d1: 'q8_0', d3: 'q8_0', d2: 'q8_0' },
  { N: 1, C: 32, I: 64, E: 4, d1: 'q4_0', d3: 'q4_0', d2: 'q4_0' }, // decode: one row
  { N: 40, C: 96, I: 32, E: 5, d1: 'q4_0', d3: 'q4_0', d2: 'q4_0', skip: 3 }, // rows of no local expert
  { N: 19, C: 256, I: 256, E: 3, d1: 'q4_k', d3: 'q4_k', d2: 'q6_k' }, // the Q4_K_M mix
  { N: 5, C: 256, I: 256, E: 2, d1: 'q5_k', d3: 'q5_k', d2: 'q5_k' },
  { N: 9, C: 33, I: 65, E: 3, d1: 'f16', d3: 'f16', d2: 'f16' },
  { N: 6, C: 7, I: 9, E: 2, d1: 'bf16', d3: 'bf16', d2: 'bf16' },
  { N: 11, C: 64, I: 32, E: 3, d1: 'f32', d3: 'q8_0', d2: 'bf16' } // each weight its own dtype
]

function weights (rng: Rng, c: Case): Array<{ dtype: WeightDType, bytes: Uint8Array, shape: number[] }> {
  const { C, I, E } = c
  return [[c.d1, I, C], [c.d3, I, C], [c.d2, C, I]].map(([dtype, rows, K]) => {
    const d = dtype as WeightDType
    return { dtype: d, bytes: randomWeightBytes(rng, d, E * (rows as number), K as number, SCALE_EXPS[d]), shape: [E, rows as number, K as number] }
  })
}

describe('expertFFN on weights in a file encoding: GPU (shaders/moe_ffn_quant.wgsl) vs CPU twin', () => {
  for (const c of CASES) {
    it(`${c.d1}/${c.d3}/${c.d2} N=${c.N} C=${c.C} I=${c.I} E=${c.E}${c.skip !== undefined ? ` skip=${c.skip}` : ''}`, async () => {
      const rng = new Rng(c.N * 131 + c.C * 7 + c.I)
      const xs = rng.uniform(c.N * c.C)
      const offsets = randomOffsets(rng, c.N, c.E, c.skip)
      const ws = weights(rng, c)
      const ref = twin.expertFFNWeights(xs, offsets, ws[0], ws[1], ws[2], c.N, c.C, c.I, c.E)
      // The twin is the f32 definition on the decoded stacks.
      const dec = ws.map(w => dequantize(w.dtype, w.bytes, c.E * c.I * c.C))
      expect(ref).toEqual(twin.expertFFN(xs, offsets, dec[0], dec[1], dec[2], c.N, c.C, c.I, c.E))
      const on = async (be: typeof gpu | typeof cpu, kernel?: 'tiled' | 'rows'): Promise<Float32Array> => {
        const [w1, w3, w2] = ws.map(w => be.tensor(hostWeights(w.bytes, w.dtype), w.shape, w.dtype))
        return await expertFFN(be.tensor(xs, [c.N, c.C]), be.tensor(offsets, [c.E + 1], 'i32'), w1, w3, w2, { kernel }).readF32()
      }
      for (const kernel of ['tiled', 'rows'] as const) {
        const got = await on(gpu, kernel)
        assertClose(got, ref, { ...TOLERANCE.expertFFNQuant, what: `expertFFN ${kernel}` })
        if (c.skip !== undefined) expect([...got.subarray(0, c.skip * c.C)].every(v => v === 0)).toBe(true)
      }
      expect(await on(cpu)).toEqual(ref)
    })
  }

  it('refuses the backward on quantized experts, and names a weight whose rows are not whole blocks', () => {
    const rng = new Rng(3)
    const c: Case = { N: 2, C: 32, I: 32, E: 1, d1: 'q8_0', d3: 'q8_0', d2: 'q8_0' }
    const [w1, w3, w2] = weights(rng, c).map(w => gpu.tensor(w.bytes, w.shape, w.dtype))
    const xs = gpu.tensor(rng.uniform(64), [2, 32])
    const offsets = gpu.tensor([0, 2], [2], 'i32')
    expect(() => expertFFNBackward(xs, offsets, w1, w3, w2, xs)).toThrow(/expertFFNBackward: w1 is q8_0: quantized weights are for inference/)
    expect(() => expertFFN(xs, offsets, w1, w3, gpu.tensor(new Float32Array(32 * 32), [1, 32, 32], 'i32'))).toThrow(ShapeError)
    expect(() => expertFFN(xs, offsets, w1, w3, gpu.tensor(new Float32Array(32 * 32), [1, 32, 32], 'i32'))).toThrow(/expertFFN: w2 must be a weight dtype/)
  })
})
