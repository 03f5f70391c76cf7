import type { Architecture, ModelConfig } from '../config.ts'
import { EMBED } from '../params.ts'
import { GgufMetadataError, UnsupportedGgufError } from './errors.ts'
import { GgufType, type GgufHeader, type GgufValue } from './read.ts'
import { ggufNameOf } from './names.ts'

/**
 * ModelConfig from a GGUF header's metadata (llama.cpp's `{arch}.*` keys, see its
 * `src/llama-arch.cpp` LLM_KV_NAMES) and tensor list. Supported: `llama` (Llama 2/3, Mistral;
 * Mixtral when `llama.expert_count` > 0), `qwen2`, `qwen3`. What llama.cpp would compute
 * differently from our HF-defined blocks is refused naming the key or tensor.
 */

/** Llama 3.1+: per-frequency RoPE divisors, F32 (D/2). */
export const ROPE_FREQS = 'rope_freqs.weight'

export const GGUF_ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM'
}

const NUMBER_TYPES = new Set([GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32, GgufType.INT32, GgufType.UINT64, GgufType.INT64, GgufType.FLOAT32, GgufType.FLOAT64])

function scalar (v: GgufValue | undefined, key: string): number | undefined {
  if (v === undefined) return undefined
  if (v.type === GgufType.ARRAY) throw new GgufMetadataError(key, 'per-layer values (an array) are not supported')
  if (!NUMBER_TYPES.has(v.type)) throw new GgufMetadataError(key, `must be a number, got ${GgufType[v.type]}`)
  return Number(v.value)
}

/** A numeric key (with a fallback, or required). */
export function metaNumber (h: GgufHeader, key: string, fallback?: number): number {
  const v = scalar(h.metadata.get(key), key)
  if (v !== undefined) {
    if (!Number.isFinite(v)) throw new GgufMetadataError(key, `must be finite, got ${v}`)
    return v
  }
  if (fallback !== undefined) return fallback
  throw new GgufMetadataError(key, 'is required')
}

function metaInt (h: GgufHeader, key: string, fallback?: number, min = 1): number {
  const v = metaNumber(h, key, fallback)
  if (!Number.isInteger(v) || v < min) throw new GgufMetadataError(key, `must be an integer ≥ ${min}, got ${v}`)
  return v
}

export function metaString (h: GgufHeader, key: string): string | undefined {
  const v = h.metadata.get(key)
  if (v === undefined) return undefined
  if (v.type !== GgufType.STRING) throw new GgufMetadataError(key, `must be a string, got ${GgufType[v.type]}`)
  return v.value as string
}

/** `general.architecture`, checked. */
export function ggufArch (h: GgufHeader): string {
  const arch = metaString(h, 'general.architecture')
  if (arch === undefined) throw new GgufMetadataError('general.architecture', 'is required')
  if (GGUF_ARCHITECTURES[arch] === undefined) throw new UnsupportedGgufError(`GGUF architecture '${arch}' is not supported (supported: ${Object.keys(GGUF_ARCHITECTURES).join(', ')})`)
  return arch
}

/**
 * Parses the model's configuration from a GGUF header. `ropeFreqFactors`: the values of the
 * `rope_freqs.weight` tensor when the file has one (Llama 3.1+; GgufModelFile.open reads it).
 */
