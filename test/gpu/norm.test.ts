import { afterAll, describe, expect, it, beforeAll } from 'vitest'
import { layernorm, layernormBackward, rmsnorm, rmsnormBackward, rowThreads, rowThreadsCap, setRowThreadsCap, TOLERANCE } from '../../web/src/gpu/ops/norm.ts'
import * as twin from '../../web/src/gpu/cpu/norm.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { dot, f64, numericGrad } from '../helpers/grad-check.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/**
 * (rows, C): C = 1 and C around every row-workgroup size (32, 64, 128, 256), C past 256 and not
 * a multiple of it, a long row (4096), empty tensors, a rank-3 input.
 */
const SHAPES: number[][] = [[1, 1], [3, 1], [2, 7], [5, 33], [4, 65], [3, 127], [2, 256], [3, 257], [1, 4096], [0, 8], [4, 0], [2, 3, 40]]
const EPS = 1e-5

function data (shape: number[], seed: number): { x: Float32Array, w: Float32Array, b: Float32Array, dy: Float32Array, C: number } {
  const rng = new Rng(seed)
  const n = shape.reduce((p, d) => p * d, 1)
  const C = shape[shape.length - 1]
  // An offset mean exercises layernorm's two-pass variance.
  const x = rng.uniform(n, -2, 2).map(v => v + 0.5)
  return { x, w: rng.uniform(C, 0.5, 1.5), b: rng.uniform(C), dy: rng.uniform(n), C }
}

describe('row-kernel variant choice', () => {
  it('picks power-of-two row workgroups clamped to [32, cap]', () => {
    expect([1, 32, 33, 64, 65, 200, 256, 257, 4096].map(C => rowThreads(C))).toEqual([32, 32, 64, 64, 128, 256, 256, 256, 256])
    expect([1, 33, 65, 4096].map(C => rowThreads(C, 64))).toEqual([32, 64, 64, 64])
  })

  it('caps software adapters at 32 threads unless overridden', () => {
    expect(rowThreadsCap(gpu)).toBe(gpu.info.software ? 32 : 256)
    setRowThreadsCap(128)
    expect(rowThreadsCap(gpu)).toBe(128)
    setRowThreadsCap()
    expect(() => setRowThreadsCap(48)).toThrow(RangeError)
  })
})

/** The adapter's own choice, then 256 so every workgroup size (32…256) runs on any adapter. */
for (const cap of [undefined, 256]) {
  describe(`norm ops: GPU vs CPU twin, thread cap ${cap ?? 'from the adapter'} (shaders/norm.wgsl, shaders/norm_backward.wgsl)`, () => {
    beforeAll(() => { setRowThreadsCap(cap) })
    afterAll(() => { setRowThreadsCap() })

    for (const shape of SHAPES) {
      const label = `(${shape.join(', ')})`
      it(`rmsnorm and rmsnormBackward at ${label}`, async () => {
        const { x, w, dy, C } = data(shape, shape.length * 1000 + shape[shape.length - 1])
        const ref = twin.rmsnorm(x, w, C, EPS)
        const out = rmsnorm(gpu.tensor(x, shape), gpu.tensor(w, [C]), EPS)
        expect(out.shape).toEqual(shape)
        assertClose(await out.readF32(), ref, { ...TOLERANCE.rmsnorm, what: `rmsnorm ${label}` })
        const gref = twin.rmsnormBackward(x, w, dy, C, EPS)
        const g = rmsnormBackward(gpu.tensor(x, shape), gpu.tensor(w, [C]), gpu.tensor(dy, shape), EPS)
        assertClose(await g.dx.readF32(), gref.dx, { ...TOLERANCE.rmsnormBackward, what: `rmsnorm dx ${label}` })
        assertClose(await g.dw.readF32(), gref.dw, { ...TOLERANCE.rmsnormBackward, what: `rmsnorm dw ${label}` })
      })

      it(`layernorm and layernormBackward at ${label}`, async () => {
        const { x, w, b, dy, C } = data(shape, shape.length * 2000 + shape[shape.length - 1])
        const ref = twin.layernorm(x, w, b, C, EPS)
        const out = layernorm(gpu.tensor(x, shape), gpu.tensor(w, [C]), gpu.tensor(b, [C]), EPS)
        assertClose(await out.readF32(), ref, { ...TOLERANCE.layernorm, what: `layernorm ${label}` })
        const gref = twin.layernormBackward(x, w, dy, C, EPS)
        const g = layernormBackward(gpu.tensor(x, shape), gpu.tensor(w, [C]), gpu.tensor(dy, shape), EPS)
        assertClose(await g.dx.readF32(), gref.dx, { ...TOLERANCE.layernormBackward, what: `layernorm dx ${label}` })
        assertClose(await g.dw.readF32(), gref.dw, { ...TOLERANCE.layernormBackward, what: `layernorm dw ${label}` })
        assertClose(await g.db.readF32(), gref.db, { ...TOLERANCE.layernormBackward, what: `layernorm db ${label}` })
      })
    }

    it('dw sums over many rows (one channel thread loops over 300 rows)', async () => {
      const shape = [300, 5]
      const { x, w, b, dy, C } = data(shape, 42)
      const gref = twin.layernormBackward(x, w, dy, C, EPS)
      const g = layernormBackward(gpu.tensor(x, shape), gpu.tensor(w, [C]), gpu.tensor(dy, shape), EPS)
      assertClose(await g.dw.readF32(), gref.dw, { atol: 2e-4, rtol: 1e-4, what: 'dw over 300 rows' })
      assertClose(await g.db.readF32(), gref.db, { atol: 2e-4, rtol: 1e-4, what: 'db over 300 rows' })
      expect(b.length).toBe(C)
    })

    it('matches the Hugging Face LlamaRMSNorm formula on a hand-computed row', async () => {
      // x = (1, 2, 3, 4): mean(x²) = 7.5; y = w · x / √(7.5 + eps)
      const x = new Float32Array([1, 2, 3, 4])
      const w = new Float32Array([1, 0.5, 2, -1])
      const r = 1 / Math.sqrt(7.5 + EPS)
      const expected = [1 * r, 0.5 * 2 * r, 2 * 3 * r, -4 * r]
      assertClose(await rmsnorm(gpu.tensor(x, [1, 4]), gpu.tensor(w, [4]), EPS).readF32(), expected, { atol: 1e-6, rtol: 1e-6, what: 'llama rmsnorm' })
    })
  })
}

