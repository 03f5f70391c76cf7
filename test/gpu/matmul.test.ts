import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import * as twin from '../../web/src/gpu/cpu/matmul.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { linear, linearBackward, matmul, MATMUL_CONFIGS, matmulNaive, planMatmul, TOLERANCE, type MatmulConfig, type MatmulOptions } from '../../web/src/gpu/ops/matmul.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

const TOL = TOLERANCE.matmul

interface Case { aShape: number[], bShape: number[], transA?: boolean, transB?: boolean, bias?: boolean, alpha?: number }

/** Runs one case on the CPU twin and on the GPU (optionally forcing a config) and compares. */
async function check (c: Case, seed: number, config?: MatmulConfig): Promise<void> {
  const rng = new Rng(seed)
  const av = rng.uniform(c.aShape.reduce((p, d) => p * d, 1))
  const bv = rng.uniform(c.bShape.reduce((p, d) => p * d, 1))
  const N = c.transB === true ? c.bShape[c.bShape.length - 2] : c.bShape[c.bShape.length - 1]
  const biasV = c.bias === true ? rng.uniform(N) : undefined
  const opts = (be: typeof cpu | GpuBackend): MatmulOptions => ({
    transA: c.transA, transB: c.transB, alpha: c.alpha, config: be === cpu ? undefined : config,
    bias: biasV !== undefined ? be.tensor(biasV, [N]) : undefined
  })
  const ref = matmul(cpu.tensor(av, c.aShape), cpu.tensor(bv, c.bShape), opts(cpu))
  const out = matmul(gpu.tensor(av, c.aShape), gpu.tensor(bv, c.bShape), opts(gpu))
  expect(out.shape).toEqual(ref.shape)
  assertClose(await out.readF32(), ref.data as Float32Array, { ...TOL, what: `matmul ${JSON.stringify(c)} ${config?.kernel ?? 'auto'}` })
}

/** (M, N, K) triples: 1-element, odd, and non-multiples of every tile (4, 8, 16, 32, 64). */
const ODD: Array<[number, number, number]> = [
  [1, 1, 1], [3, 7, 5], [7, 3, 1], [2, 5, 33], [33, 65, 17], [65, 33, 127], [127, 129, 7], [129, 3, 65], [64, 64, 16]
]

describe('CPU twin (cpu/matmul.ts)', () => {
  it('matches a hand-computed product with every option', () => {
    // a (2, 3), b (3, 2): [[1,2,3],[4,5,6]]·[[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
    const a = new Float32Array([1, 2, 3, 4, 5, 6])
    const b = new Float32Array([1, 0, 0, 1, 1, 1])
    const d = { B: 1, M: 2, N: 2, K: 3, transA: false, transB: false, bBatched: false }
    expect([...twin.matmul(a, b, d)]).toEqual([4, 5, 10, 11])
    expect([...twin.matmul(a, b, d, new Float32Array([1, -1]), 2)]).toEqual([9, 9, 21, 21])
    // aᵀ stored (3, 2) = [[1,4],[2,5],[3,6]]; bᵀ stored (2, 3) = [[1,0,1],[0,1,1]]
    const at = new Float32Array([1, 4, 2, 5, 3, 6])
    const bt = new Float32Array([1, 0, 1, 0, 1, 1])
    expect([...twin.matmul(at, bt, { ...d, transA: true, transB: true })]).toEqual([4, 5, 10, 11])
  })
})

