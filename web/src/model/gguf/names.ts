import { ModelArgumentError } from '../errors.ts'
import { EMBED, FINAL_NORM, LM_HEAD } from '../params.ts'

/**
 * In-memory parameter names (params.ts: Hugging Face names, experts stacked as `experts.*`)
 * ↔ GGUF tensor names (llama.cpp `src/llama-arch.cpp` LLM_TENSOR_NAMES). Stacked experts map
 * to one `*_exps` tensor (E, rows, cols), the layout the converter writes.
 */

const TOP: ReadonlyArray<[string, string]> = [
  [EMBED, 'token_embd.weight'],
  [FINAL_NORM, 'output_norm.weight'],
  [LM_HEAD, 'output.weight']
]

/** Per-layer suffixes: after `model.layers.N.` ↔ after `blk.N.`. */
const LAYER: ReadonlyArray<[string, string]> = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['self_attn.q_proj.bias', 'attn_q.bias'],
  ['self_attn.k_proj.bias', 'attn_k.bias'],
  ['self_attn.v_proj.bias', 'attn_v.bias'],
  ['self_attn.o_proj.bias', 'attn_output.bias'],
  ['self_attn.q_norm.weight', 'attn_q_norm.weight'],
  ['self_attn.k_norm.weight', 'attn_k_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
  ['mlp.gate_proj.bias', 'ffn_gate.bias'],
  ['mlp.up_proj.bias', 'ffn_up.bias'],
  ['mlp.down_proj.bias', 'ffn_down.bias'],
  ['block_sparse_moe.gate.weight', 'ffn_gate_inp.weight'],
  ['block_sparse_moe.experts.*.w1.weight', 'ffn_gate_exps.weight'],
  ['block_sparse_moe.experts.*.w3.weight', 'ffn_up_exps.weight'],
  ['block_sparse_moe.experts.*.w2.weight', 'ffn_down_exps.weight']
]

const TO_GGUF = new Map(TOP)
const FROM_GGUF = new Map(TOP.map(([a, b]) => [b, a]))
const LAYER_TO = new Map(LAYER)
const LAYER_FROM = new Map(LAYER.map(([a, b]) => [b, a]))

/** The GGUF tensor holding an in-memory parameter; throws for a name with no GGUF counterpart. */
export function ggufNameOf (name: string): string {
  const top = TO_GGUF.get(name)
  if (top !== undefined) return top
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name)
  const suffix = m === null ? undefined : LAYER_TO.get(m[2])
  if (m === null || suffix === undefined) throw new ModelArgumentError(`parameter '${name}' has no GGUF tensor name`)
  return `blk.${m[1]}.${suffix}`
}

/** The in-memory parameter a GGUF tensor holds, or undefined for tensors we do not use. */
export function paramNameOf (gguf: string): string | undefined {
  const top = FROM_GGUF.get(gguf)
  if (top !== undefined) return top
  const m = /^blk\.(\d+)\.(.+)$/.exec(gguf)
  const suffix = m === null ? undefined : LAYER_FROM.get(m[2])
  return m === null || suffix === undefined ? undefined : `model.layers.${m[1]}.${suffix}`
}
