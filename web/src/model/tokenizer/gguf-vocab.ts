import { TokenizerError } from '../errors.ts'

/**
 * GGUF metadata as a plain map or record: values either plain (`@huggingface/gguf`) or wrapped
 * with their declared type as `{ type, value }` (our reader, web/src/model/gguf/read.ts).
 */
export type MetadataLike = ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6
} as const

/** `tokenizer.ggml.model` values we tokenize. */
type GgufVocabModel = 'llama' | 'gpt2'

/**
 * Texts that end generation even when no id names them (llama.cpp llama-vocab.cpp, "maintain a
 * list of tokens that cause end-of-generation"): converters often leave eot_token_id unset.
 */
export const END_OF_GENERATION_TEXTS: readonly string[] = [
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>',
  '<|end_of_text|>', '<end_of_utterance>'
]

/** The tokenizer part of a GGUF header, checked and typed. */
export interface GgufVocab {
  model: GgufVocabModel
  /** `tokenizer.ggml.pre` (BPE pre-tokenizer name); undefined for SentencePiece. */
  pre: string | undefined
  tokens: string[]
  /** One per token; 0 where the file has none. */
  scores: Float32Array
  /** One per token (TokenType); NORMAL where the file has none. */
  types: Uint8Array
  /** BPE merges as [left, right] (gpt2 only). */
  merges: Array<[string, string]>
  bos: number | undefined
  eos: number | undefined
  eot: number | undefined
  eom: number | undefined
  unk: number | undefined
  pad: number | undefined
  addBos: boolean
  addEos: boolean
  /** SentencePiece: prefix each text fragment with a space (llama.cpp add_space_prefix). */
  addSpacePrefix: boolean
  /** Every id that ends generation (eos, eot, eom and END_OF_GENERATION_TEXTS found in the vocabulary). */
  endOfGeneration: number[]
  chatTemplate: string | undefined
}

/** The value of `key`, unwrapped from `{ type, value }` when our reader produced it. */
export function metaGet (meta: MetadataLike, key: string): unknown {
  const raw = meta instanceof Map ? meta.get(key) : (meta as Record<string, unknown>)[key]
  if (raw !== null && typeof raw === 'object' && 'value' in raw && 'type' in raw && typeof (raw as { type: unknown }).type === 'number') {
    return (raw as { value: unknown }).value
  }
  return raw
}

function bad (key: string, why: string): TokenizerError {
  return new TokenizerError(`GGUF metadata '${key}': ${why}`)
}

function strings (meta: MetadataLike, key: string): string[] | undefined {
  const v = metaGet(meta, key)
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.some(s => typeof s !== 'string')) throw bad(key, 'expected an array of strings')
  return v as string[]
}

function numbers (meta: MetadataLike, key: string, n: number): number[] | undefined {
  const v = metaGet(meta, key)
  if (v === undefined) return undefined
  const arr = ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v
  if (!Array.isArray(arr) || arr.some(x => typeof x !== 'number' && typeof x !== 'bigint')) throw bad(key, 'expected an array of numbers')
  if (arr.length < n) throw bad(key, `${arr.length} entries for ${n} tokens`)
  return arr.map(Number)
}

function tokenId (meta: MetadataLike, key: string, nTokens: number): number | undefined {
  const v = metaGet(meta, key)
  if (v === undefined) return undefined
  const id = Number(v)
  if (!Number.isInteger(id)) throw bad(key, `${String(v)} is not an integer`)
  // llama.cpp ignores an id outside the vocabulary (with a warning) rather than failing the load.
  return id >= 0 && id < nTokens ? id : undefined
}

function flag (meta: MetadataLike, key: string, fallback: boolean): boolean {
  const v = metaGet(meta, key)
  if (v === undefined) return fallback
  if (typeof v !== 'boolean') throw bad(key, `${String(v)} is not a boolean`)
  return v
}

/**
 * Reads `tokenizer.ggml.*` (and `tokenizer.chat_template`) with llama.cpp's defaults: SentencePiece
 * adds BOS and a space prefix; BPE adds BOS for the llama3 family (see bpe-pre.ts, `addBosDefault`).
 */
