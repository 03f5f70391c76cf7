import { describe, expect, it, beforeAll } from 'vitest'
import { add } from '../../web/src/gpu/ops/elementwise.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

describe('elementwise add (shaders/elementwise.wgsl)', () => {
  for (const n of [0, 1, 3, 255, 256, 257, 4099]) {
    it(`matches the CPU twin at n=${n}`, async () => {
      const rng = new Rng(n + 1)
      const a = rng.uniform(n)
      const b = rng.uniform(n)
      const ref = add(cpu.tensor(a, [n]), cpu.tensor(b, [n]))
      const out = add(gpu.tensor(a, [n]), gpu.tensor(b, [n]))
      assertClose(await out.readF32(), ref.data as Float32Array, { atol: 0, rtol: 0, what: `add n=${n}` })
    })
  }

  it('names the op and shapes on a mismatch', () => {
    expect(() => add(gpu.tensor([1, 2], [2]), gpu.tensor([1, 2, 3], [3]))).toThrow(ShapeError)
    expect(() => add(gpu.tensor([1, 2], [2]), gpu.tensor([1, 2, 3], [3]))).toThrow(/add: shapes differ: \(2\) vs \(3\)/)
  })
})