describe('matmul (shaders/matmul.wgsl) vs CPU twin', () => {
  for (const [name, cfg] of Object.entries(MATMUL_CONFIGS)) {
    if (cfg.kernel === 'gemv' || cfg.kernel === 'gemv4t' || cfg.kernel === 'vec4') continue
    it(`variant ${name}: odd shapes`, async () => {
      for (const [i, [M, N, K]] of ODD.entries()) await check({ aShape: [M, K], bShape: [K, N] }, 100 + i, cfg)
    })
    it(`variant ${name}: every trans combination, bias and alpha`, async () => {
      let seed = 200
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const [M, N, K] = [37, 70, 19]
          await check({ aShape: transA ? [K, M] : [M, K], bShape: transB ? [N, K] : [K, N], transA, transB }, seed++, cfg)
          await check({ aShape: transA ? [K, 5] : [5, K], bShape: transB ? [3, K] : [K, 3], transA, transB, bias: true, alpha: -0.5 }, seed++, cfg)
        }
      }
    })
    it(`variant ${name}: batched, with own and broadcast b`, async () => {
      await check({ aShape: [3, 9, 13], bShape: [3, 13, 6] }, 300, cfg)
      await check({ aShape: [4, 9, 13], bShape: [13, 70], bias: true }, 301, cfg)
      await check({ aShape: [2, 13, 9], bShape: [2, 6, 13], transA: true, transB: true, alpha: 3 }, 302, cfg)
    })
  }

  for (const name of ['vec4', 'vec4s'] as const) {
    const cfg = MATMUL_CONFIGS[name]
    it(`variant ${name} (K, N multiples of 4, untransposed): odd shapes, bias, alpha, batched`, async () => {
      const shapes: Array<[number, number, number]> = [[1, 4, 4], [3, 8, 4], [7, 4, 36], [33, 68, 20], [65, 12, 132], [127, 132, 8], [129, 4, 64], [9, 20, 0]]
      for (const [i, [M, N, K]] of shapes.entries()) await check({ aShape: [M, K], bShape: [K, N] }, 800 + i, cfg)
      await check({ aShape: [37, 12], bShape: [12, 76], bias: true, alpha: -0.5 }, 810, cfg)
      await check({ aShape: [3, 9, 12], bShape: [3, 12, 8] }, 811, cfg)
      await check({ aShape: [4, 9, 12], bShape: [12, 72], bias: true }, 812, cfg)
    })
  }

  it('vec4 variant refuses operands it cannot load as vec4', () => {
    const t = (shape: number[]): Tensor => gpu.tensor(new Float32Array(shape.reduce((p, d) => p * d, 1)), shape)
    expect(() => matmul(t([3, 6]), t([6, 8]), { config: MATMUL_CONFIGS.vec4 })).toThrow(/vec4 kernel needs untransposed operands with K % 4 = 0 and N % 4 = 0, got K 6, N 8/)
    expect(() => matmul(t([3, 8]), t([8, 6]), { config: MATMUL_CONFIGS.vec4 })).toThrow(ShapeError)
    expect(() => matmul(t([3, 8]), t([8, 8]), { config: MATMUL_CONFIGS.vec4, transB: true })).toThrow(/transB/)
  })

  it('gemv variant: M = 1 with every option, batched', async () => {
    const g = MATMUL_CONFIGS.gemv
    for (const [i, [N, K]] of [[1, 1], [3, 5], [7, 129], [65, 33], [129, 127], [300, 4]].entries()) {
      await check({ aShape: [1, K], bShape: [K, N] }, 400 + i, g)
      await check({ aShape: [1, K], bShape: [N, K], transB: true, bias: true, alpha: 0.25 }, 410 + i, g)
      await check({ aShape: [K, 1], bShape: [K, N], transA: true }, 420 + i, g)
    }
    await check({ aShape: [3, 1, 17], bShape: [3, 17, 9] }, 430, g)
    await check({ aShape: [3, 1, 17], bShape: [9, 17], transB: true, bias: true }, 431, g)
  })

  it('gemv4t variant: M = 1, b (N, K), K % 4 = 0, with every option, batched', async () => {
    const g = MATMUL_CONFIGS.gemv4t
    for (const [i, [N, K]] of [[1, 4], [3, 8], [7, 132], [65, 36], [129, 124], [300, 0]].entries()) {
      await check({ aShape: [1, K], bShape: [N, K], transB: true }, 440 + i, g)
      await check({ aShape: [1, K], bShape: [N, K], transB: true, bias: true, alpha: 0.25 }, 450 + i, g)
      await check({ aShape: [K, 1], bShape: [N, K], transA: true, transB: true }, 460 + i, g)
    }
    await check({ aShape: [3, 1, 20], bShape: [3, 9, 20], transB: true }, 470, g)
    await check({ aShape: [3, 1, 20], bShape: [9, 20], transB: true, bias: true }, 471, g)
    const t = (shape: number[]): Tensor => gpu.tensor(new Float32Array(shape.reduce((p, d) => p * d, 1)), shape)
    expect(() => matmul(t([1, 6]), t([5, 6]), { transB: true, config: g })).toThrow(/gemv4t kernel needs M = 1, b stored \(N, K\) \(transB\) and K % 4 = 0, got M 1, K 6/)
    expect(() => matmul(t([1, 8]), t([8, 5]), { config: g })).toThrow(/b not transposed/)
  })

  it('the builder picks gemv for M = 1 and tiles by adapter and size', () => {
    const sw = { software: true }
    const hw = { software: false }
    expect(planMatmul(sw, { B: 1, M: 1, N: 512, K: 512 }, false).config.kernel).toBe('gemv')
    expect(planMatmul(hw, { B: 4, M: 1, N: 512, K: 512 }, true).config.kernel).toBe('gemv')
    expect(planMatmul(hw, { B: 1, M: 1, N: 512, K: 512, transB: true }, true).config.kernel).toBe('gemv4t')
    expect(planMatmul(sw, { B: 1, M: 1, N: 512, K: 510, transB: true }, true).config.kernel).toBe('gemv')
    expect(planMatmul(sw, { B: 1, M: 1024, N: 1024, K: 1024 }, false).config).toMatchObject(MATMUL_CONFIGS.vec4)
    expect(planMatmul(sw, { B: 1, M: 16, N: 16, K: 1024 }, false).config).toMatchObject(MATMUL_CONFIGS.vec4s)
    expect(planMatmul(sw, { B: 1, M: 1024, N: 1024, K: 1024, transB: true }, false).config).toMatchObject(MATMUL_CONFIGS.regs8x8)
    expect(planMatmul(sw, { B: 1, M: 1024, N: 1022, K: 1024 }, false).config).toMatchObject(MATMUL_CONFIGS.regs8x8)
    expect(planMatmul(sw, { B: 1, M: 16, N: 16, K: 1023 }, false).config).toMatchObject(MATMUL_CONFIGS.regs8x8s)
    expect(planMatmul(hw, { B: 1, M: 1024, N: 1024, K: 64 }, false).config).toMatchObject(MATMUL_CONFIGS.tiled64)
    expect(planMatmul(hw, { B: 1, M: 64, N: 64, K: 64 }, false).config).toMatchObject(MATMUL_CONFIGS.tiled32)
    const p = planMatmul(sw, { B: 3, M: 100, N: 200, K: 7 }, true)
    expect(p.grid).toEqual([Math.ceil(200 / 64), Math.ceil(100 / 64), 3])
    expect(p.variant.key).toMatch(/bias/)
  })

  it('automatic choice: GEMV and matrix paths, odd shapes', async () => {
    await check({ aShape: [1, 77], bShape: [50, 77], transB: true, bias: true }, 500)
    await check({ aShape: [130, 66], bShape: [66, 131] }, 501)
    await check({ aShape: [130, 68], bShape: [68, 132], bias: true }, 503) // vec4 path
    await check({ aShape: [2, 5, 3], bShape: [3, 4] }, 502)
  })

  it('K = 0 gives zeros (plus bias); M = 0 or N = 0 give empty results', async () => {
    for (const be of [cpu, gpu] as const) {
      const z = matmul(be.tensor(new Float32Array(0), [3, 0]), be.tensor(new Float32Array(0), [0, 5]))
      expect(z.shape).toEqual([3, 5])
      expect([...await z.readF32()]).toEqual(new Array(15).fill(0))
      const zb = matmul(be.tensor(new Float32Array(0), [2, 0]), be.tensor(new Float32Array(0), [0, 2]), { bias: be.tensor([1, -2], [2]) })
      expect([...await zb.readF32()]).toEqual([1, -2, 1, -2])
      const zv = matmul(be.tensor(new Float32Array(0), [1, 0]), be.tensor(new Float32Array(0), [4, 0]), { transB: true })
      expect([...await zv.readF32()]).toEqual([0, 0, 0, 0])
      const em = matmul(be.tensor(new Float32Array(0), [0, 4]), be.tensor(new Float32Array(12), [4, 3]))
      expect(em.shape).toEqual([0, 3])
      expect((await em.readF32()).length).toBe(0)
      const en = matmul(be.tensor(new Float32Array(8), [2, 4]), be.tensor(new Float32Array(0), [4, 0]))
      expect(en.shape).toEqual([2, 0])
      const eb = matmul(be.tensor(new Float32Array(0), [0, 2, 4]), be.tensor(new Float32Array(12), [4, 3]))
      expect(eb.shape).toEqual([0, 2, 3])
    }
  })
})

