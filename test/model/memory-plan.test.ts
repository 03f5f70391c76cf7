import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../web/src/model/config.ts'
import {
  MemoryBudgetError, MemoryPlanArgumentError, checkBudget, costliestBlockPlan, formatBytes, largestSpanThatFits, pageBudgetBytes, parseByteSize, planPart, spanLengthThatFits, tensorRole, type PlanTensor
} from '../../web/src/model/memory-plan.ts'

// Block sizes from the GGUF format (ggml-common.h), written out here so the test does not lean on
// the code it checks: bytes per block / elements per block.
const Q4_K = 144 / 256
const Q6_K = 210 / 256

const llama1b = parseConfig({
  architectures: ['LlamaForCausalLM'], vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, tie_word_embeddings: true, max_position_embeddings: 131072
})

/**
 * The tensor infos of a Llama-3.2-1B Q4_K_M GGUF as llama.cpp's quantizer lays it out: Q4_K for
 * most weights, Q6_K for token_embd (the tied output) and for attn_v / ffn_down of the layers
 * `use_more_bits` picks (first and last eighth, every third in between), F32 norms and rope_freqs.
 */
function llama1bQ4KM (): PlanTensor[] {
  const n = 16
  const moreBits = (i: number): boolean => i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 === 2
  const t = (name: string, shape: number[], perElem: number): PlanTensor => ({ name, shape, bytes: shape.reduce((a, b) => a * b, 1) * perElem })
  const out: PlanTensor[] = [t('rope_freqs.weight', [32], 4), t('token_embd.weight', [128256, 2048], Q6_K), t('output_norm.weight', [2048], 4)]
  for (let i = 0; i < n; i++) {
    const p = `blk.${i}.`
    out.push(
      t(`${p}attn_norm.weight`, [2048], 4), t(`${p}ffn_norm.weight`, [2048], 4),
      t(`${p}attn_q.weight`, [2048, 2048], Q4_K), t(`${p}attn_k.weight`, [512, 2048], Q4_K),
      t(`${p}attn_v.weight`, [512, 2048], moreBits(i) ? Q6_K : Q4_K), t(`${p}attn_output.weight`, [2048, 2048], Q4_K),
      t(`${p}ffn_gate.weight`, [8192, 2048], Q4_K), t(`${p}ffn_up.weight`, [8192, 2048], Q4_K),
      t(`${p}ffn_down.weight`, [2048, 8192], moreBits(i) ? Q6_K : Q4_K)
    )
  }
  return out
}

const blocks = (start: number, end: number, embedding = false, head = false) => ({ blocks: { start, end }, embedding, head })