describe('norm backward twins vs finite differences of the forward twins', () => {
  const C = 6
  const rows = 3
  const rng = new Rng(11)
  const x = f64(rng.uniform(rows * C, -2, 2))
  const w = f64(rng.uniform(C, 0.5, 1.5))
  const b = f64(rng.uniform(C))
  const dy = f64(rng.uniform(rows * C))
  const opts = { atol: 1e-7, rtol: 1e-6 }

  it('rmsnormBackward', () => {
    const { dx, dw } = twin.rmsnormBackward(x, w, dy, C, EPS)
    assertClose(dx, numericGrad(v => dot(dy, twin.rmsnorm(v, w, C, EPS)), x), { ...opts, what: 'rms dx' })
    assertClose(dw, numericGrad(v => dot(dy, twin.rmsnorm(x, v, C, EPS)), w), { ...opts, what: 'rms dw' })
  })

  it('layernormBackward', () => {
    const { dx, dw, db } = twin.layernormBackward(x, w, dy, C, EPS)
    assertClose(dx, numericGrad(v => dot(dy, twin.layernorm(v, w, b, C, EPS)), x), { ...opts, what: 'ln dx' })
    assertClose(dw, numericGrad(v => dot(dy, twin.layernorm(x, v, b, C, EPS)), w), { ...opts, what: 'ln dw' })
    assertClose(db, numericGrad(v => dot(dy, twin.layernorm(x, w, v, C, EPS)), b), { ...opts, what: 'ln db' })
  })
})

describe('norm bad input', () => {
  it('names the op and shapes', () => {
    const x = gpu.tensor(new Float32Array(6), [2, 3])
    expect(() => rmsnorm(x, gpu.tensor(new Float32Array(4), [4]), EPS)).toThrow(ShapeError)
    expect(() => rmsnorm(x, gpu.tensor(new Float32Array(4), [4]), EPS)).toThrow(/rmsnorm: w must have shape \(3\), got \(4\)/)
    expect(() => layernorm(x, gpu.tensor(new Float32Array(3), [3]), gpu.tensor(new Float32Array(2), [2]), EPS)).toThrow(/layernorm: b must have shape \(3\), got \(2\)/)
    expect(() => rmsnormBackward(x, gpu.tensor(new Float32Array(3), [3]), gpu.tensor(new Float32Array(6), [3, 2]), EPS)).toThrow(/rmsnormBackward: shapes differ: \(2, 3\) vs \(3, 2\)/)
    expect(() => rmsnorm(cpu.tensor([1], []), cpu.tensor([1], [1]), EPS)).toThrow(/rmsnorm: x must have rank ≥ 1/)
    expect(() => rmsnorm(x, gpu.tensor(new Float32Array(3), [3]), -1)).toThrow(/rmsnorm: eps must be a finite number ≥ 0/)
    expect(() => layernormBackward(x, gpu.tensor([1, 2, 3], [3], 'i32'), x, EPS)).toThrow(/layernormBackward: w must be f32, got i32/)
  })
})
