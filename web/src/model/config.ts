import { ConfigError } from './errors.ts'

/** The architectures we compute exactly as Hugging Face defines them. */
export type Architecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM' | 'MixtralForCausalLM'

const ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'MixtralForCausalLM']

/** model_type → architecture, for configs without an `architectures` list. */
const MODEL_TYPES: Readonly<Record<string, Architecture>> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  mixtral: 'MixtralForCausalLM'
}

/**
 * A decoder-only transformer, resolved from config.json with every default applied once.
 * Sizes: C = hiddenSize, H = numHeads, Hkv = numKvHeads, D = headDim, I = intermediateSize.
 */
export interface ModelConfig {
  architecture: Architecture
  vocabSize: number
  /** C */
  hiddenSize: number
  /** I: dense MLP width, or each expert's width for MoE. */
  intermediateSize: number
  numLayers: number
  /** H: query heads. */
  numHeads: number
  /** Hkv: key/value heads (GQA: H % Hkv == 0; MQA: 1). */
  numKvHeads: number
  /** D: per-head width (may differ from C / H). */
  headDim: number
  ropeTheta: number
  /**
   * Divisors of RoPE's inverse frequencies, one per frequency (D/2): Llama 3.1's `llama3`
   * rope_scaling, or a GGUF's `rope_freqs.weight`. Absent: the plain 1/theta^(2i/D).
   */
  ropeFreqFactors?: number[]
  /** The HF `llama3` rope_scaling the factors came from (kept to write config.json back). */
  ropeScaling?: Llama3RopeScaling
  rmsNormEps: number
  /** LM head shares the embedding table. */
  tieWordEmbeddings: boolean
  /** Bias on q/k/v projections (Qwen2; Llama `attention_bias`). */
  qkvBias: boolean
  /** Per-head RMSNorm of q and k (weights (D)) before RoPE (Qwen3 `q_norm` / `k_norm`). */
  qkNorm: boolean
  /** Bias on the attention output projection (Llama `attention_bias`). */
  oBias: boolean
  /** Bias on gate/up/down (Llama `mlp_bias`). */
  mlpBias: boolean
  /** Number of experts (MoE only; 0 for dense models). */
  numExperts: number
  /** Experts per token (MoE only; 0 for dense). */
  expertsPerToken: number
  /** Longest context (positions) the weights were made for. */
  maxPositions: number
  /** Attention sees only the last `slidingWindow` keys (Mistral); undefined = full causal. */
  slidingWindow?: number
  bosTokenId?: number
  eosTokenIds: number[]
  /** Mixtral's load-balancing loss is requested (training refuses it; inference ignores it). */
  outputRouterLogits: boolean
}

export function isMoe (c: ModelConfig): boolean {
  return c.numExperts > 0
}

type Json = Record<string, unknown>

function num (cfg: Json, field: string, fallback?: number): number {
  const v = cfg[field]
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback
    throw new ConfigError(field, 'is required')
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(field, `must be a number, got ${JSON.stringify(v)}`)
  return v
}

function int (cfg: Json, field: string, fallback?: number, min = 1): number {
  const v = num(cfg, field, fallback)
  if (!Number.isInteger(v) || v < min) throw new ConfigError(field, `must be an integer ≥ ${min}, got ${v}`)
  return v
}

function bool (cfg: Json, field: string, fallback: boolean): boolean {
  const v = cfg[field]
  if (v === undefined || v === null) return fallback
  if (typeof v !== 'boolean') throw new ConfigError(field, `must be true or false, got ${JSON.stringify(v)}`)
  return v
}

function architectureOf (cfg: Json): Architecture {
  const archs = cfg.architectures
  if (Array.isArray(archs) && archs.length > 0) {
    if (archs.length !== 1) throw new ConfigError('architectures', `exactly one architecture expected, got ${JSON.stringify(archs)}`)
    const a = archs[0]
    if (!ARCHITECTURES.includes(a as Architecture)) throw new ConfigError('architectures', `${JSON.stringify(a)} is not supported (supported: ${ARCHITECTURES.join(', ')})`)
    return a as Architecture
  }
  const mt = cfg.model_type
  if (typeof mt === 'string' && MODEL_TYPES[mt] !== undefined) return MODEL_TYPES[mt]
  throw new ConfigError('model_type', `${JSON.stringify(mt)} is not supported and no architectures list is given (supported: ${Object.keys(MODEL_TYPES).join(', ')})`)
}

/** rope_theta, or transformers ≥ 4.5x's rope_parameters / rope_scaling (default and llama3 rope). */
function ropeThetaOf (cfg: Json, fallback: number): number {
  for (const field of ['rope_scaling', 'rope_parameters']) {
    const r = ropeSection(cfg, field)
    if (r !== undefined && field === 'rope_parameters' && r.rope_theta !== undefined) return num(r, 'rope_theta')
  }
  return num(cfg, 'rope_theta', fallback)
}

