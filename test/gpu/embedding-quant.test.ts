import { beforeAll, describe, expect, it } from 'vitest'
import { embedding, TOLERANCE } from '../../web/src/gpu/ops/embedding.ts'
import * as twin from '../../web/src/gpu/cpu/embedding.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { randomWeightBytes } from '../helpers/random-weights.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** (T, V, C) per block size: one token, repeats (V < T), odd vocabularies, a flat grid past 256 threads. */
const CASES_32: Array<[number, number, number]> = [[1, 1, 32], [5, 3, 96], [33, 7, 64], [300, 33, 32]]
const CASES_256: Array<[number, number, number]> = [[1, 1, 256], [5, 3, 512], [33, 7, 256]]
const DTYPES: Array<[WeightDType, Array<[number, number, number]>]> = [
  ['f16', [[1, 1, 1], [7, 11, 33], [300, 5, 3]]], ['bf16', [[1, 1, 1], [7, 11, 33], [300, 5, 3]]],
  ['q8_0', CASES_32], ['q4_0', CASES_32], ['q4_k', CASES_256], ['q5_k', CASES_256], ['q6_k', CASES_256]
]

describe('embedding from weight dtypes: GPU (shaders/embedding_quant.wgsl) vs CPU twin', () => {
  for (const [dtype, cases] of DTYPES) {
    for (const [T, V, C] of cases) {
      it(`${dtype} T=${T} V=${V} C=${C}`, async () => {
        const rng = new Rng(T * 31 + V * 7 + C)
        const ids = Int32Array.from({ length: T }, () => rng.int(V))
        const bytes = randomWeightBytes(rng, dtype, V, C)
        const ref = twin.embeddingWeights(ids, bytes, dtype, V, C)
        // The twin is the dequantized table's rows (dequant.ts is checked against gguf's own decoder).
        const full = dequantize(dtype, bytes, V * C)
        for (let t = 0; t < T; t++) expect(ref.subarray(t * C, (t + 1) * C)).toEqual(full.subarray(ids[t] * C, (ids[t] + 1) * C))
        const out = embedding(gpu.tensor(ids, [T], 'i32'), gpu.tensor(bytes, [V, C], dtype))
        expect(out.shape).toEqual([T, C])
        expect(out.dtype).toBe('f32')
        assertClose(await out.readF32(), ref, { ...TOLERANCE.embeddingQuant, what: `embedding ${dtype}` })
        const onCpu = embedding(cpu.tensor(ids, [T], 'i32'), cpu.tensor(bytes, [V, C], dtype))
        expect(onCpu.data).toEqual(ref)
      })
    }
  }

  it('clamps out-of-range ids on the GPU and throws naming them on the CPU', async () => {
    const rng = new Rng(5)
    const bytes = randomWeightBytes(rng, 'q4_0', 3, 32)
    const full = dequantize('q4_0', bytes, 96)
    const out = await embedding(gpu.tensor([-5, 9], [2], 'i32'), gpu.tensor(bytes, [3, 32], 'q4_0')).readF32()
    assertClose(out, Float32Array.from([...full.subarray(0, 32), ...full.subarray(64, 96)]), TOLERANCE.embeddingQuant)
    expect(() => embedding(cpu.tensor([0, 3], [2], 'i32'), cpu.tensor(bytes, [3, 32], 'q4_0'))).toThrow(/embedding: id 3 at position 1/)
  })

  it('names the op and the dtype for tables it cannot read', () => {
    const ids = gpu.tensor([0], [1], 'i32')
    expect(() => embedding(ids, gpu.tensor([1, 2], [1, 2], 'i32'))).toThrow(ShapeError)
    expect(() => embedding(ids, gpu.tensor([1, 2], [1, 2], 'i32'))).toThrow(/embedding: table must be a weight dtype .*got i32/)
  })
})
