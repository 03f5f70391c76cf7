/**
 * What a part of a model (a span of blocks, and/or the embedding and head) costs in GPU memory,
 * computed from the weights file's header before a byte of weights is read, and compared with a
 * per-peer budget:
 *
 *   weights  the part's tensors as the loader holds them: a GGUF's in their file encoding
 *            (blocks, f16, bf16), a safetensors checkpoint's widened to f32 unless loaded with
 *            keepDtypes; 1-D tensors (norms, biases) in f32; each buffer padded to 4 bytes
 *   kv       sessions × context positions × layers × K and V rows (Hkv × D) in f16 or f32
 *   scratch  one forward step's intermediates: `stepTokens` rows through one block (the runtime
 *            frees each block's intermediates before the next), the attention scores over the
 *            context, and the logits when the part holds the head
 *
 *   const plan = planPart(config, tensors, { blocks: { start: 0, end: 16 }, embedding: false, head: false }, { sessions: 4, context: 2048 })
 *   checkBudget(plan, 1e9) // MemoryBudgetError: span 0:16 needs 1.42 GB weights + 0.27 GB KV …
 *
 * The scratch figure is an estimate (the buffer pool may keep freed buffers for reuse); weights
 * and KV are exact for the runtime's layout.
 */
import { formatSize } from '../util/progress.ts'
import type { ModelConfig } from './config.ts'
import { ModelArgumentError } from './errors.ts'
import { readGgufHeader, type GgufHeader } from './gguf/read.ts'
import type { PartSpec } from './params.ts'
import type { ModelSource } from './source.ts'
import { WeightIndex } from './weights.ts'

/** One tensor of the weights file as its header describes it. */
export interface PlanTensor {
  /** GGUF (`blk.3.attn_q.weight`) or Hugging Face (`model.layers.3.self_attn.q_proj.weight`) name. */
  name: string
  /** Row-major shape, outermost first. */
  shape: readonly number[]
  /** Bytes of its data in the file (its encoding: GGUF blocks, f16, bf16 or f32). */
  bytes: number
}

/** The tensors a GGUF header declares (sizes in their GGML encoding). */
function planTensorsFromGguf (h: GgufHeader): PlanTensor[] {
  return [...h.tensors.values()].map(t => ({ name: t.name, shape: t.shape, bytes: t.bytes }))
}

/**
 * The tensors of a safetensors checkpoint (one header read per file, no data). `keepDtypes`
 * as LoadOptions.keepDtypes: 16-bit weights stay 16-bit (the default, as for inference loads), else
 * everything is widened to f32 on the host (training).
 */
async function planTensorsFromSafetensors (index: WeightIndex, keepDtypes = true): Promise<PlanTensor[]> {
  const out: PlanTensor[] = []
  for (const name of await index.names()) {
    const { info } = await index.locate(name)
    out.push({ name, shape: info.shape, bytes: keepDtypes ? info.end - info.begin : numel(info.shape) * F32 })
  }
  return out
}

/**
 * The tensors of the model at `source` as the loader will hold them: its GGUF file's header
 * (kept in the file's encoding), or its safetensors headers (see planTensorsFromSafetensors).
 */
export async function readPlanTensors (source: ModelSource, opts: { keepDtypes?: boolean } = {}): Promise<PlanTensor[]> {
  if (source.file !== undefined) return planTensorsFromGguf(await readGgufHeader(source, source.file))
  return await planTensorsFromSafetensors(await WeightIndex.open(source), opts.keepDtypes)
}

/** Where a tensor belongs: a decoder layer, the embedding table, the head, or its final norm. */
export type TensorRole = { kind: 'layer', layer: number } | { kind: 'embedding' } | { kind: 'head' } | { kind: 'final-norm' } | { kind: 'other' }

const LAYER = /^(?:blk|model\.layers)\.(\d+)\./
const EMBEDDING = new Set(['token_embd.weight', 'model.embed_tokens.weight'])
const HEAD = new Set(['output.weight', 'lm_head.weight'])
const FINAL_NORM = new Set(['output_norm.weight', 'model.norm.weight'])