function ropeSection (cfg: Json, field: string): Json | undefined {
  const rs = cfg[field]
  if (rs === undefined || rs === null) return undefined
  if (typeof rs !== 'object') throw new ConfigError(field, 'must be an object')
  const r = rs as Json
  const type = r.rope_type ?? r.type ?? 'default'
  if (type !== 'default' && type !== 'llama3') throw new ConfigError(`${field}.rope_type`, `${JSON.stringify(type)} is not supported (only the default and llama3 rotary embeddings)`)
  return r
}

/**
 * Llama 3.1's `llama3` frequency scaling as per-frequency divisors, as llama.cpp's converter
 * writes them to `rope_freqs.weight`: 1 for short wavelengths, `factor` for long ones, a smooth
 * blend between (transformers `_compute_llama3_parameters`).
 */
interface Llama3RopeScaling { factor: number, lowFreqFactor: number, highFreqFactor: number, originalMaxPositions: number }

function llama3RopeFactors (D: number, theta: number, r: Llama3RopeScaling): number[] {
  const lowWavelen = r.originalMaxPositions / r.lowFreqFactor
  const highWavelen = r.originalMaxPositions / r.highFreqFactor
  const out: number[] = []
  for (let i = 0; i < D / 2; i++) {
    const wavelen = 2 * Math.PI * theta ** (2 * i / D)
    if (wavelen < highWavelen) out.push(1)
    else if (wavelen > lowWavelen) out.push(r.factor)
    else {
      const smooth = (r.originalMaxPositions / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor)
      out.push(1 / ((1 - smooth) / r.factor + smooth))
    }
  }
  return out
}