export function readGgufVocab (meta: MetadataLike, bpeAddsBos: (pre: string | undefined) => boolean = () => false): GgufVocab {
  const model = metaGet(meta, 'tokenizer.ggml.model')
  if (model === undefined) throw new TokenizerError('GGUF metadata has no tokenizer.ggml.model (no tokenizer in this file)')
  if (model !== 'llama' && model !== 'gpt2') {
    throw new TokenizerError(`GGUF tokenizer.ggml.model '${String(model)}' is not supported (supported: 'llama' (SentencePiece), 'gpt2' (BPE))`)
  }
  const listed = strings(meta, 'tokenizer.ggml.tokens')
  if (listed === undefined || listed.length === 0) throw bad('tokenizer.ggml.tokens', 'missing or empty')
  // llama.cpp renames an empty token so that it can never match text.
  const tokens = listed.map((t, i) => t === '' ? `[EMPTY_${i}]` : t)
  const n = tokens.length
  const scores = new Float32Array(n)
  const s = numbers(meta, 'tokenizer.ggml.scores', n)
  if (s !== undefined) scores.set(s.slice(0, n))
  const types = new Uint8Array(n).fill(TokenType.NORMAL)
  const t = numbers(meta, 'tokenizer.ggml.token_type', n)
  if (t !== undefined) for (let i = 0; i < n; i++) types[i] = t[i] >= 0 && t[i] <= 6 ? t[i] : TokenType.UNDEFINED

  const merges: Array<[string, string]> = []
  const pre = model === 'gpt2' ? (metaGet(meta, 'tokenizer.ggml.pre') as string | undefined) ?? 'default' : undefined
  if (model === 'gpt2') {
    const m = strings(meta, 'tokenizer.ggml.merges')
    if (m === undefined) throw bad('tokenizer.ggml.merges', 'missing (a gpt2 BPE vocabulary needs its merges)')
    for (const line of m) {
      const at = line.indexOf(' ', 1) // as llama.cpp: the first space after position 0 separates the pair
      if (at < 0) throw bad('tokenizer.ggml.merges', `merge '${line}' has no space`)
      merges.push([line.slice(0, at), line.slice(at + 1)])
    }
  }

  const id = (key: string): number | undefined => tokenId(meta, `tokenizer.ggml.${key}`, n)
  const bos = id('bos_token_id')
  const eos = id('eos_token_id')
  let eot = id('eot_token_id')
  let eom = id('eom_token_id')
  const byText = new Map<string, number>()
  for (let i = 0; i < n; i++) if (!byText.has(tokens[i])) byText.set(tokens[i], i)
  // llama.cpp finds eot/eom by text when the converter left them out.
  if (eot === undefined) eot = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<EOT>'].map(x => byText.get(x)).find(x => x !== undefined)
  if (eom === undefined) eom = byText.get('<|eom_id|>')
  const eog = new Set<number>()
  for (const text of END_OF_GENERATION_TEXTS) {
    const i = byText.get(text)
    if (i !== undefined) eog.add(i)
  }
  // llama.cpp makes every token it recognises by text a control token (so it is split out of
  // text only when parsing specials, and not printed), whatever its declared type.
  for (const i of eog) if (types[i] !== TokenType.CONTROL) types[i] = TokenType.CONTROL
  for (const x of [eos, eot, eom]) if (x !== undefined) eog.add(x)

  const template = metaGet(meta, 'tokenizer.chat_template')
  return {
    model,
    pre,
    tokens,
    scores,
    types,
    merges,
    bos,
    eos,
    eot,
    eom,
    unk: id('unknown_token_id'),
    pad: id('padding_token_id'),
    addBos: flag(meta, 'tokenizer.ggml.add_bos_token', model === 'llama' || bpeAddsBos(pre)),
    addEos: flag(meta, 'tokenizer.ggml.add_eos_token', false),
    addSpacePrefix: flag(meta, 'tokenizer.ggml.add_space_prefix', model === 'llama'),
    endOfGeneration: [...eog].sort((a, b) => a - b),
    chatTemplate: typeof template === 'string' ? template : undefined
  }
}
