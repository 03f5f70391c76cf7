import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import { dtypeFromGgml } from '../../web/src/gpu/quant-types.ts'
import type { ModelConfig } from '../../web/src/model/config.ts'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { ggufNameOf } from '../../web/src/model/gguf/names.ts'
import { encodeValues } from '../../web/src/model/gguf/quantize.ts'
import type { GgufValue } from '../../web/src/model/gguf/read.ts'
import { encodeGguf, gv, type GgufWriteTensor } from '../../web/src/model/gguf/write.ts'
import { partParams, wholeModel } from '../../web/src/model/params.ts'
import type { HostWeights } from '../../web/src/model/weights.ts'

/** The GGUF arch llama.cpp's converter writes for an HF architecture. */
export function ggufArchOf (c: ModelConfig): string {
  switch (c.architecture) {
    case 'Qwen2ForCausalLM': return 'qwen2'
    case 'Qwen3ForCausalLM': return 'qwen3'
    default: return 'llama'
  }
}

/** `{arch}.*` metadata for a config, as the converter writes it. */
export function ggufMetadata (c: ModelConfig): Map<string, GgufValue> {
  const a = ggufArchOf(c)
  const md = new Map<string, GgufValue>([
    ['general.architecture', gv.str(a)],
    [`${a}.context_length`, gv.u32(c.maxPositions)],
    [`${a}.embedding_length`, gv.u32(c.hiddenSize)],
    [`${a}.block_count`, gv.u32(c.numLayers)],
    [`${a}.feed_forward_length`, gv.u32(c.intermediateSize)],
    [`${a}.attention.head_count`, gv.u32(c.numHeads)],
    [`${a}.attention.head_count_kv`, gv.u32(c.numKvHeads)],
    [`${a}.attention.key_length`, gv.u32(c.headDim)],
    [`${a}.attention.value_length`, gv.u32(c.headDim)],
    [`${a}.rope.dimension_count`, gv.u32(c.headDim)],
    [`${a}.rope.freq_base`, gv.f32(c.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.f32(c.rmsNormEps)]
  ])
  if (c.numExperts > 0) {
    md.set(`${a}.expert_count`, gv.u32(c.numExperts))
    md.set(`${a}.expert_used_count`, gv.u32(c.expertsPerToken))
  }
  return md
}

/** convert_hf_to_gguf.py LlamaModel.permute on whole rows: HF row j·D/2 + i → row 2i + j of each head. */
export function permuteRows (data: Float32Array, rows: number, heads: number): Float32Array {
  const cols = data.length / rows
  const D = rows / heads
  const out = new Float32Array(data.length)
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < D / 2; i++) out.set(data.subarray((h * D + j * D / 2 + i) * cols, (h * D + j * D / 2 + i + 1) * cols), (h * D + 2 * i + j) * cols)
    }
  }
  return out
}

/** Norms, biases and the router stay F32 (as llama.cpp's quantizer leaves them); other weights get `type`. */
export function typeFor (name: string, shape: readonly number[], type: number): number {
  return shape.length === 1 || name.endsWith('block_sparse_moe.gate.weight') ? GGML.F32 : type
}

export interface ModelGgufOptions {
  /** GGML type of the 2-D weights. */
  type: number
  /** Permute Q/K rows as the converter does for the llama arch. @default true for llama */
  permute?: boolean
  /** Leave these GGUF tensors out. */
  omit?: readonly string[]
  /** Extra metadata (overrides). */
  metadata?: ReadonlyMap<string, GgufValue>
}

/** A GGUF file of a model in HF layout, laid out as llama.cpp's converter writes it. */
export async function modelGguf (c: ModelConfig, host: HostWeights, opts: ModelGgufOptions): Promise<Uint8Array> {
  const permute = opts.permute ?? ggufArchOf(c) === 'llama'
  const tensors: GgufWriteTensor[] = []
  for (const spec of partParams(c, wholeModel(c))) {
    const name = ggufNameOf(spec.name)
    if (opts.omit?.includes(name) === true) continue
    let data = host.get(spec.name)?.data
    if (data === undefined) throw new Error(`no host weight ${spec.name}`)
    const m = /self_attn\.([qk])_proj\.(weight|bias)$/.exec(spec.name)
    if (permute && m !== null) data = permuteRows(data, spec.shape[0], m[1] === 'q' ? c.numHeads : c.numKvHeads)
    tensors.push({ name, shape: spec.shape, type: typeFor(spec.name, spec.shape, opts.type), data })
  }
  if (c.ropeFreqFactors !== undefined) tensors.unshift({ name: 'rope_freqs.weight', shape: [c.headDim / 2], type: GGML.F32, data: Float32Array.from(c.ropeFreqFactors) }) // as the converter writes Llama 3.1
  const md = ggufMetadata(c)
  for (const [k, v] of opts.metadata ?? []) md.set(k, v)
  return await encodeGguf(md, tensors)
}

/** The weights as a GGUF file of `type` holds them: encoded and decoded on the host (the f32 reference). */
export function roundTrip (host: HostWeights, type: number): HostWeights {
  const out: HostWeights = new Map()
  for (const [name, w] of host) {
    const t = typeFor(name, w.shape, type)
    out.set(name, { shape: w.shape, data: t === GGML.F32 ? w.data : dequantize(dtypeFromGgml(t, name), encodeValues(t, w.data), w.data.length) })
  }
  return out
}