/** `rope_freq_factors` (our extension: a GGUF's rope_freqs.weight written back to config.json). */
function freqFactorsOf (cfg: Json, D: number): number[] | undefined {
  const f = cfg.rope_freq_factors
  if (f === undefined || f === null) return undefined
  if (!Array.isArray(f) || f.length !== D / 2 || !f.every(v => typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new ConfigError('rope_freq_factors', `must be ${D / 2} positive numbers (one per RoPE frequency)`)
  return f as number[]
}

function ropeScalingOf (cfg: Json): Llama3RopeScaling | undefined {
  for (const field of ['rope_scaling', 'rope_parameters']) {
    const r = ropeSection(cfg, field)
    if (r === undefined || (r.rope_type ?? r.type) !== 'llama3') continue
    const n = (k: string): number => {
      const v = r[k]
      if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(`${field}.${k}`, `must be a positive number, got ${JSON.stringify(v)}`)
      return v
    }
    return { factor: n('factor'), lowFreqFactor: n('low_freq_factor'), highFreqFactor: n('high_freq_factor'), originalMaxPositions: n('original_max_position_embeddings') }
  }
  return undefined
}

/**
 * Parses a Hugging Face config.json. Every option the five architectures define that changes
 * the computation is either implemented or rejected with a ConfigError naming the field.
 */
export function parseConfig (json: unknown): ModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError('(root)', 'must be a JSON object')
  const cfg = json as Json
  const architecture = architectureOf(cfg)
  const mixtral = architecture === 'MixtralForCausalLM'
  const qwen2 = architecture === 'Qwen2ForCausalLM'
  const qwen3 = architecture === 'Qwen3ForCausalLM'
  const llama = architecture === 'LlamaForCausalLM'

  const hiddenSize = int(cfg, 'hidden_size')
  const numHeads = int(cfg, 'num_attention_heads')
  // HF defaults: Llama uses H when absent; Mistral/Mixtral 8; Qwen2/Qwen3 32.
  const numKvHeads = int(cfg, 'num_key_value_heads', llama ? numHeads : (qwen2 || qwen3 ? 32 : 8))
  if (numHeads % numKvHeads !== 0) throw new ConfigError('num_key_value_heads', `${numKvHeads} must divide num_attention_heads ${numHeads}`)
  const headDimDefault = hiddenSize / numHeads
  const headDim = int(cfg, 'head_dim', qwen3 ? 128 : (Number.isInteger(headDimDefault) ? headDimDefault : undefined)) // Qwen3Config's default is 128
  if (headDim % 2 !== 0) throw new ConfigError('head_dim', `must be even for rotary embeddings, got ${headDim}`)

  const act = cfg.hidden_act ?? 'silu'
  if (act !== 'silu') throw new ConfigError('hidden_act', `${JSON.stringify(act)} is not supported (only silu / SwiGLU)`)
  if (cfg.pretraining_tp !== undefined && cfg.pretraining_tp !== 1) throw new ConfigError('pretraining_tp', 'only 1 is supported')
  if (num(cfg, 'attention_dropout', 0) !== 0) throw new ConfigError('attention_dropout', 'must be 0 (dropout is not implemented)')
  if (mixtral && num(cfg, 'router_jitter_noise', 0) !== 0) throw new ConfigError('router_jitter_noise', 'must be 0 (router noise is not implemented)')
  if ((qwen2 || qwen3) && bool(cfg, 'use_sliding_window', false)) throw new ConfigError('use_sliding_window', 'Qwen2/Qwen3 sliding-window layers are not supported')

  const attentionBias = llama || qwen3 ? bool(cfg, 'attention_bias', false) : false
  const maxPositions = int(cfg, 'max_position_embeddings', 2048)
  let slidingWindow: number | undefined
  if ((architecture === 'MistralForCausalLM' || mixtral) && cfg.sliding_window !== undefined && cfg.sliding_window !== null) {
    slidingWindow = int(cfg, 'sliding_window')
  }

  const numExperts = mixtral ? int(cfg, 'num_local_experts', 8) : 0
  const expertsPerToken = mixtral ? int(cfg, 'num_experts_per_tok', 2) : 0
  if (mixtral && expertsPerToken > numExperts) throw new ConfigError('num_experts_per_tok', `${expertsPerToken} exceeds num_local_experts ${numExperts}`)

  const ropeTheta = ropeThetaOf(cfg, mixtral ? 1e6 : 10000)
  const ropeScaling = ropeScalingOf(cfg)

  const eos = cfg.eos_token_id
  const eosTokenIds = eos === undefined || eos === null ? [] : (Array.isArray(eos) ? eos : [eos])
  if (!eosTokenIds.every(e => Number.isInteger(e))) throw new ConfigError('eos_token_id', `must be an integer or a list of integers, got ${JSON.stringify(eos)}`)
  const bos = cfg.bos_token_id

  return {
    architecture,
    vocabSize: int(cfg, 'vocab_size'),
    hiddenSize,
    intermediateSize: int(cfg, 'intermediate_size'),
    numLayers: int(cfg, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta,
    ropeFreqFactors: ropeScaling === undefined ? freqFactorsOf(cfg, headDim) : llama3RopeFactors(headDim, ropeTheta, ropeScaling),
    ropeScaling,
    rmsNormEps: num(cfg, 'rms_norm_eps', mixtral ? 1e-5 : 1e-6),
    tieWordEmbeddings: bool(cfg, 'tie_word_embeddings', false),
    qkvBias: qwen2 || attentionBias,
    qkNorm: qwen3,
    oBias: attentionBias,
    mlpBias: llama ? bool(cfg, 'mlp_bias', false) : false,
    numExperts,
    expertsPerToken,
    maxPositions,
    slidingWindow,
    bosTokenId: typeof bos === 'number' ? bos : undefined,
    eosTokenIds: eosTokenIds as number[],
    outputRouterLogits: mixtral ? bool(cfg, 'output_router_logits', false) : false
  }
}

/** Writes a ModelConfig back as a Hugging Face config.json object (for checkpoints and `train`). */
export function toHfConfig (c: ModelConfig): Record<string, unknown> {
  const modelType = Object.entries(MODEL_TYPES).find(([, a]) => a === c.architecture)?.[0]
  const out: Record<string, unknown> = {
    architectures: [c.architecture],
    model_type: modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositions,
    torch_dtype: 'float32'
  }
  if (c.architecture === 'LlamaForCausalLM') { out.attention_bias = c.oBias; out.mlp_bias = c.mlpBias }
  if (c.architecture === 'Qwen3ForCausalLM') out.attention_bias = c.oBias
  if (c.slidingWindow !== undefined) out.sliding_window = c.slidingWindow
  if (c.ropeScaling !== undefined) {
    const r = c.ropeScaling
    out.rope_scaling = { rope_type: 'llama3', factor: r.factor, low_freq_factor: r.lowFreqFactor, high_freq_factor: r.highFreqFactor, original_max_position_embeddings: r.originalMaxPositions }
  } else if (c.ropeFreqFactors !== undefined) {
    out.rope_freq_factors = c.ropeFreqFactors // a GGUF's rope_freqs.weight: our extension, read back by parseConfig
  }
  if (c.numExperts > 0) { out.num_local_experts = c.numExperts; out.num_experts_per_tok = c.expertsPerToken }
  if (c.bosTokenId !== undefined) out.bos_token_id = c.bosTokenId
  if (c.eosTokenIds.length > 0) out.eos_token_id = c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds
  return out
}
