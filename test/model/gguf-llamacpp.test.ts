/**
 * Greedy decoding of our GGUF files against llama.cpp (node-llama-cpp 3.21.1, CPU) on the same
 * file. llama.cpp rounds activations to 8 bits before quantized matmuls, so logits differ by
 * ~0.1; the prompts are chosen (deterministically, from our own logits) so that every step's
 * top-2 margin is well above that. Without ref/llama-cpp installed (npm ci's postinstall) it fails,
 * as the other llama.cpp tests do, rather than skip.
 */
import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../web/src/model/config.ts'
import { GGML, ggmlTypeName } from '../../web/src/model/gguf/ggml-types.ts'
import { GgufType, type GgufValue } from '../../web/src/model/gguf/read.ts'
import { gv } from '../../web/src/model/gguf/write.ts'
import { loadModel, type CausalLM } from '../../web/src/model/model.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { llamaCpp } from '../helpers/llamacpp.ts'
import { modelGguf } from './gguf-helpers.ts'
import { randomIds, randomWeights } from './helpers.ts'

/** An SPM vocabulary llama.cpp accepts: <unk>, <s>, </s> and the 256 byte tokens. */
function byteVocab (): Map<string, GgufValue> {
  const tokens = ['<unk>', '<s>', '</s>']
  const types = [2, 3, 3] // UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6) } // BYTE
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', gv.str('llama')],
    ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
    ['tokenizer.ggml.scores', gv.arr(GgufType.FLOAT32, tokens.map(() => 0))],
    ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, types)],
    ['tokenizer.ggml.bos_token_id', gv.u32(1)],
    ['tokenizer.ggml.eos_token_id', gv.u32(2)],
    ['tokenizer.ggml.unknown_token_id', gv.u32(0)],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)]
  ])
}

const STEPS = 6
/** Smallest top-2 gap (in logits) along our greedy path for a prompt to be used. */
const MIN_MARGIN = 1.0

/** Our greedy continuation and the smallest top-2 margin along it. */
async function greedy (m: CausalLM, prompt: number[]): Promise<{ tokens: number[], margin: number }> {
  const ids = [...prompt]
  let margin = Infinity
  const V = m.config.vocabSize
  for (let s = 0; s < STEPS; s++) {
    const all = await m.logits(ids).readF32()
    const row = all.subarray((ids.length - 1) * V)
    let best = 0
    for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v
    let second = -Infinity
    for (let v = 0; v < V; v++) if (v !== best) second = Math.max(second, row[v])
    margin = Math.min(margin, row[best] - second)
    ids.push(best)
  }
  return { tokens: ids.slice(prompt.length), margin }
}

describe('greedy tokens equal llama.cpp\'s on the same GGUF', () => {
  // Llama 3.1's rope scaling (a rope_freqs.weight tensor) on a short original context, so the factors matter.
  const LLAMA31 = { rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }
  const QWEN2 = { architectures: ['Qwen2ForCausalLM'] }
  const QWEN3 = { architectures: ['Qwen3ForCausalLM'], head_dim: 64 }
  const MIXTRAL = { architectures: ['MixtralForCausalLM'], num_local_experts: 4, num_experts_per_tok: 2 }
  const cases: ReadonlyArray<[string, number, Record<string, unknown>]> = [
    ['llama (Q/K permuted)', GGML.Q8_0, {}], ['llama (Q/K permuted)', GGML.Q4_K, {}], ['llama (Q/K permuted)', GGML.Q6_K, {}],
    ['llama, Llama 3.1 rope_freqs', GGML.Q8_0, LLAMA31], ['qwen2 (q/k/v bias)', GGML.Q8_0, QWEN2], ['qwen3 (q/k norm)', GGML.Q4_K, QWEN3], ['llama-arch Mixtral', GGML.Q8_0, MIXTRAL]
  ]
  for (const [label, type, extra] of cases) {
    it(`${label}, ${ggmlTypeName(type)}`, async () => {
      const c = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 259, hidden_size: 256, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000, bos_token_id: 1, eos_token_id: 2, ...extra })
      // Blocks strong enough to decide the next token (weights ~1/√C), a wide head for clear margins.
      const host = randomWeights(c, 77, 0.12)
      host.get('lm_head.weight')?.data.forEach((v, i, a) => { a[i] = v * 6 })
      const dir = mkdtempSync(`${tmpdir()}/gguf-llamacpp-`)
      const path = `${dir}/m.gguf`
      writeFileSync(path, await modelGguf(c, host, { type, metadata: byteVocab() }))
      const m = await loadModel(path, cpu)
      expect(m.tokenizer, 'the tokenizer from the file\'s own metadata').toBeDefined()
      // Prompts avoid the control ids 0–2 (llama.cpp stops or refuses on them); pick those with clear margins.
      const rng = new Rng(5)
      const prompts: Array<{ prompt: number[], want: number[] }> = []
      for (let tries = 0; tries < 40 && prompts.length < 3; tries++) {
        const prompt = randomIds(3 + rng.int(5), 256, 100 + tries).map(t => t + 3)
        const g = await greedy(m, prompt)
        if (g.margin >= MIN_MARGIN && !g.tokens.some(t => t < 3)) prompts.push({ prompt, want: g.tokens })
      }
      expect(prompts.length, 'prompts with a clear top-2 margin').toBeGreaterThanOrEqual(2)
      const got = await llamaCpp(path, prompts.map(p => ({ op: 'generate' as const, tokens: p.prompt, n: STEPS })), { kvCache: 'f32' })
      prompts.forEach((p, i) => expect(got[i].tokens, `prompt ${p.prompt.join(' ')}`).toEqual(p.want))
    })
  }
})