describe('matmulNaive (shaders/matmul_naive.wgsl) vs CPU twin', () => {
  it('odd shapes', async () => {
    for (const [i, [M, N, K]] of [...ODD, [17, 16, 0] as [number, number, number]].entries()) {
      const rng = new Rng(600 + i)
      const av = rng.uniform(M * K); const bv = rng.uniform(K * N)
      const ref = twin.matmulNaive(av, bv, M, N, K)
      const out = matmulNaive(gpu.tensor(av, [M, K]), gpu.tensor(bv, [K, N]))
      assertClose(await out.readF32(), ref, { ...TOLERANCE.matmulNaive, what: `naive ${M}x${N}x${K}` })
    }
  })
})

describe('linear / linearBackward', () => {
  async function both (f: (be: typeof cpu | GpuBackend) => Record<string, Tensor | undefined>, what: string): Promise<void> {
    const ref = f(cpu)
    const out = f(gpu)
    for (const [k, r] of Object.entries(ref)) {
      if (r === undefined) { expect(out[k]).toBeUndefined(); continue }
      const o = out[k]!
      expect(o.shape).toEqual(r.shape)
      assertClose(await o.readF32(), r.data as Float32Array, { ...TOLERANCE.linearBackward, what: `${what} ${k}` })
    }
  }

  it('linear (HF layout) with and without bias, any leading dims', async () => {
    const rng = new Rng(700)
    const x = rng.uniform(2 * 3 * 19); const w = rng.uniform(11 * 19); const b = rng.uniform(11)
    await both(be => ({ y: linear(be.tensor(x, [2, 3, 19]), be.tensor(w, [11, 19]), be.tensor(b, [11])) }), 'linear bias')
    await both(be => ({ y: linear(be.tensor(x.subarray(0, 19), [19]), be.tensor(w, [11, 19])) }), 'linear vector')
    // y[t, o] = Σ_i x[t, i]·w[o, i] + b[o], by hand for one entry
    const y = linear(cpu.tensor(x, [6, 19]), cpu.tensor(w, [11, 19]), cpu.tensor(b, [11])).data as Float32Array
    let s = b[4]; for (let i = 0; i < 19; i++) s += x[2 * 19 + i] * w[4 * 19 + i]
    expect(y[2 * 11 + 4]).toBeCloseTo(s, 5)
  })

  it('linearBackward matches the twin and finite differences of linear', async () => {
    const rng = new Rng(701)
    const [T, I, O] = [5, 7, 3]
    const x = rng.uniform(T * I); const w = rng.uniform(O * I); const b = rng.uniform(O); const dy = rng.uniform(T * O)
    await both(be => ({ ...linearBackward(be.tensor(x, [T, I]), be.tensor(w, [O, I]), be.tensor(dy, [T, O]), true) }), 'linearBackward')
    await both(be => ({ ...linearBackward(be.tensor(x, [1, T, I]), be.tensor(w, [O, I]), be.tensor(dy, [1, T, O]), false) }), 'linearBackward nobias')
    // L = Σ dy ⊙ linear(x, w, b): central differences in f64 on the CPU twin.
    const loss = (xv: Float32Array, wv: Float32Array, bv: Float32Array): number => {
      const y = linear(cpu.tensor(xv, [T, I]), cpu.tensor(wv, [O, I]), cpu.tensor(bv, [O])).data as Float32Array
      let s = 0; for (let i = 0; i < y.length; i++) s += y[i] * dy[i]
      return s
    }
    const g = linearBackward(cpu.tensor(x, [T, I]), cpu.tensor(w, [O, I]), cpu.tensor(dy, [T, O]), true)
    const eps = 1e-2
    const fd = (v: Float32Array, i: number): number => {
      const p = v.slice(); p[i] += eps; const m = v.slice(); m[i] -= eps
      const args = (arr: Float32Array): [Float32Array, Float32Array, Float32Array] => v === x ? [arr, w, b] : v === w ? [x, arr, b] : [x, w, arr]
      return (loss(...args(p)) - loss(...args(m))) / (2 * eps)
    }
    for (const i of [0, 9, T * I - 1]) expect((g.dx.data as Float32Array)[i]).toBeCloseTo(fd(x, i), 3)
    for (const i of [0, 5, O * I - 1]) expect((g.dw.data as Float32Array)[i]).toBeCloseTo(fd(w, i), 3)
    for (const i of [0, O - 1]) expect((g.db!.data as Float32Array)[i]).toBeCloseTo(fd(b, i), 3)
  })
})

