import type { Backend } from '../../web/src/gpu/backend.ts'
import { parseConfig, type ModelConfig } from '../../web/src/model/config.ts'
import { CausalLM, initHostWeights, uploadParams } from '../../web/src/model/model.ts'
import { partParams, wholeModel } from '../../web/src/model/params.ts'
import type { HostWeights } from '../../web/src/model/weights.ts'
import { Rng } from '../../web/src/util/rng.ts'

/** Small configurations beyond the fixtures: the kinds of model the issue asks us to handle. */
export const CONFIGS: Record<string, Record<string, unknown>> = {
  // Qwen2: q/k/v bias, odd sizes, head_dim ≠ C/H, vocab not a power of 2, GQA 3:1.
  qwen2Odd: { architectures: ['Qwen2ForCausalLM'], vocab_size: 61, hidden_size: 20, intermediate_size: 27, num_hidden_layers: 2, num_attention_heads: 3, num_key_value_heads: 1, head_dim: 6, rope_theta: 1000, rms_norm_eps: 1e-6 },
  // Llama: tied embeddings, MQA, attention_bias (q/k/v/o) and mlp_bias, 3 layers.
  llamaTiedMqa: { architectures: ['LlamaForCausalLM'], vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 1, tie_word_embeddings: true, attention_bias: true, mlp_bias: true, rms_norm_eps: 1e-5 },
  // Llama 3.1: llama3 RoPE frequency scaling (factors 1…8 across the 8 frequencies of D = 16).
  llama31Rope: { architectures: ['LlamaForCausalLM'], vocab_size: 33, hidden_size: 32, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } },
  // Mistral: plain GQA 2:1, deeper (4 layers).
  mistralDeep: { architectures: ['MistralForCausalLM'], vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, sliding_window: null, rope_theta: 10000 },
  // Qwen3: per-head q/k RMSNorm, head_dim ≠ C/H, GQA 2:1, attention_bias (q/k/v/o).
  qwen3Norm: { architectures: ['Qwen3ForCausalLM'], vocab_size: 45, hidden_size: 16, intermediate_size: 20, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 6, attention_bias: true, rope_theta: 1e6, rms_norm_eps: 1e-6 },
  // Mixtral: more experts (5), top-3, odd widths.
  mixtral5x3: { architectures: ['MixtralForCausalLM'], vocab_size: 41, hidden_size: 12, intermediate_size: 18, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, num_local_experts: 5, num_experts_per_tok: 3, rope_theta: 1e6 }
}

export function config (name: string): ModelConfig {
  return parseConfig(CONFIGS[name])
}

/** Random weights with non-trivial norms and biases (init gives ones and zeros, which hide bugs). */
export function randomWeights (c: ModelConfig, seed: number, std = 0.3): HostWeights {
  const host = initHostWeights(partParams(c, wholeModel(c)), seed)
  const rng = new Rng(seed + 1000)
  for (const [name, t] of host) {
    for (let i = 0; i < t.data.length; i++) {
      if (name.endsWith('norm.weight')) t.data[i] = 1 + 0.2 * rng.normal()
      else t.data[i] = std * rng.normal()
    }
  }
  return host
}

export function modelOn (be: Backend, c: ModelConfig, host: HostWeights): CausalLM {
  return new CausalLM(c, uploadParams(be, host), be)
}

export function randomIds (n: number, vocab: number, seed: number): number[] {
  const rng = new Rng(seed)
  return Array.from({ length: n }, () => rng.int(vocab))
}