describe('memory plan: Llama-3.2-1B, Q4_K_M mix', () => {
  const tensors = llama1bQ4KM()
  const layerQ4 = (2 * 2048 * 2048 + 2 * 512 * 2048 + 3 * 8192 * 2048) * Q4_K + 2 * 2048 * 4
  const moreBitsExtra = (512 * 2048 + 2048 * 8192) * (Q6_K - Q4_K)
  const embd = 128256 * 2048 * Q6_K

  it('counts each part\'s weights in their file encoding (the whole model is ~0.8 GB)', () => {
    const whole = planPart(llama1b, tensors, blocks(0, 16, true, true))
    expect(whole.weightsBytes).toBe(16 * layerQ4 + 8 * moreBitsExtra + embd + 2048 * 4)
    expect(whole.weightsBytes).toBe(799_862_784)
    expect(whole.tensors).toBe(16 * 9 + 2) // rope_freqs is not a parameter of any part
    expect(whole.largestTensorBytes).toBe(embd)
    // Layers 0 and 1 are both `use_more_bits`; 2 and 3 are not.
    expect(planPart(llama1b, tensors, blocks(0, 2)).weightsBytes).toBe(2 * (layerQ4 + moreBitsExtra))
    expect(planPart(llama1b, tensors, blocks(2, 4)).weightsBytes).toBe(2 * layerQ4)
    // A client holds the ends: the tied head reads token_embd, counted once.
    const ends = planPart(llama1b, tensors, blocks(0, 0, true, true))
    expect(ends.weightsBytes).toBe(embd + 2048 * 4)
    expect(planPart(llama1b, tensors, blocks(0, 0, false, true)).weightsBytes).toBe(embd + 2048 * 4)
    expect(ends.kvBytes).toBe(0)
  })

  it('sizes the KV cache for sessions × context × the span\'s layers, f16 or f32', () => {
    const p = planPart(llama1b, tensors, blocks(0, 16), { sessions: 4, context: 2048, kvDtype: 'f16' })
    expect(p.kvBytes).toBe(4 * 2048 * 16 * 2 * 8 * 64 * 2) // 0.27 GB
    expect(planPart(llama1b, tensors, blocks(4, 8), { sessions: 4, context: 2048 }).kvBytes).toBe(4 * 2048 * 4 * 2 * 8 * 64 * 4)
    expect(p.totalBytes).toBe(p.weightsBytes + p.kvBytes + p.scratchBytes)
    expect(p.scratchBytes).toBeGreaterThan(32 * 512 * 2048 * 4) // at least one prefill step's attention scores
  })

  it('refuses a span over budget with a message naming every number', () => {
    const p = planPart(llama1b, tensors, blocks(0, 16), { sessions: 4, context: 2048, kvDtype: 'f16' })
    expect(() => checkBudget(p, p.totalBytes)).not.toThrow()
    let err: unknown
    try { checkBudget(p, 1e9) } catch (e) { err = e }
    expect(err).toBeInstanceOf(MemoryBudgetError)
    expect((err as Error).message).toMatch(/^span 0:16 needs 584 MB weights \+ 268 MB KV for 4 sessions × 2048 \+ \d+ MB scratch = 1\.\d\d GB; budget 1\.00 GB$/)
  })

  it('finds the largest span that fits a budget, exactly at the boundary', () => {
    const opts = { sessions: 2, context: 1024, kvDtype: 'f16' as const }
    for (const budget of [3e8, 5e8, 6.5e8]) {
      for (const start of [0, 5]) {
        const n = largestSpanThatFits(llama1b, tensors, budget, { ...opts, start })
        expect(n).toBeGreaterThan(0)
        expect(planPart(llama1b, tensors, blocks(start, start + n), opts).totalBytes).toBeLessThanOrEqual(budget)
        if (start + n < 16) expect(planPart(llama1b, tensors, blocks(start, start + n + 1), opts).totalBytes).toBeGreaterThan(budget)
      }
    }
    expect(largestSpanThatFits(llama1b, tensors, 1e12, opts)).toBe(16)
    expect(largestSpanThatFits(llama1b, tensors, 1e12, { ...opts, start: 12 })).toBe(4)
    expect(largestSpanThatFits(llama1b, tensors, 1e6, opts)).toBe(0)
    // Any window of that length fits (a server that lets the swarm place it); the costliest block
    // is one of the `use_more_bits` layers.
    for (const budget of [2e8, 3e8, 5e8]) {
      const n = spanLengthThatFits(llama1b, tensors, budget, opts)
      for (let s = 0; s + n <= 16; s++) expect(planPart(llama1b, tensors, blocks(s, s + n), opts).totalBytes).toBeLessThanOrEqual(budget)
      expect(Array.from({ length: 16 - n }, (_, s) => planPart(llama1b, tensors, blocks(s, s + n + 1), opts).totalBytes).some(b => b > budget)).toBe(true)
    }
    expect(spanLengthThatFits(llama1b, tensors, 1e6, opts)).toBe(0)
    expect(costliestBlockPlan(llama1b, tensors, opts).part.blocks.start).toBe(0)
    // With the ends, the embedding's 215 MB comes first.
    expect(largestSpanThatFits(llama1b, tensors, 2e8, { ...opts, embedding: true, head: true })).toBe(0)
  })
})

