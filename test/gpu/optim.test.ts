import { afterAll, describe, expect, it, beforeAll } from 'vitest'
import { setRowThreadsCap } from '../../web/src/gpu/ops/norm.ts'
import { adamw, clipGradNorm, sumSquares, TOLERANCE, type AdamWOptions } from '../../web/src/gpu/ops/optim.ts'
import * as twin from '../../web/src/gpu/cpu/optim.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

const OPTS: AdamWOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 }

describe('adamw: GPU vs CPU twin (shaders/optim.wgsl)', () => {
  for (const n of [0, 1, 3, 255, 257, 4099]) {
    it(`three steps at n=${n}`, async () => {
      const rng = new Rng(n + 17)
      const p = rng.uniform(n)
      const state = { p: p.slice(), m: new Float32Array(n), v: new Float32Array(n) }
      const tp = gpu.tensor(p, [n])
      const tm = gpu.zeros([n])
      const tv = gpu.zeros([n])
      for (let step = 1; step <= 3; step++) {
        const g = rng.uniform(n, -2, 2)
        const o = { ...OPTS, step }
        twin.adamw(state.p, g, state.m, state.v, o)
        adamw(tp, gpu.tensor(g, [n]), tm, tv, o)
      }
      assertClose(await tp.readF32(), state.p, { ...TOLERANCE.adamw, what: `param n=${n}` })
      assertClose(await tm.readF32(), state.m, { ...TOLERANCE.adamw, what: `m n=${n}` })
      assertClose(await tv.readF32(), state.v, { ...TOLERANCE.adamw, what: `v n=${n}` })
    })
  }

  it('first step matches the closed form p·(1 − lr·wd) − lr·g/(|g| + eps) on both backends', async () => {
    // With m = v = 0, bias correction gives m̂ = g and v̂ = g², so the step is lr·g/(|g| + eps).
    const p = new Float32Array([0.5, -1, 2, 0])
    const g = new Float32Array([0.3, -2, 1e-3, 5])
    const expected = Array.from(p, (x, i) => x * (1 - OPTS.lr * OPTS.weightDecay) - OPTS.lr * g[i] / (Math.abs(g[i]) + OPTS.eps))
    for (const be of [cpu, gpu] as Backend[]) {
      const tp = be.tensor(p, [4])
      adamw(tp, be.tensor(g, [4]), be.zeros([4]), be.zeros([4]), OPTS)
      assertClose(await tp.readF32(), expected, { atol: 1e-7, rtol: 1e-6, what: `${be.kind} closed form` })
    }
  })

  it('second step with a constant gradient is again lr·sign(g) (bias correction at step 2)', async () => {
    // m2 = (1 − β1²)g, v2 = (1 − β2²)g²: m̂ = g, v̂ = g² exactly.
    const g = new Float32Array([0.7, -0.2])
    const p = new Float32Array([1, 1])
    const tp = gpu.tensor(p, [2])
    const tm = gpu.zeros([2])
    const tv = gpu.zeros([2])
    const noDecay = { ...OPTS, weightDecay: 0 }
    adamw(tp, gpu.tensor(g, [2]), tm, tv, { ...noDecay, step: 1 })
    adamw(tp, gpu.tensor(g, [2]), tm, tv, { ...noDecay, step: 2 })
    assertClose(await tp.readF32(), [1 - 2e-3, 1 + 2e-3], { atol: 1e-6, rtol: 0, what: 'two steps' })
  })
})

