import { beforeAll, describe, expect, it } from 'vitest'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { SELF_TESTS, runSelfTest, type SelfTestCase } from '../../web/src/gpu/selftest.ts'
import * as ew from '../../web/src/gpu/ops/elementwise.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

describe('page self-test (web/src/gpu/selftest.ts)', () => {
  for (const c of SELF_TESTS) {
    it(`${c.family}: ${c.name} passes on this adapter`, async () => {
      const r = await runSelfTest(gpu, c)
      expect(r.error).toBeUndefined()
      expect(r.ok).toBe(true)
    })
  }

  it('reports a failing case instead of throwing', async () => {
    const broken: SelfTestCase = { family: 'x', name: 'wrong on GPU', tol: { atol: 0, rtol: 0 }, run: (be, r) => be.kind === 'webgpu' ? ew.scale(be.tensor(r.uniform(8), [8]), 2) : be.tensor(r.uniform(8), [8]) }
    const r = await runSelfTest(gpu, broken)
    expect(r.ok).toBe(false)
    expect(r.maxErr).toBeGreaterThan(0)
    const throwing: SelfTestCase = { family: 'x', name: 'throws', tol: { atol: 0, rtol: 0 }, run: (be) => ew.add(be.tensor([1], [1]), be.tensor([1, 2], [2])) }
    const r2 = await runSelfTest(gpu, throwing)
    expect(r2.ok).toBe(false)
    expect(r2.error).toMatch(/add: shapes differ/)
  })
})