export function ggufConfig (h: GgufHeader, ropeFreqFactors?: number[]): ModelConfig {
  const arch = ggufArch(h)
  const k = (s: string): string => `${arch}.${s}`
  const has = (t: string): boolean => h.tensors.has(t)

  const hiddenSize = metaInt(h, k('embedding_length'))
  const numLayers = metaInt(h, k('block_count'))
  const numHeads = metaInt(h, k('attention.head_count'))
  const numKvHeads = metaInt(h, k('attention.head_count_kv'), numHeads)
  if (numHeads % numKvHeads !== 0) throw new GgufMetadataError(k('attention.head_count_kv'), `${numKvHeads} must divide head_count ${numHeads}`)
  const headDefault = hiddenSize / numHeads
  const headDim = metaInt(h, k('attention.key_length'), Number.isInteger(headDefault) ? headDefault : undefined)
  const valueLength = metaInt(h, k('attention.value_length'), headDim)
  if (valueLength !== headDim) throw new GgufMetadataError(k('attention.value_length'), `${valueLength} differs from key_length ${headDim} (not supported)`)
  if (headDim % 2 !== 0) throw new GgufMetadataError(k('attention.key_length'), `must be even for rotary embeddings, got ${headDim}`)
  const ropeDims = metaInt(h, k('rope.dimension_count'), headDim)
  if (ropeDims !== headDim) throw new GgufMetadataError(k('rope.dimension_count'), `${ropeDims}: partial rotary embeddings (≠ head dim ${headDim}) are not supported`)
  const scaling = metaString(h, k('rope.scaling.type'))
  if (scaling !== undefined && scaling !== 'none') throw new GgufMetadataError(k('rope.scaling.type'), `'${scaling}' RoPE scaling is not supported`)
  const factor = metaNumber(h, k('rope.scaling.factor'), 0)
  if (factor !== 0 && factor !== 1) throw new GgufMetadataError(k('rope.scaling.factor'), `${factor}: RoPE scaling is not supported`)
  const freqs = h.tensors.get(ROPE_FREQS)
  if (freqs !== undefined) {
    if (freqs.shape.length !== 1 || freqs.shape[0] !== headDim / 2) throw new GgufMetadataError(ROPE_FREQS, `tensor has shape [${freqs.shape.join(', ')}], expected [${headDim / 2}] (head dim / 2)`)
    if (ropeFreqFactors === undefined) throw new GgufMetadataError(ROPE_FREQS, 'tensor values are needed (open the file with GgufModelFile.open)')
    if (ropeFreqFactors.length !== headDim / 2 || !ropeFreqFactors.every(f => Number.isFinite(f) && f > 0)) throw new GgufMetadataError(ROPE_FREQS, 'factors must be positive and finite, one per frequency')
  }
  const swa = metaNumber(h, k('attention.sliding_window'), 0)
  if (swa !== 0) throw new GgufMetadataError(k('attention.sliding_window'), `${swa}: sliding-window attention is not supported`)

  const numExperts = metaInt(h, k('expert_count'), 0, 0)
  if (numExperts > 0 && arch !== 'llama') throw new UnsupportedGgufError(`${arch} with experts (${k('expert_count')} = ${numExperts}) is not supported (only llama-arch Mixtral)`)
  const expertsPerToken = numExperts > 0 ? metaInt(h, k('expert_used_count')) : 0
  if (expertsPerToken > numExperts) throw new GgufMetadataError(k('expert_used_count'), `${expertsPerToken} exceeds expert_count ${numExperts}`)
  if (numExperts > 0 && has('blk.0.ffn_gate.0.weight')) throw new UnsupportedGgufError('per-expert tensors (blk.N.ffn_gate.E.weight, an old Mixtral GGUF) are not supported; re-convert with a current llama.cpp (ffn_*_exps)')

  const embed = h.tensors.get(ggufNameOf(EMBED))
  if (embed === undefined) throw new GgufMetadataError('token_embd.weight', 'tensor is missing (needed for the vocabulary size)')
  const vocabSize = embed.shape[0]
  const declared = metaNumber(h, k('vocab_size'), vocabSize)
  if (declared !== vocabSize) throw new GgufMetadataError(k('vocab_size'), `${declared} differs from token_embd.weight's ${vocabSize} rows`)

  const eos = [metaNumber(h, 'tokenizer.ggml.eos_token_id', -1), metaNumber(h, 'tokenizer.ggml.eot_token_id', -1)].filter(id => id >= 0)
  const bos = metaNumber(h, 'tokenizer.ggml.bos_token_id', -1)
  const oBias = has('blk.0.attn_output.bias')
  const mlpBias = has('blk.0.ffn_gate.bias')
  return {
    architecture: numExperts > 0 ? 'MixtralForCausalLM' : GGUF_ARCHITECTURES[arch],
    vocabSize,
    hiddenSize,
    intermediateSize: metaInt(h, k(numExperts > 0 && h.metadata.has(k('expert_feed_forward_length')) ? 'expert_feed_forward_length' : 'feed_forward_length')),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: metaNumber(h, k('rope.freq_base'), 10000),
    ropeFreqFactors: freqs === undefined ? undefined : ropeFreqFactors,
    rmsNormEps: metaNumber(h, k('attention.layer_norm_rms_epsilon')),
    tieWordEmbeddings: !has('output.weight'),
    qkvBias: has('blk.0.attn_q.bias'),
    qkNorm: arch === 'qwen3',
    oBias,
    mlpBias,
    numExperts,
    expertsPerToken,
    maxPositions: metaInt(h, k('context_length'), 2048),
    bosTokenId: bos >= 0 ? bos : undefined,
    eosTokenIds: [...new Set(eos)],
    outputRouterLogits: false
  }
}

/**
 * llama.cpp's converter permutes the Q and K rows of the `llama` arch (for its interleaved
 * RoPE); qwen2/qwen3 use the rotate-half layout as is.
 */
export function qkPermuted (h: GgufHeader): boolean {
  return ggufArch(h) === 'llama'
}