describe('bad input throws ShapeError naming the op and shapes', () => {
  it('matmul', () => {
    const t = (shape: number[], dtype: 'f32' | 'i32' = 'f32'): Tensor => gpu.tensor(new (dtype === 'f32' ? Float32Array : Int32Array)(shape.reduce((p, d) => p * d, 1)), shape, dtype)
    expect(() => matmul(t([2, 3]), t([4, 5]))).toThrow(ShapeError)
    expect(() => matmul(t([2, 3]), t([4, 5]))).toThrow(/matmul: inner dimensions differ: a \(2, 3\) · b \(4, 5\)/)
    expect(() => matmul(t([2, 3]), t([5, 4]), { transB: true })).toThrow(/matmul: inner dimensions differ.*\(5, 4\)ᵀ/)
    expect(() => matmul(t([2, 3], 'i32'), t([3, 5]))).toThrow(/matmul: a must be f32, got i32/)
    expect(() => matmul(t([3]), t([3, 5]))).toThrow(/matmul: a must have rank 2 or 3, got \(3\)/)
    expect(() => matmul(t([1, 2, 3, 4]), t([4, 5]))).toThrow(ShapeError)
    expect(() => matmul(t([2, 3]), t([2, 3, 5]))).toThrow(/matmul: batched b \(2, 3, 5\) needs a with the same batch, got a \(2, 3\)/)
    expect(() => matmul(t([2, 2, 3]), t([3, 3, 5]))).toThrow(ShapeError)
    expect(() => matmul(t([2, 3]), t([3, 5]), { bias: t([4]) })).toThrow(/matmul: bias must have shape \(5\), got \(4\)/)
    expect(() => matmul(t([2, 3]), t([3, 5]), { config: MATMUL_CONFIGS.gemv })).toThrow(/gemv kernel needs M = 1/)
    expect(() => matmul(t([2, 3]), t([3, 5]), { config: { ...MATMUL_CONFIGS.regs8x8, tm: 1 } })).toThrow(/regs kernel takes tm 4 or 8/)
    expect(() => matmul(t([2, 3]), cpu.tensor(new Float32Array(15), [3, 5]))).toThrow(/different backends/)
  })
  it('linear / linearBackward / matmulNaive', () => {
    const t = (shape: number[]): Tensor => gpu.tensor(new Float32Array(shape.reduce((p, d) => p * d, 1)), shape)
    expect(() => linear(t([4, 3]), t([5, 4]))).toThrow(/linear: x \(4, 3\) has 3 features but w \(5, 4\) expects 4/)
    expect(() => linear(t([4, 3]), t([3]))).toThrow(ShapeError)
    expect(() => linear(gpu.tensor(new Int32Array(3), [3], 'i32'), t([2, 3]))).toThrow(/linear: x must be f32, got i32/)
    expect(() => linearBackward(t([4, 3]), t([5, 3]), t([4, 4]), false)).toThrow(/linearBackward: dy must have shape \(4, 5\), got \(4, 4\)/)
    expect(() => matmulNaive(t([2, 3]), t([4, 5]))).toThrow(/matmulNaive: inner dimensions differ/)
  })
})
