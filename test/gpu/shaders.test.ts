import { describe, expect, it } from 'vitest'
import * as fs from 'node:fs'
import { DECLARED_KERNELS } from '../../web/src/gpu/kernel.ts'

// Load every op module so their kernel declarations register.
await Promise.all(Object.values(import.meta.glob('../../web/src/gpu/ops/*.ts')).map(async load => await load()))

/**
 * Every shaders/*.wgsl file, the test that runs it against its CPU twin (CONTRIBUTING.md STYLE 2: the shader
 * that ships is the one the tests run). A new shader without an entry here fails this test.
 */
const COVERED_BY: Record<string, string> = {
  elementwise: 'elementwise',
  matmul: 'matmul', matmul_vec4: 'matmul', matmul_naive: 'matmul',
  quant: 'quant', matmul_q8: 'quant', matmul_quant: 'matmul-quant',
  copy_vec4: 'copy-vec4',
  topk_ef: 'topk-ef',
  norm: 'norm', norm_backward: 'norm',
  softmax: 'softmax',
  loss: 'loss',
  embedding: 'embedding', embedding_backward: 'embedding', embedding_quant: 'embedding-quant',
  optim: 'optim', optim_reduce: 'optim',
  rope: 'rope',
  attention: 'attention', attention_rows: 'attention', attention_decode: 'attention', attention_combine: 'attention', attention_kv_write: 'attention.f16',
  attention_bwd_dq: 'attention', attention_bwd_dkdv: 'attention', attention_bwd_rows_dq: 'attention', attention_bwd_rows_dkdv: 'attention',
  moe_router: 'moe', moe_router_backward: 'moe', moe_dispatch: 'moe', moe_gather: 'moe', moe_combine: 'moe', moe_combine_backward: 'moe',
  moe_ffn_up: 'moe', moe_ffn_down: 'moe', moe_ffn_quant: 'moe-quant', moe_ffn_backward_hidden: 'moe', moe_ffn_backward_dx: 'moe', moe_ffn_backward_dw: 'moe'
}

const stems = fs.readdirSync('shaders').filter(f => f.endsWith('.wgsl')).map(f => f.replace(/\.wgsl$/, ''))

describe('shader coverage', () => {
  it('every shader file is declared by a kernel, and every declaration names an existing shader', () => {
    const declared = new Set(DECLARED_KERNELS.map(k => k.shader))
    expect(stems.filter(s => !declared.has(s))).toEqual([])
    expect([...declared].filter(s => !stems.includes(s))).toEqual([])
  })

  it('every shader file has a family test comparing it with its CPU twin', () => {
    expect(stems.filter(s => COVERED_BY[s] === undefined)).toEqual([])
    for (const s of stems) {
      const file = `test/gpu/${COVERED_BY[s]}.test.ts`
      expect(fs.existsSync(file), `${s}.wgsl → ${file}`).toBe(true)
      // The family test exercises the op whose declaration loads this shader.
      const ops = DECLARED_KERNELS.filter(k => k.shader === s).map(k => k.entry ?? 'main')
      expect(ops.length, s).toBeGreaterThan(0)
    }
  })
})
