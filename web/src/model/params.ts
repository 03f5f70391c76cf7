import type { ModelConfig } from './config.ts'
import { ModelArgumentError } from './errors.ts'

/**
 * Parameter names and shapes, in Hugging Face layout. MoE expert weights are stored per expert
 * in HF files (`...experts.{e}.w1.weight`, (I, C)); in memory one layer's experts are stacked
 * into one tensor (E, I, C) named with a `*` for the expert index, which is what the grouped
 * expert kernel takes. `hfNames` expands a stacked name into the per-expert names.
 */
export interface ParamSpec {
  /** In-memory name (HF name, or the stacked `experts.*` name). */
  name: string
  shape: number[]
  /** HF tensor names whose rows make this parameter, in order (one unless stacked). */
  hfNames: string[]
  /** Shape of each HF tensor. */
  hfShape: number[]
}

export const EMBED = 'model.embed_tokens.weight'
export const FINAL_NORM = 'model.norm.weight'
export const LM_HEAD = 'lm_head.weight'

export function layerPrefix (i: number): string {
  return `model.layers.${i}.`
}

function plain (name: string, shape: number[]): ParamSpec {
  return { name, shape, hfNames: [name], hfShape: shape }
}

/** Stacked expert weight: `<prefix>experts.*.<w>.weight` of shape (E, ...each). */
function stacked (prefix: string, w: string, E: number, each: number[]): ParamSpec {
  const hfNames: string[] = []
  for (let e = 0; e < E; e++) hfNames.push(`${prefix}experts.${e}.${w}.weight`)
  return { name: `${prefix}experts.*.${w}.weight`, shape: [E, ...each], hfNames, hfShape: each }
}

/** The parameters of decoder layer i. */
export function blockParams (c: ModelConfig, i: number): ParamSpec[] {
  const p = layerPrefix(i)
  const C = c.hiddenSize
  const qDim = c.numHeads * c.headDim
  const kvDim = c.numKvHeads * c.headDim
  const I = c.intermediateSize
  const out: ParamSpec[] = [
    plain(`${p}input_layernorm.weight`, [C]),
    plain(`${p}post_attention_layernorm.weight`, [C]),
    plain(`${p}self_attn.q_proj.weight`, [qDim, C]),
    plain(`${p}self_attn.k_proj.weight`, [kvDim, C]),
    plain(`${p}self_attn.v_proj.weight`, [kvDim, C]),
    plain(`${p}self_attn.o_proj.weight`, [C, qDim])
  ]
  if (c.qkvBias) {
    out.push(plain(`${p}self_attn.q_proj.bias`, [qDim]), plain(`${p}self_attn.k_proj.bias`, [kvDim]), plain(`${p}self_attn.v_proj.bias`, [kvDim]))
  }
  if (c.oBias) out.push(plain(`${p}self_attn.o_proj.bias`, [C]))
  if (c.qkNorm) out.push(plain(`${p}self_attn.q_norm.weight`, [c.headDim]), plain(`${p}self_attn.k_norm.weight`, [c.headDim]))
  if (c.numExperts > 0) {
    const m = `${p}block_sparse_moe.`
    out.push(
      plain(`${m}gate.weight`, [c.numExperts, C]),
      stacked(m, 'w1', c.numExperts, [I, C]),
      stacked(m, 'w3', c.numExperts, [I, C]),
      stacked(m, 'w2', c.numExperts, [C, I])
    )
  } else {
    out.push(
      plain(`${p}mlp.gate_proj.weight`, [I, C]),
      plain(`${p}mlp.up_proj.weight`, [I, C]),
      plain(`${p}mlp.down_proj.weight`, [C, I])
    )
    if (c.mlpBias) out.push(plain(`${p}mlp.gate_proj.bias`, [I]), plain(`${p}mlp.up_proj.bias`, [I]), plain(`${p}mlp.down_proj.bias`, [C]))
  }
  return out
}

export function embedParams (c: ModelConfig): ParamSpec[] {
  return [plain(EMBED, [c.vocabSize, c.hiddenSize])]
}

/** Final norm and LM head (the head is the embedding table when tied: no tensor of its own). */
export function headParams (c: ModelConfig): ParamSpec[] {
  const out = [plain(FINAL_NORM, [c.hiddenSize])]
  if (!c.tieWordEmbeddings) out.push(plain(LM_HEAD, [c.vocabSize, c.hiddenSize]))
  return out
}

/** A half-open span of decoder layers [start, end). */
export interface BlockRange {
  start: number
  end: number
}

export function checkRange (c: ModelConfig, r: BlockRange): void {
  if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 0 || r.end > c.numLayers || r.start > r.end) {
    throw new ModelArgumentError(`block range [${r.start}, ${r.end}) is not within the model's ${c.numLayers} layers`)
  }
}

/** What a peer holds: a span of blocks, and optionally the embedding and/or the head. */
export interface PartSpec {
  blocks: BlockRange
  embedding: boolean
  head: boolean
}

/** Every parameter of a part; the embedding table is included for a tied head. */
export function partParams (c: ModelConfig, part: PartSpec): ParamSpec[] {
  checkRange(c, part.blocks)
  const out: ParamSpec[] = []
  if (part.embedding || (part.head && c.tieWordEmbeddings)) out.push(...embedParams(c))
  for (let i = part.blocks.start; i < part.blocks.end; i++) out.push(...blockParams(c, i))
  if (part.head) out.push(...headParams(c))
  return out
}

export function wholeModel (c: ModelConfig): PartSpec {
  return { blocks: { start: 0, end: c.numLayers }, embedding: true, head: true }
}