/** Classifies a GGUF or Hugging Face tensor name. */
export function tensorRole (name: string): TensorRole {
  const m = LAYER.exec(name)
  if (m !== null) return { kind: 'layer', layer: Number(m[1]) }
  if (EMBEDDING.has(name)) return { kind: 'embedding' }
  if (HEAD.has(name)) return { kind: 'head' }
  if (FINAL_NORM.has(name)) return { kind: 'final-norm' }
  return { kind: 'other' }
}

/** Element type of the KV cache. */
type KvDType = 'f16' | 'f32'

export interface PlanOptions {
  /**
   * Concurrent inference sessions the part keeps a KV cache for.
   * @default 1
   */
  sessions?: number
  /**
   * Positions per session (prompt + generated).
   * @default the model's maxPositions, capped at DEFAULT_CONTEXT
   */
  context?: number
  /**
   * KV cache element type.
   * @default 'f32'
   */
  kvDtype?: KvDType
  /**
   * Rows one forward step carries (a prefill chunk); scratch is sized for it.
   * @default DEFAULT_STEP_TOKENS
   */
  stepTokens?: number
}

/** Context assumed when none is given and the model allows more (a few chat turns). */
const DEFAULT_CONTEXT = 2048
/** Rows of one prefill step assumed for scratch (a chat prompt). */
const DEFAULT_STEP_TOKENS = 512
const F32 = 4

export interface MemoryPlan {
  /** Which part: blocks [start, end), embedding, head. */
  part: PartSpec
  weightsBytes: number
  kvBytes: number
  scratchBytes: number
  totalBytes: number
  /** The largest single tensor (what must fit one buffer, or be split into row parts). */
  largestTensorBytes: number
  /** Tensors counted in weightsBytes. */
  tensors: number
  sessions: number
  context: number
  kvDtype: KvDType
}

/**
 * A part does not fit the peer's GPU-memory budget; the message names every number. (A
 * ModelArgumentError: the span, sessions and budget asked for do not go together.)
 */
export class MemoryBudgetError extends ModelArgumentError {
  override name = 'MemoryBudgetError'
  constructor (readonly plan: MemoryPlan, readonly budgetBytes: number) {
    super(`${describePart(plan.part)} needs ${formatBytes(plan.weightsBytes)} weights + ${formatBytes(plan.kvBytes)} KV for ${plan.sessions} session${plan.sessions === 1 ? '' : 's'} × ${plan.context} + ${formatBytes(plan.scratchBytes)} scratch = ${formatBytes(plan.totalBytes)}; budget ${formatBytes(budgetBytes)}`)
  }
}

/** Bad planner input (a size string, a range, an option). */
export class MemoryPlanArgumentError extends ModelArgumentError {
  override name = 'MemoryPlanArgumentError'
}

/** "span 0:16", "span 4:8 + embedding + head", "embedding + head". */
export function describePart (p: PartSpec): string {
  const bits: string[] = []
  if (p.blocks.end > p.blocks.start) bits.push(`span ${p.blocks.start}:${p.blocks.end}`)
  if (p.embedding) bits.push('embedding')
  if (p.head) bits.push('head')
  return bits.length === 0 ? 'nothing' : bits.join(' + ')
}

/** Decimal units, 3 significant digits: 1.42 GB, 270 MB, 12.0 kB. */
export const formatBytes = formatSize

/**
 * "4GB", "1.5 GiB", "800M", "512MiB", "123456" (bytes). Decimal units are powers of 1000, the
 * `i` forms powers of 1024; a bare G/M/K is decimal.
 */
export function parseByteSize (s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)([bB]?)\s*$/.exec(s)
  if (m === null || (m[3] === 'i' && m[2] === '')) throw new MemoryPlanArgumentError(`'${s}' is not a byte size (e.g. 4GB, 1.5GiB, 800MB, 123456)`)
  const exp = ' kmgt'.indexOf(m[2].toLowerCase() === '' ? ' ' : m[2].toLowerCase())
  const base = m[3] === 'i' ? 1024 : 1000
  const v = Math.round(Number(m[1]) * base ** exp)
  if (!Number.isSafeInteger(v) || v <= 0) throw new MemoryPlanArgumentError(`'${s}' is not a positive byte size`)
  return v
}

