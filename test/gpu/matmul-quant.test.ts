import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { linear, matmul } from '../../web/src/gpu/ops/matmul.ts'
import { dequantizeTensor, GEMV_MAX_M, matmulQuant, planQuantMatmul, quantMatmulVariant, TOLERANCE } from '../../web/src/gpu/ops/matmul-quant.ts'
import { blockInfo, WEIGHT_DTYPES } from '../../web/src/gpu/quant-types.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { randomWeightBytes } from '../helpers/weight-blocks.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** K of one block and of three (odd K with a tail of 1 for the element dtypes). */
function ks (dtype: WeightDType): [number, number] {
  const { elems } = blockInfo(dtype)
  return elems === 1 ? [5, 37] : [elems, 3 * elems]
}

const MS = [1, 2, 3, 5, 8, 9, 17, 33]
const GEMVS = ['gemv', 'gemv_cols'] as const
const NS = [1, 7, 65]

async function both (build: (be: typeof cpu | GpuBackend) => Tensor): Promise<[Float32Array, Float32Array]> {
  const c = build(cpu)
  const g = build(gpu)
  const out: [Float32Array, Float32Array] = [await g.readF32(), await c.readF32()]
  c.dispose(); g.dispose()
  return out
}

// The f32 variants of every kernel run here (SwiftShader); the shader-f16 ones in
// matmul-quant.f16.test.ts (lavapipe, vitest.f16.config.ts).
describe('matmulQuant: WebGPU vs CPU twin, every weight dtype', () => {
  for (const dtype of WEIGHT_DTYPES) {
    it(`${dtype}: M ∈ {${MS.join(', ')}} × N ∈ {${NS.join(', ')}} × K ∈ {${ks(dtype).join(', ')}}, both GEMVs for M ≤ 8, tiled above`, async () => {
      let seed = 1
      for (const K of ks(dtype)) {
        for (const N of NS) {
          const wb = randomWeightBytes(dtype, N, K, seed++)
          const wc = cpu.tensor(wb, [N, K], dtype)
          const wg = gpu.tensor(wb, [N, K], dtype)
          for (const M of MS) {
            const x = new Rng(seed++).uniform(M * K)
            const withBias = (M + N) % 2 === 0
            const b = withBias ? new Rng(seed++).uniform(N) : undefined
            for (const kernel of M <= GEMV_MAX_M ? GEMVS : ['tiled'] as const) {
              const [got, ref] = await both(be => matmulQuant(be.tensor(x, [M, K]), be === cpu ? wc : wg, { kernel, bias: b !== undefined ? be.tensor(b, [N]) : undefined }))
              assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: `${dtype} ${kernel} M ${M} N ${N} K ${K}${withBias ? ' +bias' : ''}` })
            }
          }
          wc.dispose(); wg.dispose()
        }
      }
    })
  }

  it('the CPU twin equals an f32 matmul of the dequantized weights (q4_k, q6_k, bf16)', async () => {
    for (const dtype of ['q4_k', 'q6_k', 'bf16'] as const) {
      const [M, N, K] = [3, 5, ks(dtype)[1]]
      const wb = randomWeightBytes(dtype, N, K, 9)
      const x = cpu.tensor(new Rng(4).uniform(M * K), [M, K])
      const wf = cpu.tensor(dequantize(dtype, wb, N * K), [N, K])
      assertClose(await linear(x, cpu.tensor(wb, [N, K], dtype)).readF32(), await matmul(x, wf, { transB: true }).readF32(), { atol: 1e-6, rtol: 1e-6, what: dtype })
    }
  })

  it('gemv_cols with several columns a thread and other workgroup sizes: N not a multiple of the columns', async () => {
    for (const dtype of ['q4_k', 'q6_k', 'q8_0', 'f16'] as const) {
      const K = ks(dtype)[1]
      for (const cols of [{ wg: 64, cols: 2 }, { wg: 256, cols: 3 }, { wg: 7, cols: 4 }]) {
        for (const [M, N] of [[1, 7], [3, 65], [8, 1]]) {
          const wb = randomWeightBytes(dtype, N, K, M * 31 + N + cols.cols)
          const x = new Rng(M + N).uniform(M * K)
          const b = new Rng(N).uniform(N)
          const [got, ref] = await both(be => matmulQuant(be.tensor(x, [M, K]), be.tensor(wb, [N, K], dtype), be === cpu ? { bias: be.tensor(b, [N]) } : { kernel: 'gemv_cols', cols, bias: be.tensor(b, [N]) }))
          assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: `${dtype} gemv_cols wg ${cols.wg} × ${cols.cols} M ${M} N ${N}` })
        }
      }
    }
  })

  it('the plan: gemv_cols on software adapters, gemv on GPUs, tiled past 8 rows; bad gemv_cols shapes throw', () => {
    expect(planQuantMatmul({ f16: false, software: true }, 1).kernel).toBe('gemv_cols')
    expect(planQuantMatmul({ f16: false, software: false }, 8).kernel).toBe('gemv')
    expect(planQuantMatmul({ f16: false, software: true }, 9).kernel).toBe('tiled')
    expect(planQuantMatmul({ f16: false, software: true }, 1, { kernel: 'gemv' }).kernel).toBe('gemv')
    expect(() => quantMatmulVariant({ dtype: 'q4_k', kernel: 'gemv_cols', M: 1, hasBias: false, cols: { wg: 64, cols: 0 } })).toThrow(/1 ≤ cols ≤ 8/)
    expect(() => quantMatmulVariant({ dtype: 'q4_k', kernel: 'gemv_cols', M: 9, hasBias: false })).toThrow(/1 ≤ M ≤ 8, got M = 9/)
  })

  it('forced kernels: GEMV past 8 rows (8 at a time) and the tiled kernel at M = 1 agree with the twin', async () => {
    const [N, K] = [9, 512]
    const wb = randomWeightBytes('q5_k', N, K, 3)
    for (const [M, kernel] of [[11, 'gemv'], [11, 'gemv_cols'], [1, 'tiled']] as const) {
      const x = new Rng(M).uniform(M * K)
      const [got, ref] = await both(be => matmulQuant(be.tensor(x, [M, K]), be.tensor(wb, [N, K], 'q5_k'), be === cpu ? {} : { kernel }))
      assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: `${kernel} M ${M}` })
    }
  })

  it('linear routes weights by dtype over (..., in) inputs, on both backends', async () => {
    const [N, K] = [7, 64]
    const wb = randomWeightBytes('q8_0', N, K, 21)
    const x = new Rng(2).uniform(2 * 3 * K)
    const [got, ref] = await both(be => linear(be.tensor(x, [2, 3, K]), be.tensor(wb, [N, K], 'q8_0')))
    assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: 'linear q8_0' })
    const y = linear(gpu.tensor(x, [2, 3, K]), gpu.tensor(wb, [N, K], 'q8_0'))
    expect(y.shape).toEqual([2, 3, N])
  })

  it('dequantizeTensor: WebGPU decoder vs CPU twin for every dtype', async () => {
    for (const dtype of WEIGHT_DTYPES) {
      const [N, K] = [3, ks(dtype)[1]]
      const wb = randomWeightBytes(dtype, N, K, 5)
      const [got, ref] = await both(be => dequantizeTensor(be.tensor(wb, [N, K], dtype)))
      assertClose(got, ref, { ...TOLERANCE.dequantize, what: `dequantize ${dtype}` })
    }
  })

  it('bad input throws naming the problem', () => {
    for (const be of [cpu, gpu]) {
      const w = be.tensor(randomWeightBytes('q4_0', 2, 64, 1), [2, 64], 'q4_0')
      expect(() => matmulQuant(be.tensor(new Float32Array(2 * 32), [2, 32]), w)).toThrow(/inner dimensions differ.*K 32 vs 64/)
      expect(() => linear(be.tensor(new Int32Array(64), [1, 64], 'i32'), w)).toThrow(/x must be f32, got i32/)
      expect(() => matmulQuant(be.tensor(new Float32Array(64), [1, 64]), w, { bias: be.tensor(new Float32Array(3), [3]) })).toThrow(/bias must have shape \(2\)/)
      // a K that is not a whole number of blocks cannot even be stored
      expect(() => be.tensor(new Uint8Array(18 * 3), [3, 48], 'q4_0')).toThrow(/last dim 48 is not a multiple of the block of 32/)
      // bytes that do not match the shape
      expect(() => be.tensor(new Uint8Array(100), [2, 64], 'q4_0')).toThrow(/100 bytes given for q4_0 shape \(2, 64\) \(expected 72\)/)
    }
    expect(() => matmulQuant(gpu.tensor(new Float32Array(32 * 9), [9, 32]), gpu.tensor(randomWeightBytes('q8_0', 1, 32, 2), [1, 32], 'q8_0'), { f16: !gpu.info.f16, kernel: 'tiled' }))
      .toThrow(gpu.info.f16 ? /x/ : /f16 tiles need the shader-f16 feature/)
  })

  it('a weight split into row parts (forced 4 KiB bindings) writes each part\'s columns', async () => {
    const small = await GpuBackend.create({ maxBindingBytes: 4096 })
    const [N, K] = [64, 256] // q4_k: 144 bytes a row → at most 28 rows a part: 3 parts
    const wb = randomWeightBytes('q4_k', N, K, 8)
    const w = small.tensor(wb, [N, K], 'q4_k')
    expect(w.storage.parts?.length).toBe(3)
    const bias = new Rng(99).uniform(N)
    for (const [M, kernel] of [[1, 'gemv'], [1, 'gemv_cols'], [3, 'tiled']] as const) { // x must fit one binding too
      const x = new Rng(M).uniform(M * K)
      const got = await matmulQuant(small.tensor(x, [M, K]), w, { bias: small.tensor(bias, [N]), kernel }).readF32()
      const ref = await linear(cpu.tensor(x, [M, K]), cpu.tensor(wb, [N, K], 'q4_k'), cpu.tensor(bias, [N])).readF32()
      assertClose(got, ref, { ...TOLERANCE.matmulQuant, what: `split ${kernel} M ${M}` })
    }
    // GEMV forced past 8 rows on a split weight: every part writes into each 8-row slice
    const [N2, K2, M2] = [600, 32, 11] // q4_0: 18 bytes a row → 3 parts; x (11, 32) fits a binding
    const wb2 = randomWeightBytes('q4_0', N2, K2, 12)
    const w2 = small.tensor(wb2, [N2, K2], 'q4_0')
    expect(w2.storage.parts?.length).toBe(3)
    const x2 = new Rng(7).uniform(M2 * K2)
    const ref2 = await matmulQuant(cpu.tensor(x2, [M2, K2]), cpu.tensor(wb2, [N2, K2], 'q4_0')).readF32()
    for (const kernel of GEMVS) {
      const got2 = await matmulQuant(small.tensor(x2, [M2, K2]), w2, { kernel }).readF32()
      assertClose(got2, ref2, { ...TOLERANCE.matmulQuant, what: `split, ${kernel} past 8 rows` })
    }
    const viaLinear = await linear(small.tensor(new Float32Array(K).fill(0.5), [1, K]), w).readF32()
    assertClose(viaLinear, await linear(cpu.tensor(new Float32Array(K).fill(0.5), [1, K]), cpu.tensor(wb, [N, K], 'q4_k')).readF32(), { ...TOLERANCE.matmulQuant, what: 'split via linear' })
    small.destroy()
  })
})