describe('memory plan: other layouts', () => {
  it('holds 16-bit safetensors weights in 16 bits and 1-D tensors (norms, biases) in f32', () => {
    const qwen = parseConfig({ architectures: ['Qwen2ForCausalLM'], vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
    const bf16 = (name: string, shape: number[]): PlanTensor => ({ name, shape, bytes: shape.reduce((a, b) => a * b, 1) * 2 })
    const tensors = [
      bf16('model.embed_tokens.weight', [1000, 64]), bf16('lm_head.weight', [1000, 64]), bf16('model.norm.weight', [64]),
      bf16('model.layers.1.self_attn.q_proj.weight', [64, 64]), bf16('model.layers.1.self_attn.q_proj.bias', [64]), bf16('model.layers.1.input_layernorm.weight', [64])
    ]
    expect(planPart(qwen, tensors, blocks(1, 2)).weightsBytes).toBe(64 * 64 * 2 + 64 * 4 + 64 * 4)
    // Untied: the head is lm_head; a part with only the embedding does not count it.
    expect(planPart(qwen, tensors, blocks(0, 0, true, false)).weightsBytes).toBe(1000 * 64 * 2)
    expect(planPart(qwen, tensors, blocks(0, 0, false, true)).weightsBytes).toBe(1000 * 64 * 2 + 64 * 4)
  })

  it('counts stacked MoE experts with their layer and sizes the router scratch', () => {
    const mix = parseConfig({ architectures: ['MixtralForCausalLM'], vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 4, num_attention_heads: 32, num_key_value_heads: 8, num_local_experts: 8, num_experts_per_tok: 2 })
    const tensors: PlanTensor[] = []
    for (let i = 0; i < 4; i++) {
      for (const w of ['ffn_gate_exps', 'ffn_up_exps']) tensors.push({ name: `blk.${i}.${w}.weight`, shape: [8, 14336, 4096], bytes: 8 * 14336 * 4096 * Q4_K })
      tensors.push({ name: `blk.${i}.ffn_down_exps.weight`, shape: [8, 4096, 14336], bytes: 8 * 14336 * 4096 * Q6_K })
      tensors.push({ name: `blk.${i}.ffn_gate_inp.weight`, shape: [8, 4096], bytes: 8 * 4096 * 4 })
    }
    const p = planPart(mix, tensors, blocks(1, 3))
    expect(p.weightsBytes).toBe(2 * (8 * 14336 * 4096 * (2 * Q4_K + Q6_K) + 8 * 4096 * 4))
    expect(p.largestTensorBytes).toBe(8 * 14336 * 4096 * Q6_K)
  })

  it('classifies GGUF and Hugging Face names', () => {
    expect(tensorRole('blk.12.attn_q.weight')).toEqual({ kind: 'layer', layer: 12 })
    expect(tensorRole('model.layers.3.mlp.up_proj.weight')).toEqual({ kind: 'layer', layer: 3 })
    expect(tensorRole('token_embd.weight').kind).toBe('embedding')
    expect(tensorRole('lm_head.weight').kind).toBe('head')
    expect(tensorRole('model.norm.weight').kind).toBe('final-norm')
    expect(tensorRole('rope_freqs.weight').kind).toBe('other')
  })

  it('rejects bad ranges and options', () => {
    const c = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2 })
    expect(() => planPart(c, [], blocks(1, 3))).toThrow(MemoryPlanArgumentError)
    expect(() => planPart(c, [], blocks(0, 1), { sessions: 0 })).toThrow(/sessions must be a positive integer/)
    expect(() => planPart(c, [], blocks(0, 1), { context: 1.5 })).toThrow(/context/)
  })
})

describe('sizes and budgets', () => {
  it('parses byte sizes with decimal and binary units', () => {
    expect(parseByteSize('4GB')).toBe(4e9)
    expect(parseByteSize('1.5 GiB')).toBe(1.5 * 2 ** 30)
    expect(parseByteSize('800M')).toBe(8e8)
    expect(parseByteSize('512MiB')).toBe(512 * 2 ** 20)
    expect(parseByteSize('123456')).toBe(123456)
    expect(parseByteSize('2k')).toBe(2000)
    for (const bad of ['', 'GB', '-1GB', '1 XB', '0', '1iB', 'four']) expect(() => parseByteSize(bad), bad).toThrow(MemoryPlanArgumentError)
  })

  it('formats bytes with three significant digits', () => {
    expect(formatBytes(1_420_000_000)).toBe('1.42 GB')
    expect(formatBytes(268_435_456)).toBe('268 MB')
    expect(formatBytes(12_000)).toBe('12.0 kB')
    expect(formatBytes(999)).toBe('999 B')
  })

  it('derives a page budget from device memory or the adapter limits, within bounds', () => {
    expect(pageBudgetBytes({ maxBufferSize: 256 * 2 ** 20 })).toBe(2 ** 30) // 4 × default limit = the floor
    expect(pageBudgetBytes({ maxBufferSize: 2 ** 30 })).toBe(4 * 2 ** 30)
    expect(pageBudgetBytes({ maxBufferSize: 2 ** 30 }, 8)).toBe(4 * 2 ** 30) // half of 8 GiB
    expect(pageBudgetBytes({ maxBufferSize: 2 ** 30 }, 0.5)).toBe(2 ** 30) // never below the floor
    expect(pageBudgetBytes({ maxBufferSize: 2 ** 34 })).toBe(8 * 2 ** 30) // capped
  })
})