function numel (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Bytes a tensor holds on the GPU: 1-D tensors in f32, others in their file encoding; padded to 4. */
function gpuTensorBytes (t: PlanTensor): number {
  const b = t.shape.length <= 1 ? numel(t.shape) * F32 : t.bytes
  return Math.ceil(b / 4) * 4
}

/** Does `part` hold this tensor? (A tied head reads the embedding table.) */
function inPart (role: TensorRole, part: PartSpec, tied: boolean): boolean {
  switch (role.kind) {
    case 'layer': return role.layer >= part.blocks.start && role.layer < part.blocks.end
    case 'embedding': return part.embedding || (part.head && tied)
    case 'head': case 'final-norm': return part.head
    case 'other': return false
  }
}

function positiveInt (v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new MemoryPlanArgumentError(`${what} must be a positive integer, got ${v}`)
  return v
}

/** Bytes of K and V for one position of one layer. */
function kvBytesPerPosition (c: ModelConfig, kvDtype: KvDType = 'f32'): number {
  return 2 * c.numKvHeads * c.headDim * (kvDtype === 'f16' ? 2 : F32)
}

/** Scratch of one step of T rows attending over S positions, through one block (+ ends). */
function scratchBytes (c: ModelConfig, part: PartSpec, T: number, S: number): number {
  const C = c.hiddenSize
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  let rows = 0
  if (part.blocks.end > part.blocks.start) {
    // x, normed x, attention out, o-proj out, residual, MLP out: 6 × C; q, attention heads; k, v.
    const attn = 6 * C + 2 * q + 2 * kv
    // Dense: gate, up, act(gate)·up. MoE: each token's k expert rows (gathered x, 3 × I, out) + router logits.
    const mlp = c.numExperts > 0 ? c.expertsPerToken * (2 * C + 3 * c.intermediateSize) + 2 * c.numExperts : 3 * c.intermediateSize
    rows += T * (attn + mlp) + c.numHeads * T * S // scores
  }
  if (part.embedding) rows += T * C
  if (part.head) rows += T * (C + c.vocabSize)
  return rows * F32
}

/** The memory plan of `part` of a model whose file declares `tensors`. */
export function planPart (config: ModelConfig, tensors: readonly PlanTensor[], part: PartSpec, opts: PlanOptions = {}): MemoryPlan {
  const { start, end } = part.blocks
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > config.numLayers || start > end) {
    throw new MemoryPlanArgumentError(`block range ${start}:${end} is not within the model's ${config.numLayers} layers`)
  }
  const sessions = positiveInt(opts.sessions ?? 1, 'sessions')
  const context = positiveInt(opts.context ?? Math.min(config.maxPositions, DEFAULT_CONTEXT), 'context')
  const stepTokens = Math.min(positiveInt(opts.stepTokens ?? DEFAULT_STEP_TOKENS, 'stepTokens'), context)
  const kvDtype = opts.kvDtype ?? 'f32'
  const tied = !tensors.some(t => HEAD.has(t.name))
  let weightsBytes = 0
  let largest = 0
  let count = 0
  for (const t of tensors) {
    if (!inPart(tensorRole(t.name), part, tied)) continue
    const b = gpuTensorBytes(t)
    weightsBytes += b
    largest = Math.max(largest, b)
    count++
  }
  const kvBytes = sessions * context * (end - start) * kvBytesPerPosition(config, kvDtype)
  const scratch = scratchBytes(config, part, stepTokens, context)
  return {
    part,
    weightsBytes,
    kvBytes,
    scratchBytes: scratch,
    totalBytes: weightsBytes + kvBytes + scratch,
    largestTensorBytes: largest,
    tensors: count,
    sessions,
    context,
    kvDtype
  }
}

