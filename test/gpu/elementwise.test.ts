import { describe, expect, it, beforeAll } from 'vitest'
import {
  add, addInPlace, addScaled, gelu, geluBackward, mul, scale, scaleInPlace, silu, siluBackward, sub, swiglu, swigluBackward,
  ELEMENTWISE, ELEMENTWISE_ENTRIES, elementwiseVariant, TOLERANCE, type GeluApprox
} from '../../web/src/gpu/ops/elementwise.ts'
import * as twin from '../../web/src/gpu/cpu/elementwise.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { dot, f64, numericGrad } from '../helpers/grad-check.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Sizes around the 256-thread workgroup, plus empty and single-element edges. */
const SIZES = [0, 1, 3, 255, 256, 257, 4099]

/** Inputs in [-6, 6]; `extremes` adds values that overflow a naive exp(−x) or tanh. */
function inputs (rng: Rng, n: number, extremes = true): Float32Array {
  const x = rng.uniform(n, -6, 6)
  const special = extremes ? [-100, 100, -20, 20, 0, -0.5] : [0]
  for (let i = 0; i < Math.min(n, special.length); i++) x[(i * 7919) % n] = special[i]
  return x
}

interface Case {
  name: keyof typeof TOLERANCE
  arity: number
  /** Transcendental: also fed extreme values. Arithmetic ops keep |x| ≤ 6 so TOLERANCE's atol fits. */
  activation?: boolean
  run: (be: Backend, xs: Float32Array[], shape: number[]) => Tensor
}

const t = (be: Backend, x: Float32Array, shape: number[]): Tensor => be.tensor(x, shape)

const CASES: Case[] = [
  { name: 'add', arity: 2, run: (be, [a, b], s) => add(t(be, a, s), t(be, b, s)) },
  { name: 'sub', arity: 2, run: (be, [a, b], s) => sub(t(be, a, s), t(be, b, s)) },
  { name: 'mul', arity: 2, run: (be, [a, b], s) => mul(t(be, a, s), t(be, b, s)) },
  { name: 'scale', arity: 1, run: (be, [a], s) => scale(t(be, a, s), -0.37) },
  { name: 'addScaled', arity: 2, run: (be, [a, b], s) => addScaled(t(be, a, s), t(be, b, s), 1.7) },
  { name: 'silu', activation: true, arity: 1, run: (be, [a], s) => silu(t(be, a, s)) },
  { name: 'siluBackward', activation: true, arity: 2, run: (be, [a, b], s) => siluBackward(t(be, a, s), t(be, b, s)) },
  { name: 'swiglu', activation: true, arity: 2, run: (be, [a, b], s) => swiglu(t(be, a, s), t(be, b, s)) },
  { name: 'addInPlace', arity: 2, run: (be, [a, b], s) => { const d = t(be, a, s); addInPlace(d, t(be, b, s)); return d } },
  { name: 'scaleInPlace', arity: 1, run: (be, [a], s) => { const d = t(be, a, s); scaleInPlace(d, 3.1); return d } }
]

async function read (x: Tensor): Promise<Float32Array> { return await x.readF32() }

describe('elementwise ops: GPU vs CPU twin (shaders/elementwise.wgsl)', () => {
  it('compiles every entry in both GELU forms', async () => {
    for (const entry of ELEMENTWISE_ENTRIES) {
      for (const approx of ['tanh', 'erf'] as GeluApprox[]) await gpu.prepare(ELEMENTWISE, elementwiseVariant(entry, approx))
    }
  })

  for (const c of CASES) {
    it(`${c.name} at n = ${SIZES.join(', ')}`, async () => {
      for (const n of SIZES) {
        const rng = new Rng(n * 31 + c.arity)
        const xs = Array.from({ length: c.arity }, () => inputs(rng, n, c.activation === true))
        const ref = c.run(cpu, xs, [n]).data as Float32Array
        assertClose(await read(c.run(gpu, xs, [n])), ref, { ...TOLERANCE[c.name], what: `${c.name} n=${n}`, matchNonFinite: true })
      }
    })
  }

  for (const approx of ['tanh', 'erf'] as GeluApprox[]) {
    it(`gelu and geluBackward (${approx}) at n = ${SIZES.join(', ')}`, async () => {
      for (const n of SIZES) {
        const rng = new Rng(n + 5)
        const x = inputs(rng, n)
        const dy = rng.uniform(n)
        assertClose(await read(gelu(gpu.tensor(x, [n]), approx)), twin.gelu(x, approx), { ...TOLERANCE.gelu, what: `gelu ${approx} n=${n}` })
        assertClose(await read(geluBackward(gpu.tensor(x, [n]), gpu.tensor(dy, [n]), approx)), twin.geluBackward(x, dy, approx),
          { ...TOLERANCE.geluBackward, what: `geluBackward ${approx} n=${n}` })
      }
    })
  }

  it('gelu erf keeps relative accuracy in the negative tail (erfc form)', async () => {
    const x = new Float32Array(Array.from({ length: 41 }, (_, i) => -8 + i * 0.1)) // [-8, -4]
    const ref = twin.gelu(x, 'erf')
    assertClose(await read(gelu(gpu.tensor(x, [41]), 'erf')), ref, { atol: 1e-30, rtol: 2e-5, what: 'gelu erf tail' })
  })

  it('swigluBackward matches its twin on odd shapes', async () => {
    for (const shape of [[0, 3], [1, 1], [7, 33], [3, 5, 65]]) {
      const n = shape.reduce((p, d) => p * d, 1)
      const rng = new Rng(n + 9)
      const [g, u, dy] = [inputs(rng, n), rng.uniform(n, -3, 3), rng.uniform(n)]
      const ref = twin.swigluBackward(g, u, dy)
      const out = swigluBackward(gpu.tensor(g, shape), gpu.tensor(u, shape), gpu.tensor(dy, shape))
      expect(out.dGate.shape).toEqual(shape)
      assertClose(await read(out.dGate), ref.dGate, { ...TOLERANCE.swigluBackward, what: `dGate ${shape.join('x')}` })
      assertClose(await read(out.dUp), ref.dUp, { ...TOLERANCE.swigluBackward, what: `dUp ${shape.join('x')}` })
    }
  })

  it('addInPlace(t, t) doubles t on both backends', async () => {
    const x = new Rng(3).uniform(300)
    for (const be of [cpu, gpu] as Backend[]) {
      const d = be.tensor(x, [300])
      addInPlace(d, d)
      assertClose(await read(d), twin.scale(x, 2), { atol: 0, rtol: 0, what: `${be.kind} t += t` })
    }
  })

  it('keeps the input shape', () => {
    const a = gpu.tensor(new Float32Array(6), [2, 3])
    expect(silu(a).shape).toEqual([2, 3])
    expect(add(a, a).shape).toEqual([2, 3])
  })
})

