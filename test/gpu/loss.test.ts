import { afterAll, describe, expect, it, beforeAll } from 'vitest'
import { setRowThreadsCap } from '../../web/src/gpu/ops/norm.ts'
import { crossEntropy, crossEntropyBackward, IGNORE_INDEX, TOLERANCE } from '../../web/src/gpu/ops/loss.ts'
import * as twin from '../../web/src/gpu/cpu/loss.ts'
import { IdRangeError } from '../../web/src/gpu/cpu/embedding.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { f64, numericGrad } from '../helpers/grad-check.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Targets in [0, V) with roughly a fifth ignored. */
function targetsFor (rng: Rng, T: number, V: number, ignoreShare = 0.2): Int32Array {
  return Int32Array.from({ length: T }, () => rng.next() < ignoreShare ? IGNORE_INDEX : rng.int(V))
}

/** (T, V): V = 1, every row-workgroup size (32, 64, 128, 256), non-powers of two (257, 32000), T past one reduction workgroup (300), T = 0. */
const CASES: Array<[number, number]> = [[1, 1], [3, 7], [6, 100], [5, 256], [4, 257], [300, 33], [2, 32000], [0, 10]]

/** The adapter's own choice, then 256 so every workgroup size (32…256) runs on any adapter. */
for (const cap of [undefined, 256]) {
  describe(`crossEntropy: GPU vs CPU twin, thread cap ${cap ?? 'from the adapter'} (shaders/loss.wgsl)`, () => {
    beforeAll(() => { setRowThreadsCap(cap) })
    afterAll(() => { setRowThreadsCap() })

    for (const [T, V] of CASES) {
      it(`loss and dlogits at T=${T} V=${V}`, async () => {
        const rng = new Rng(T * 13 + V)
        const logits = rng.uniform(T * V, -4, 4)
        const targets = targetsFor(rng, T, V)
        const ref = twin.crossEntropy(logits, targets, V, IGNORE_INDEX)
        const loss = crossEntropy(gpu.tensor(logits, [T, V]), gpu.tensor(targets, [T], 'i32'))
        expect(loss.shape).toEqual([1])
        assertClose(await loss.readF32(), [ref], { ...TOLERANCE.crossEntropy, what: `loss T=${T} V=${V}` })
        const d = crossEntropyBackward(gpu.tensor(logits, [T, V]), gpu.tensor(targets, [T], 'i32'))
        assertClose(await d.readF32(), twin.crossEntropyBackward(logits, targets, V, IGNORE_INDEX), { ...TOLERANCE.crossEntropyBackward, what: `dlogits T=${T} V=${V}` })
      })
    }

    it('is stable for large logits and matches a hand-computed value', async () => {
      // Row 0: logits (1000, 1000) → loss log 2; row 1: (0, ln 3) target 1 → log(4/3)
      const logits = new Float32Array([1000, 1000, 0, Math.log(3)])
      const loss = await crossEntropy(gpu.tensor(logits, [2, 2]), gpu.tensor([0, 1], [2], 'i32')).readF32()
      assertClose(loss, [(Math.log(2) + Math.log(4 / 3)) / 2], { atol: 1e-6, rtol: 1e-6, what: 'hand-computed' })
    })

    it('gives 0 loss and zero gradients when every token is ignored, and honours a custom ignore index', async () => {
      const logits = new Rng(1).uniform(12, -1, 1)
      const all = gpu.tensor([IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX], [3], 'i32')
      expect([...await crossEntropy(gpu.tensor(logits, [3, 4]), all).readF32()]).toEqual([0])
      expect([...await crossEntropyBackward(gpu.tensor(logits, [3, 4]), all).readF32()].every(v => v === 0)).toBe(true)
      const custom = new Int32Array([3, 0, 3])
      const ref = twin.crossEntropy(logits, custom, 4, 3)
      assertClose(await crossEntropy(gpu.tensor(logits, [3, 4]), gpu.tensor(custom, [3], 'i32'), 3).readF32(), [ref], { ...TOLERANCE.crossEntropy, what: 'ignore 3' })
      expect(ref).toBeCloseTo(twin.crossEntropy(logits.subarray(4, 8), new Int32Array([0]), 4, -100), 12)
    })
  })
}

describe('crossEntropyBackward twin vs finite differences of the forward twin', () => {
  it('matches with ignored tokens', () => {
    const [T, V] = [5, 6]
    const rng = new Rng(3)
    const logits = f64(rng.uniform(T * V, -3, 3))
    const targets = new Int32Array([2, IGNORE_INDEX, 5, 0, IGNORE_INDEX])
    assertClose(twin.crossEntropyBackward(logits, targets, V, IGNORE_INDEX), numericGrad(x => twin.crossEntropy(x, targets, V, IGNORE_INDEX), logits),
      { atol: 1e-9, rtol: 1e-7, what: 'dlogits' })
  })
})

describe('crossEntropy bad input', () => {
  it('the CPU path throws IdRangeError for targets outside [0, V)', () => {
    const logits = cpu.tensor(new Float32Array(8), [2, 4])
    expect(() => crossEntropy(logits, cpu.tensor([1, 4], [2], 'i32'))).toThrow(IdRangeError)
    expect(() => crossEntropy(logits, cpu.tensor([1, 4], [2], 'i32'))).toThrow(/crossEntropy: id 4 at position 1 is outside \[0, 4\) \(or the ignore index -100\)/)
    expect(() => crossEntropyBackward(logits, cpu.tensor([-1, 0], [2], 'i32'))).toThrow(/crossEntropyBackward: id -1 at position 0/)
  })

  it('names the op and shapes', () => {
    const logits = gpu.tensor(new Float32Array(8), [2, 4])
    expect(() => crossEntropy(logits, gpu.tensor([1, 2, 3], [3], 'i32'))).toThrow(ShapeError)
    expect(() => crossEntropy(logits, gpu.tensor([1, 2, 3], [3], 'i32'))).toThrow(/crossEntropy: targets must have shape \(2\), got \(3\)/)
    expect(() => crossEntropy(logits, gpu.tensor([1, 2], [2], 'f32'))).toThrow(/crossEntropy: targets must be i32, got f32/)
    expect(() => crossEntropyBackward(gpu.tensor(new Float32Array(8), [8]), gpu.tensor([1], [1], 'i32'))).toThrow(/crossEntropyBackward: logits must have rank 2, got \(8\)/)
    expect(() => crossEntropy(gpu.tensor(new Float32Array(0), [2, 0]), gpu.tensor([1, 2], [2], 'i32'))).toThrow(/crossEntropy: logits \(2, 0\) have no classes/)
    expect(() => crossEntropy(logits, gpu.tensor([1, 2], [2], 'i32'), 0.5)).toThrow(/crossEntropy: ignoreIndex must be an i32/)
  })
})