describe('sumSquares and clipGradNorm (shaders/optim_reduce.wgsl)', () => {
  it('sumSquares agrees across workgroup sizes 32…256', async () => {
    const x = new Rng(5).uniform(9000)
    for (const cap of [32, 64, 128, 256]) {
      setRowThreadsCap(cap)
      assertClose(await sumSquares(gpu.tensor(x, [9000])).readF32(), [twin.sumSquares(x)], { ...TOLERANCE.sumSquares, what: `sumSquares wg${cap}` })
    }
    setRowThreadsCap()
  })

  for (const n of [0, 1, 3, 255, 256, 257, 4099, 70000]) {
    it(`sumSquares at n=${n}`, async () => {
      const x = new Rng(n + 3).uniform(n)
      const out = sumSquares(gpu.tensor(x, [n]))
      expect(out.shape).toEqual([1])
      assertClose(await out.readF32(), [twin.sumSquares(x)], { ...TOLERANCE.sumSquares, what: `sumSquares n=${n}` })
    })
  }

  it('sumSquares is bitwise reproducible', async () => {
    const x = new Rng(8).uniform(100_000)
    const a = await sumSquares(gpu.tensor(x, [100_000])).readF32()
    const b = await sumSquares(gpu.tensor(x, [100_000])).readF32()
    expect(a[0]).toBe(b[0])
  })

  for (const be of ['cpu', 'gpu'] as const) {
    it(`clipGradNorm on ${be}: returns the pre-clip norm and scales to maxNorm`, async () => {
      const back: Backend = be === 'cpu' ? cpu : gpu
      const rng = new Rng(12)
      const arrays = [rng.uniform(300), rng.uniform(7), rng.uniform(1), new Float32Array(0)]
      const norm = Math.sqrt(arrays.reduce((s, a) => s + twin.sumSquares(a), 0))
      const ts = arrays.map(a => back.tensor(a, [a.length]))
      const got = await clipGradNorm(ts, 1)
      assertClose([got], [norm], { ...TOLERANCE.clipGradNorm, what: 'norm' })
      expect(norm).toBeGreaterThan(1)
      const coef = 1 / (norm + 1e-6)
      for (let i = 0; i < arrays.length; i++) {
        assertClose(await ts[i].readF32(), arrays[i].map(v => v * coef), { ...TOLERANCE.clipGradNorm, what: `grad ${i}` })
      }
      const after = await clipGradNorm(ts, 1)
      assertClose([after], [1], { atol: 1e-5, rtol: 0, what: 'norm after clipping' })
      // Below maxNorm (and with Infinity): untouched
      const before = await ts[0].readF32()
      expect(await clipGradNorm(ts, 10)).toBeCloseTo(after, 5)
      expect(await clipGradNorm(ts, Infinity)).toBeCloseTo(after, 5)
      expect(await ts[0].readF32()).toEqual(before)
      expect(await clipGradNorm([], 1)).toBe(0)
    })
  }
})

describe('optim bad input', () => {
  it('adamw names the op and the problem', () => {
    const t = (): ReturnType<typeof gpu.zeros> => gpu.zeros([3])
    expect(() => adamw(t(), gpu.zeros([4]), t(), t(), OPTS)).toThrow(ShapeError)
    expect(() => adamw(t(), gpu.zeros([4]), t(), t(), OPTS)).toThrow(/adamw: shapes differ: \(3\) vs \(4\)/)
    const p = t()
    expect(() => adamw(p, t(), p, t(), OPTS)).toThrow(/adamw: param and m must be distinct tensors/)
    expect(() => adamw(t(), t(), t(), t(), { ...OPTS, step: 0 })).toThrow(/adamw: step must be an integer ≥ 1/)
    expect(() => adamw(t(), t(), t(), t(), { ...OPTS, beta2: 1 })).toThrow(/adamw: beta2 must be in \[0, 1\)/)
    expect(() => adamw(t(), t(), t(), gpu.zeros([3], 'i32'), OPTS)).toThrow(/adamw: v must be f32, got i32/)
  })

  it('clipGradNorm and sumSquares reject bad input', async () => {
    await expect(clipGradNorm([gpu.zeros([2])], NaN)).rejects.toThrow(/clipGradNorm: maxNorm must be ≥ 0/)
    await expect(clipGradNorm([gpu.zeros([2]), cpu.zeros([2])], 1)).rejects.toThrow(/clipGradNorm: inputs live on different backends/)
    expect(() => sumSquares(gpu.zeros([2], 'i32'))).toThrow(/sumSquares: t must be f32, got i32/)
  })
})
