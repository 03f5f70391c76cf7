import { afterAll, describe, expect, it, beforeAll } from 'vitest'
import { setRowThreadsCap } from '../../web/src/gpu/ops/norm.ts'
import { softmax, softmaxBackward, TOLERANCE } from '../../web/src/gpu/ops/softmax.ts'
import * as twin from '../../web/src/gpu/cpu/softmax.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { dot, f64, numericGrad } from '../helpers/grad-check.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Rows around every row-workgroup size (32…256), C = 1, a long row, empty tensors, rank 3. */
const SHAPES: number[][] = [[1, 1], [4, 1], [3, 7], [2, 33], [5, 65], [2, 127], [3, 257], [1, 4096], [0, 5], [3, 0], [2, 3, 17]]

/** The adapter's own choice, then 256 so every workgroup size (32…256) runs on any adapter. */
for (const cap of [undefined, 256]) {
  describe(`softmax: GPU vs CPU twin, thread cap ${cap ?? 'from the adapter'} (shaders/softmax.wgsl)`, () => {
    beforeAll(() => { setRowThreadsCap(cap) })
    afterAll(() => { setRowThreadsCap() })

    for (const shape of SHAPES) {
      const label = `(${shape.join(', ')})`
      it(`softmax and softmaxBackward at ${label}`, async () => {
        const n = shape.reduce((p, d) => p * d, 1)
        const C = shape[shape.length - 1]
        const rng = new Rng(n + C)
        const x = rng.uniform(n, -8, 8)
        const dy = rng.uniform(n)
        const y = softmax(gpu.tensor(x, shape))
        expect(y.shape).toEqual(shape)
        const yRef = twin.softmax(x, C)
        assertClose(await y.readF32(), yRef, { ...TOLERANCE.softmax, what: `softmax ${label}` })
        const dx = softmaxBackward(gpu.tensor(yRef, shape), gpu.tensor(dy, shape))
        assertClose(await dx.readF32(), twin.softmaxBackward(yRef, dy, C), { ...TOLERANCE.softmaxBackward, what: `softmaxBackward ${label}` })
      })
    }

    it('is stable for large logits (max-subtracted)', async () => {
      const x = new Float32Array([1e4, 1e4 + 1, 1e4 - 1, -1e4, 80, 100])
      const y = await softmax(gpu.tensor(x, [2, 3])).readF32()
      assertClose(y, twin.softmax(x, 3), { ...TOLERANCE.softmax, what: 'large logits' })
      expect(y.every(Number.isFinite)).toBe(true)
    })

    it('masks −∞ elements to 0 and turns a fully masked row into zeros', async () => {
      const C = 40
      const x = new Rng(5).uniform(3 * C, -3, 3)
      for (let c = 0; c < C; c += 3) x[c] = -Infinity // row 0: partly masked
      for (let c = 0; c < C; c++) x[C + c] = -Infinity // row 1: fully masked
      x[2 * C + 7] = -3.4028234663852886e38 // row 2: −F32_MAX counts as masked
      const y = await softmax(gpu.tensor(x, [3, C])).readF32()
      const ref = twin.softmax(x, C)
      assertClose(y, ref, { ...TOLERANCE.softmax, what: 'masked', matchNonFinite: true })
      expect(y[0]).toBe(0)
      expect([...y.subarray(C, 2 * C)].every(v => v === 0)).toBe(true)
      expect(y[2 * C + 7]).toBe(0)
      let s = 0
      for (let c = 0; c < C; c++) s += y[c]
      expect(s).toBeCloseTo(1, 5)
    })
  })
}

describe('softmaxBackward twin vs finite differences of the forward twin', () => {
  it('matches on a (3, 9) input', () => {
    const C = 9
    const rng = new Rng(21)
    const x = f64(rng.uniform(27, -3, 3))
    const dy = f64(rng.uniform(27))
    const dx = twin.softmaxBackward(twin.softmax(x, C), dy, C)
    assertClose(dx, numericGrad(v => dot(dy, twin.softmax(v, C)), x), { atol: 1e-9, rtol: 1e-7, what: 'dsoftmax' })
  })
})

describe('softmax bad input', () => {
  it('names the op and shapes', () => {
    expect(() => softmaxBackward(gpu.tensor(new Float32Array(6), [2, 3]), gpu.tensor(new Float32Array(6), [3, 2]))).toThrow(ShapeError)
    expect(() => softmaxBackward(gpu.tensor(new Float32Array(6), [2, 3]), gpu.tensor(new Float32Array(6), [3, 2]))).toThrow(/softmaxBackward: shapes differ: \(2, 3\) vs \(3, 2\)/)
    expect(() => softmax(cpu.tensor([1], []))).toThrow(/softmax: input must have rank ≥ 1/)
    expect(() => softmax(gpu.tensor([1, 2], [2], 'i32'))).toThrow(/softmax: input must be f32, got i32/)
  })
})