/** Throws MemoryBudgetError when the plan exceeds the budget. */
export function checkBudget (plan: MemoryPlan, budgetBytes: number): void {
  if (plan.totalBytes > budgetBytes) throw new MemoryBudgetError(plan, budgetBytes)
}

/**
 * The most consecutive blocks from `start` (with the ends `part` asks for) that fit the budget:
 * what a peer offers when it chooses its own span. 0 when not even one block (or the ends alone)
 * fits.
 */
export function largestSpanThatFits (config: ModelConfig, tensors: readonly PlanTensor[], budgetBytes: number, opts: PlanOptions & { start?: number, embedding?: boolean, head?: boolean } = {}): number {
  const start = opts.start ?? 0
  const part = (n: number): PartSpec => ({ blocks: { start, end: start + n }, embedding: opts.embedding ?? false, head: opts.head ?? false })
  // Cost grows with n: binary search for the last n that fits.
  let lo = 0
  let hi = config.numLayers - start
  if (planPart(config, tensors, part(0), opts).totalBytes > budgetBytes) return 0
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (planPart(config, tensors, part(mid), opts).totalBytes <= budgetBytes) lo = mid
    else hi = mid - 1
  }
  return lo
}

/**
 * The longest span length whose every window of blocks fits the budget (a peer that lets the
 * swarm choose its span may land anywhere in the model): between 0 and the model's depth.
 */
export function spanLengthThatFits (config: ModelConfig, tensors: readonly PlanTensor[], budgetBytes: number, opts: PlanOptions = {}): number {
  const L = config.numLayers
  // Cost grows with length, so window [s, s + n) fits iff the longest fitting span from s is ≥ n.
  const longest = Array.from({ length: L }, (_, s) => largestSpanThatFits(config, tensors, budgetBytes, { ...opts, start: s }))
  for (let n = L; n > 0; n--) {
    let all = true
    for (let s = 0; s + n <= L && all; s++) all = longest[s] >= n
    if (all) return n
  }
  return 0
}

/** The plan of the costliest single block (what a refusal to serve even one block names). */
export function costliestBlockPlan (config: ModelConfig, tensors: readonly PlanTensor[], opts: PlanOptions = {}): MemoryPlan {
  let worst: MemoryPlan | undefined
  for (let s = 0; s < config.numLayers; s++) {
    const p = planPart(config, tensors, { blocks: { start: s, end: s + 1 }, embedding: false, head: false }, opts)
    if (worst === undefined || p.totalBytes > worst.totalBytes) worst = p
  }
  if (worst === undefined) throw new MemoryPlanArgumentError('the model has no blocks')
  return worst
}

/** Share of the adapter-derived budget a page takes (the tab shares the GPU with the browser and other tabs). */
const PAGE_BUDGET_SHARE = 0.5
/** A page's budget when neither navigator.deviceMemory nor the limits say more: 4 × the default maxBufferSize. */
const PAGE_BUDGET_FLOOR_BYTES = 1 << 30
/** Largest page budget derived without the user's word (big GPUs still share with the desktop). */
const PAGE_BUDGET_CAP_BYTES = 8 * 2 ** 30

/**
 * A page's GPU-memory budget. WebGPU does not report the memory size, so: half the device's
 * RAM when the browser tells it (navigator.deviceMemory, GiB, capped at 8 by the spec; integrated
 * GPUs share it), else 4 × maxBufferSize (adapters raise that limit with their memory), between
 * PAGE_BUDGET_FLOOR_BYTES and PAGE_BUDGET_CAP_BYTES. A `?max-gpu-memory=` query overrides it.
 */
export function pageBudgetBytes (limits: { maxBufferSize: number }, deviceMemoryGiB?: number): number {
  const fromRam = deviceMemoryGiB !== undefined && deviceMemoryGiB > 0 ? deviceMemoryGiB * 2 ** 30 * PAGE_BUDGET_SHARE : 0
  const fromLimits = 4 * limits.maxBufferSize
  return Math.round(Math.min(PAGE_BUDGET_CAP_BYTES, Math.max(PAGE_BUDGET_FLOOR_BYTES, fromRam > 0 ? fromRam : fromLimits)))
}
