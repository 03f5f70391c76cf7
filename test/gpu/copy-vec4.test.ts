import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { copyVec4 } from '../../web/src/gpu/ops/copy-vec4.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

describe('copyVec4 (bench reference copy): WebGPU vs CPU twin', () => {
  it('copies seeded random data of odd vec4 counts exactly', async () => {
    for (const n of [4, 12, 4 * 65, 4 * 1027]) {
      const a = new Rng(n).uniform(n)
      const ref = await copyVec4(cpu.tensor(a, [n])).readF32()
      const got = await copyVec4(gpu.tensor(a, [n / 4, 4])).readF32()
      expect(got).toEqual(ref)
      expect(ref).toEqual(a)
    }
  })

  it('bad input throws naming the problem', () => {
    for (const be of [cpu, gpu]) {
      expect(() => copyVec4(be.tensor(new Float32Array(6), [6]))).toThrow(/copyVec4: a \(6\) must hold a multiple of 4 elements, has 6/)
      expect(() => copyVec4(be.tensor(new Int32Array(4), [4], 'i32'))).toThrow(/a must be f32, got i32/)
    }
  })
})
