import { beforeAll, describe, expect, it } from 'vitest'
import { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import { SplitTensorError, TensorTooLargeError } from '../../web/src/gpu/errors.ts'
import { add } from '../../web/src/gpu/ops/elementwise.ts'
import { embedding } from '../../web/src/gpu/ops/embedding.ts'
import { linear, TOLERANCE as MATMUL_TOLERANCE } from '../../web/src/gpu/ops/matmul.ts'
import { expertFFN, expertFFNBackward, TOLERANCE as MOE_TOLERANCE } from '../../web/src/gpu/ops/moe.ts'
import { rmsnorm } from '../../web/src/gpu/ops/norm.ts'
import { planRowParts, rowParts } from '../../web/src/gpu/split.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { hostWeights, randomWeightBytes } from '../helpers/random-weights.ts'

/** An activation larger than the forced limit, kept whole (empty + write: uploads above it would split). */
function activation (be: GpuBackend, data: Float32Array, shape: number[]): Tensor {
  const t = be.empty(shape)
  be.write(t, data)
  return t
}

/** The forced binding limit: every weight below is a few times larger. */
const LIMIT = 4096

let whole: GpuBackend // the device's own limits: nothing in this file is split there
let small: GpuBackend // maxBindingBytes = LIMIT
beforeAll(async () => {
  whole = await testGpu()
  small = await GpuBackend.create({ maxBindingBytes: LIMIT })
})

describe('planRowParts', () => {
  it('uses the fewest parts, balanced to within one row', () => {
    expect(planRowParts(10, 100, 350, 'w')).toEqual([3, 3, 2, 2])
    expect(planRowParts(10, 100, 1000, 'w')).toEqual([10])
    expect(planRowParts(7, 1, 1, 'w')).toEqual([1, 1, 1, 1, 1, 1, 1])
  })

  it('refuses a row larger than the limit, naming the tensor', () => {
    expect(() => planRowParts(3, 500, 400, 'f32 tensor (3, 125)')).toThrow(TensorTooLargeError)
    expect(() => planRowParts(3, 500, 400, 'f32 tensor (3, 125)')).toThrow(/f32 tensor \(3, 125\): one row along dim 0 is 500 bytes, more than the 400-byte binding limit/)
  })
})

describe('split storage (maxBindingBytes = 4 KiB)', () => {
  it('stores a large upload as whole-row parts and reads, writes and reshapes it as one tensor', async () => {
    const rng = new Rng(1)
    const data = rng.uniform(64 * 33) // 8448 bytes → 3 parts of 22, 21, 21 rows
    const t = small.tensor(data, [64, 33])
    expect(t.split).toBe(true)
    expect(rowParts(t).map(p => [p.row0, p.rows, p.t.storage.bytes])).toEqual([[0, 22, 22 * 132], [22, 21, 21 * 132], [43, 21, 21 * 132]])
    expect(await t.readF32()).toEqual(data)
    const next = rng.uniform(64 * 33)
    small.write(t, next)
    expect(await t.readF32()).toEqual(next)
    const view = t.reshape([64, 3, 11])
    expect(view.split).toBe(true)
    expect(await view.readF32()).toEqual(next)
    expect(() => t.reshape([32, 66])).toThrow(SplitTensorError)
    view.dispose()
    expect(await t.readF32()).toEqual(next) // the view held its own references
    const before = small.pool.stats.inUseBytes
    t.dispose()
    expect(small.pool.stats.inUseBytes).toBeLessThan(before)
    expect(whole.tensor(data, [64, 33]).split).toBe(false)
  })

  it('keeps GGUF block rows whole and reads back the bytes', async () => {
    const rng = new Rng(2)
    const bytes = randomWeightBytes(rng, 'q6_k', 33, 256) // 210 B rows, 6930 B → 2 parts
    const t = small.tensor(bytes, [33, 256], 'q6_k')
    expect(rowParts(t).map(p => p.rows)).toEqual([17, 16])
    expect(await t.read()).toEqual(bytes)
  })

  it('refuses what cannot be split: a rank-1 tensor or a row above the limit', () => {
    expect(() => small.tensor(new Float32Array(2048), [2048])).toThrow(/rank ≥ 2/)
    expect(() => small.tensor(new Float32Array(2 * 1100), [2, 1100])).toThrow(TensorTooLargeError)
  })

  it('every op that does not loop over parts refuses a split tensor, naming the op', () => {
    const w = small.tensor(new Float32Array(2048), [2, 1024])
    expect(() => add(w, w)).toThrow(SplitTensorError)
    expect(() => add(w, w)).toThrow(/^add: a f32 input \(2, 1024\) is split into row parts/)
    expect(() => rmsnorm(small.tensor(new Float32Array(8), [8]), w, 1e-5)).toThrow(/^rmsnorm: /)
    expect(() => small.copy(w, small.empty([2, 1024]))).toThrow(/copy: f32 tensor \(2, 1024\) is split/)
    expect(() => w.buffer).toThrow(SplitTensorError)
  })
})

describe('uploads of 1 MiB or more', () => {
  it('take an exact-size buffer (no size class), destroyed once released without disturbing queued work', async () => {
    const n = (1 << 18) + 3 // 1 MiB + 12 bytes: its size class would be 1.5 MiB
    const data = new Rng(4).uniform(n)
    const before = whole.pool.stats.inUseBytes
    const t = whole.tensor(data, [1, n])
    expect(t.buffer.size).toBe(n * 4)
    expect(whole.pool.stats.inUseBytes - before).toBe(n * 4)
    const y = add(t, t) // encoded, not yet submitted
    t.dispose()
    const got = await y.readF32()
    expect(got).toEqual(data.map(x => x + x))
    y.dispose()
  })
})

/** (dtype, V, C): tables of 2–3 parts at the forced limit. */
const TABLES: Array<[WeightDType, number, number]> = [['f32', 200, 8], ['f16', 300, 9], ['bf16', 257, 8], ['q8_0', 150, 32], ['q4_0', 250, 32], ['q4_k', 40, 256], ['q5_k', 30, 256], ['q6_k', 33, 256]]

describe('embedding from a split table equals the unsplit gather', () => {
  for (const [dtype, V, C] of TABLES) {
    it(`${dtype} (${V}, ${C})`, async () => {
      const rng = new Rng(V + C)
      const bytes = randomWeightBytes(rng, dtype, V, C)
      const table = small.tensor(hostWeights(bytes, dtype), [V, C], dtype)
      expect(rowParts(table).length).toBeGreaterThan(1)
      const bounds = rowParts(table).flatMap(p => [p.row0, p.row0 + p.rows - 1])
      const ids = Int32Array.from([...bounds, ...Array.from({ length: 20 }, () => rng.int(V)), -3, V + 5])
      const T = ids.length
      const got = await embedding(small.tensor(ids, [T], 'i32'), table).readF32()
      const want = await embedding(whole.tensor(ids, [T], 'i32'), whole.tensor(hostWeights(bytes, dtype), [V, C], dtype)).readF32()
      expect(got).toEqual(want)
    })
  }
})

/** Expert stacks of 2–7 parts of whole experts: (dtypes of w1, w3, w2), shapes, and the limit. */
const EXPERTS: Array<{ d: [WeightDType, WeightDType, WeightDType], E: number, I: number, C: number, limit: number }> = [
  { d: ['f32', 'f32', 'f32'], E: 5, I: 16, C: 32, limit: LIMIT }, // 2 KiB experts → parts of 2, 2, 1
  { d: ['f16', 'bf16', 'f16'], E: 6, I: 16, C: 64, limit: LIMIT },
  { d: ['q4_k', 'q4_k', 'q8_0'], E: 7, I: 32, C: 256, limit: 4 * LIMIT } // w1/w3: 3, 2, 2 experts; w2: 7 parts
]

describe('expertFFN on split experts equals the unsplit result', () => {
  const backends = new Map<number, GpuBackend>()
  beforeAll(async () => {
    backends.set(LIMIT, small)
    backends.set(4 * LIMIT, await GpuBackend.create({ maxBindingBytes: 4 * LIMIT }))
  })

  for (const { d, E, I, C, limit } of EXPERTS) {
    it(`${d.join('/')} E=${E} I=${I} C=${C}, limit ${limit} B`, async () => {
      const g = backends.get(limit) as GpuBackend
      const rng = new Rng(E * I + C)
      const N = 23
      const xs = rng.uniform(N * C)
      const cuts = Array.from({ length: E - 1 }, () => rng.int(N + 1)).sort((a, b) => a - b)
      const offsets = Int32Array.from([0, ...cuts, N])
      const shapes = [[E, I, C], [E, I, C], [E, C, I]]
      const bytes = d.map((dtype, i) => randomWeightBytes(rng, dtype, shapes[i][0] * shapes[i][1], shapes[i][2], [-13, -11]))
      const run = (be: GpuBackend): { ys: Tensor, ws: Tensor[] } => {
        const ws = d.map((dtype, i) => be.tensor(hostWeights(bytes[i], dtype), shapes[i], dtype))
        return { ys: expertFFN(activation(be, xs, [N, C]), be.tensor(offsets, [E + 1], 'i32'), ws[0], ws[1], ws[2]), ws }
      }
      const split = run(g)
      expect(split.ws.map(w => rowParts(w).length).every(n => n > 1)).toBe(true)
      const got = await split.ys.readF32()
      const want = await run(whole).ys.readF32()
      // Quantized stacks take the same kernels split or not (bitwise equal); f32 ones unsplit take the fused kernels.
      if (d[0] === 'f32') assertClose(got, want, MOE_TOLERANCE.expertFFNQuant)
      else expect(got).toEqual(want)
      const x = activation(g, xs, [N, C])
      if (d[0] === 'f32') expect(() => expertFFNBackward(x, g.tensor(offsets, [E + 1], 'i32'), split.ws[0], split.ws[1], split.ws[2], x)).toThrow(/^expertFFNBackward: a f32 input \(5, 16, 32\) is split/)
    })
  }
})

/** (dtype, N out features, K in features): weights of 2–4 row parts at the forced limit. */
const LINEAR_WEIGHTS: Array<[WeightDType, number, number]> = [['f32', 70, 33], ['f16', 300, 8], ['q8_0', 130, 32], ['q4_k', 33, 256]]

describe('linear on a split weight equals the unsplit result (each part writes its own output columns)', () => {
  for (const [dtype, N, K] of LINEAR_WEIGHTS) {
    it(`${dtype} (${N}, ${K}), M = 1 (GEMV, with bias) and 12 (tiled)`, async () => {
      const rng = new Rng(N * K)
      const bytes = randomWeightBytes(rng, dtype, N, K, [-13, -11])
      const w = small.tensor(hostWeights(bytes, dtype), [N, K], dtype)
      expect(rowParts(w).length).toBeGreaterThan(1)
      const wWhole = whole.tensor(hostWeights(bytes, dtype), [N, K], dtype)
      const bias = rng.uniform(N)
      for (const [M, withBias] of [[1, true], [12, false]] as const) {
        const x = rng.uniform(M * K)
        const got = await linear(activation(small, x, [M, K]), w, withBias ? small.tensor(bias, [N]) : undefined).readF32()
        const want = await linear(activation(whole, x, [M, K]), wWhole, withBias ? whole.tensor(bias, [N]) : undefined).readF32()
        assertClose(got, want, { ...MATMUL_TOLERANCE.linear, what: `linear ${dtype} M=${M}${withBias ? ' bias' : ''}` })
      }
    })
  }
})
