import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { matmulQuant, quantMatmulVariant, TOLERANCE } from '../../web/src/gpu/ops/matmul-quant.ts'
import { blockInfo, WEIGHT_DTYPES } from '../../web/src/gpu/quant-types.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { randomWeightBytes } from '../helpers/weight-blocks.ts'

// The shader-f16 variants of shaders/matmul_quant.wgsl. Runs in its own process on an adapter
// with `shader-f16` (vitest.f16.config.ts points Dawn at Mesa's lavapipe: SwiftShader has none).

let gpu: GpuBackend
beforeAll(async () => {
  gpu = await testGpu()
  if (!gpu.info.f16) throw new Error(`adapter '${gpu.info.description}' has no shader-f16: run with vitest.f16.config.ts on Mesa ≥ 25 lavapipe (apt-get install -t bookworm-backports mesa-vulkan-drivers)`)
})

/** |got − ref| ≤ atol + absSumRtol·Σₖ|x·w| per output (TOLERANCE.matmulQuantF16: f16 rounding of each factor). */
function assertWithinAbsSum (got: Float32Array, ref: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number, what: string): void {
  const { atol, absSumRtol } = TOLERANCE.matmulQuantF16
  const bad: string[] = []
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0
      for (let k = 0; k < K; k++) s += Math.abs(x[m * K + k] * w[n * K + k])
      const err = Math.abs(got[m * N + n] - ref[m * N + n])
      if (!(err <= atol + absSumRtol * s)) bad.push(`[${m}, ${n}] ${got[m * N + n]} vs ${ref[m * N + n]} (bound ${atol + absSumRtol * s})`)
    }
  }
  expect(bad.slice(0, 5), `${what}: ${bad.length} outputs out of bounds`).toEqual([])
}

function ks (dtype: WeightDType): [number, number] {
  const { elems } = blockInfo(dtype)
  return elems === 1 ? [5, 37] : [elems, 3 * elems]
}

describe('matmulQuant f16 tiles (tiled kernel, shader-f16) vs CPU twin', () => {
  for (const dtype of WEIGHT_DTYPES) {
    it(`${dtype}: M ∈ {9, 17, 33} × N ∈ {1, 7, 65} × K ∈ {${ks(dtype).join(', ')}}`, async () => {
      let seed = 100
      for (const K of ks(dtype)) {
        for (const N of [1, 7, 65]) {
          const wb = randomWeightBytes(dtype, N, K, seed++)
          for (const M of [9, 17, 33]) {
            const x = new Rng(seed++).uniform(M * K)
            const b = new Rng(seed++).uniform(N)
            const got = await matmulQuant(gpu.tensor(x, [M, K]), gpu.tensor(wb, [N, K], dtype), { bias: gpu.tensor(b, [N]) }).readF32()
            const ref = await matmulQuant(cpu.tensor(x, [M, K]), cpu.tensor(wb, [N, K], dtype), { bias: cpu.tensor(b, [N]) }).readF32()
            assertWithinAbsSum(got, ref, x, dequantize(dtype, wb, N * K), M, N, K, `f16 ${dtype} M ${M} N ${N} K ${K}`)
          }
        }
      }
    })
  }

  it('picks the f16 tiles by default where the device has them, the f32 ones on request', () => {
    expect(quantMatmulVariant({ dtype: 'q4_k', kernel: 'tiled', M: 9, hasBias: false, f16: true }).elem).toBe('f16')
    expect(quantMatmulVariant({ dtype: 'q4_k', kernel: 'tiled', M: 9, hasBias: false }).elem).toBe('f32')
    expect(() => quantMatmulVariant({ dtype: 'q4_k', kernel: 'gemv', M: 1, hasBias: false, f16: true })).toThrow(/tiled kernel only/)
  })

  it('the f32 tiles on this adapter agree too (f16: false)', async () => {
    const [M, N, K] = [12, 9, 512]
    const wb = randomWeightBytes('q6_k', N, K, 3)
    const x = new Rng(1).uniform(M * K)
    const got = await matmulQuant(gpu.tensor(x, [M, K]), gpu.tensor(wb, [N, K], 'q6_k'), { f16: false }).readF32()
    const ref = await matmulQuant(cpu.tensor(x, [M, K]), cpu.tensor(wb, [N, K], 'q6_k')).readF32()
    assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: 'f32 tiles on the f16 adapter' })
  })
})
