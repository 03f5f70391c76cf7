import { describe, expect, it, beforeAll } from 'vitest'
import { embedding, embeddingBackward, IdRangeError, TOLERANCE, validateIds } from '../../web/src/gpu/ops/embedding.ts'
import * as twin from '../../web/src/gpu/cpu/embedding.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { dot, f64, numericGrad } from '../helpers/grad-check.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

function randomIds (rng: Rng, T: number, V: number): Int32Array {
  return Int32Array.from({ length: T }, () => rng.int(V))
}

/** (T, V, C): single token, repeats (V < T), C = 1, odd sizes, a flat dispatch past 256 threads, empties. */
const CASES: Array<[number, number, number]> = [[1, 1, 1], [5, 3, 1], [7, 11, 33], [33, 4, 65], [300, 257, 3], [0, 5, 4], [6, 5, 0], [64, 1, 8]]

describe('embedding: GPU vs CPU twin (shaders/embedding.wgsl, shaders/embedding_backward.wgsl)', () => {
  for (const [T, V, C] of CASES) {
    it(`embedding and embeddingBackward at T=${T} V=${V} C=${C}`, async () => {
      const rng = new Rng(T * 7 + V * 3 + C)
      const ids = randomIds(rng, T, V)
      const table = rng.uniform(V * C)
      const dy = rng.uniform(T * C)
      const out = embedding(gpu.tensor(ids, [T], 'i32'), gpu.tensor(table, [V, C]))
      expect(out.shape).toEqual([T, C])
      assertClose(await out.readF32(), twin.embedding(ids, table, V, C), { ...TOLERANCE.embedding, what: 'embedding' })
      const dtable = embeddingBackward(gpu.tensor(ids, [T], 'i32'), gpu.tensor(dy, [T, C]), V)
      expect(dtable.shape).toEqual([V, C])
      assertClose(await dtable.readF32(), twin.embeddingBackward(ids, dy, V, C), { ...TOLERANCE.embeddingBackward, what: 'embeddingBackward' })
    })
  }

  it('embeddingBackward is bitwise reproducible and zero for unused rows', async () => {
    const T = 200
    const V = 40
    const C = 9
    const rng = new Rng(99)
    const ids = Int32Array.from({ length: T }, () => rng.int(V / 2) * 2) // odd rows never used
    const dy = rng.uniform(T * C)
    const runs = await Promise.all([0, 1].map(async () => await embeddingBackward(gpu.tensor(ids, [T], 'i32'), gpu.tensor(dy, [T, C]), V).readF32()))
    expect(runs[0]).toEqual(runs[1])
    for (let v = 1; v < V; v += 2) expect([...runs[0].subarray(v * C, (v + 1) * C)].every(x => x === 0)).toBe(true)
  })
})

describe('embeddingBackward twin vs finite differences of the forward twin', () => {
  it('matches with repeated ids', () => {
    const [T, V, C] = [6, 4, 3]
    const ids = new Int32Array([2, 0, 2, 3, 2, 0])
    const rng = new Rng(4)
    const table = f64(rng.uniform(V * C))
    const dy = f64(rng.uniform(T * C))
    assertClose(twin.embeddingBackward(ids, dy, V, C), numericGrad(w => dot(dy, twin.embedding(ids, w, V, C)), table), { atol: 1e-9, rtol: 1e-9, what: 'dtable' })
  })
})

describe('embedding bad input', () => {
  it('validateIds names the op, position and id', () => {
    expect(() => validateIds(new Int32Array([0, 4, 1]), 4)).toThrow(IdRangeError)
    expect(() => validateIds(new Int32Array([0, 4, 1]), 4)).toThrow(/embedding: id 4 at position 1 is outside \[0, 4\)/)
    expect(() => validateIds(new Int32Array([-1]), 4, 'crossEntropy')).toThrow(/crossEntropy: id -1 at position 0/)
    expect(() => validateIds(new Int32Array([-100, 3]), 4, 'crossEntropy', -100)).not.toThrow()
    expect(new IdRangeError('x', 'y')).toBeInstanceOf(ShapeError)
  })

  it('the CPU path throws on out-of-range ids; the GPU path clamps', async () => {
    const table = new Float32Array([1, 2, 3, 4, 5, 6]) // (3, 2)
    expect(() => embedding(cpu.tensor([0, 3], [2], 'i32'), cpu.tensor(table, [3, 2]))).toThrow(/embedding: id 3 at position 1/)
    expect(() => embeddingBackward(cpu.tensor([-2], [1], 'i32'), cpu.tensor([1, 1], [1, 2]), 3)).toThrow(/embeddingBackward: id -2 at position 0/)
    const out = await embedding(gpu.tensor([-5, 9], [2], 'i32'), gpu.tensor(table, [3, 2])).readF32()
    expect([...out]).toEqual([1, 2, 5, 6])
  })

  it('names the op and shapes', () => {
    const ids = gpu.tensor([0, 1], [2], 'i32')
    expect(() => embedding(gpu.tensor([0, 1], [2], 'f32'), gpu.tensor(new Float32Array(4), [2, 2]))).toThrow(/embedding: ids must be i32, got f32/)
    expect(() => embedding(ids, gpu.tensor(new Float32Array(4), [4]))).toThrow(/embedding: table must have rank 2, got \(4\)/)
    expect(() => embeddingBackward(ids, gpu.tensor(new Float32Array(6), [3, 2]), 5)).toThrow(/embeddingBackward: dy must have shape \(2, \*\), got \(3, 2\)/)
    expect(() => embeddingBackward(ids, gpu.tensor(new Float32Array(4), [2, 2]), 0)).toThrow(/embeddingBackward: V = 0 leaves no valid id for 2 tokens/)
    expect(() => embeddingBackward(ids, gpu.tensor(new Float32Array(4), [2, 2]), 2.5)).toThrow(ShapeError)
  })
})