describe('elementwise backward twins vs finite differences of the forward twins', () => {
  const n = 40
  const rng = new Rng(77)
  const x = f64(rng.uniform(n, -5, 5))
  const up = f64(rng.uniform(n, -2, 2))
  const dy = f64(rng.uniform(n))

  it('siluBackward', () => {
    assertClose(twin.siluBackward(x, dy), numericGrad(v => dot(dy, twin.silu(v)), x), { atol: 1e-8, rtol: 1e-7, what: 'dsilu' })
  })

  for (const approx of ['tanh', 'erf'] as GeluApprox[]) {
    it(`geluBackward (${approx})`, () => {
      assertClose(twin.geluBackward(x, dy, approx), numericGrad(v => dot(dy, twin.gelu(v, approx)), x), { atol: 1e-8, rtol: 1e-7, what: `dgelu ${approx}` })
    })
  }

  it('swigluBackward', () => {
    const { dGate, dUp } = twin.swigluBackward(x, up, dy)
    assertClose(dGate, numericGrad(g => dot(dy, twin.swiglu(g, up)), x), { atol: 1e-8, rtol: 1e-7, what: 'dGate' })
    assertClose(dUp, numericGrad(u => dot(dy, twin.swiglu(x, u)), up), { atol: 1e-8, rtol: 1e-7, what: 'dUp' })
  })

  it('erfc twin is relatively accurate in the tail', () => {
    // erfc(5) = 1.5374597944280349e-12, erfc(10) = 2.088487583762545e-45 (mpmath)
    assertClose([twin.erfc(5), twin.erfc(10), twin.erfc(-5)], [1.5374597944280349e-12, 2.088487583762545e-45, 2 - 1.5374597944280349e-12], { atol: 0, rtol: 1e-13, what: 'erfc' })
  })

  it('erf twin matches reference values', () => {
    // erf at 0, 0.5, 1, 2, 3, 4.5, -1.5 (Abramowitz & Stegun table 7.1 / mpmath)
    const xs = [0, 0.5, 1, 2, 3, 4.5, -1.5]
    const ref = [0, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527, 0.9999779095030014, 0.9999999998033839, -0.9661051464753108]
    assertClose(xs.map(twin.erf), ref, { atol: 1e-14, rtol: 0, what: 'erf' })
  })
})

describe('elementwise bad input', () => {
  it('names the op and shapes on a mismatch', () => {
    expect(() => add(gpu.tensor([1, 2], [2]), gpu.tensor([1, 2, 3], [3]))).toThrow(ShapeError)
    expect(() => add(gpu.tensor([1, 2], [2]), gpu.tensor([1, 2, 3], [3]))).toThrow(/add: shapes differ: \(2\) vs \(3\)/)
    expect(() => swigluBackward(cpu.tensor([1], [1]), cpu.tensor([1], [1]), cpu.tensor([1, 2], [2]))).toThrow(/swigluBackward: shapes differ: \(1\) vs \(2\)/)
    expect(() => addInPlace(gpu.tensor([1, 2], [1, 2]), gpu.tensor([1, 2], [2, 1]))).toThrow(/addInPlace: shapes differ: \(1, 2\) vs \(2, 1\)/)
  })

  it('rejects non-f32 inputs, mixed backends, bad scalars and unknown approximations', () => {
    expect(() => silu(gpu.tensor([1, 2], [2], 'i32'))).toThrow(/silu: input 0 must be f32, got i32/)
    expect(() => mul(cpu.tensor([1], [1]), gpu.tensor([1], [1]))).toThrow(/mul: inputs live on different backends/)
    expect(() => scale(cpu.tensor([1], [1]), NaN)).toThrow(/scale: scalar must be finite/)
    expect(() => gelu(cpu.tensor([1], [1]), 'fast' as GeluApprox)).toThrow(/gelu: approx must be 'tanh' or 'erf'/)
  })
})
