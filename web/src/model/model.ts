import type { Backend } from '../gpu/backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import { addInPlace } from '../gpu/ops/elementwise.ts'
import { embedding, embeddingBackward } from '../gpu/ops/embedding.ts'
import { linear, linearBackward } from '../gpu/ops/matmul.ts'
import { rmsnorm, rmsnormBackward } from '../gpu/ops/norm.ts'
import { keep, tidy, type Tensor } from '../gpu/tensor.ts'
import { Rng } from '../util/rng.ts'
import { DecoderBlock, type BlockTape, type GradSink, type LayerCache } from './block.ts'
import { parseConfig, type ModelConfig } from './config.ts'
import { MissingTensorError, ModelArgumentError, SessionError, TokenizerError, UnsupportedDTypeError } from './errors.ts'
import { EMBED, FINAL_NORM, LM_HEAD, checkRange, partParams, wholeModel, type BlockRange, type ParamSpec, type PartSpec } from './params.ts'
import { isGgufName, sourceFrom, type ModelSource } from './source.ts'
import { positionsTensor, intTensor } from './tensors.ts'
import { loadTokenizer, type TextTokenizer } from './tokenizer.ts'
import { GgufModelFile } from './gguf/load.ts'
import { WeightIndex, checkFinite, loadHostParams, loadHostWeights, readConfigJson, type HostParam, type HostWeights, type ProgressFn } from './weights.ts'

/** Parameters by in-memory name (see params.ts), on one backend. */
export type ParamStore = Map<string, Tensor>

/** HF initialisation (`initializer_range` 0.02): normal weights, unit norms, zero biases. */
const INIT_STD = 0.02

/** Host weights → tensors on a backend (outside any tidy scope: they live until disposed). */
export function uploadParams (be: Backend, host: HostWeights): ParamStore {
  const out: ParamStore = new Map()
  for (const [name, { shape, data }] of host) out.set(name, keep(be.tensor(data, shape)))
  return out
}

/** One host parameter → a tensor (f32 values, or a weight's bytes in its file dtype). */
export function uploadParam (be: Backend, p: HostParam): Tensor {
  return keep(p.dtype === 'f32' ? be.tensor(p.data as Float32Array, p.shape) : be.tensor(p.data as Uint8Array, p.shape, p.dtype))
}

/** Throws unless every parameter is f32: gradients and optimizer steps are defined on f32 only. */
export function assertTrainable (params: ReadonlyMap<string, Tensor>): void {
  for (const [name, t] of params) {
    if (t.dtype !== 'f32') throw new UnsupportedDTypeError(`cannot train '${name}' stored as ${t.dtype}: quantized and 16-bit weights are for inference (load with keepDtypes: false to train 16-bit weights in f32)`)
  }
}

/** Fresh seeded parameters for training from scratch. */
export function initHostWeights (specs: readonly ParamSpec[], seed: number): HostWeights {
  const rng = new Rng(seed)
  const out: HostWeights = new Map()
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    const data = new Float32Array(n)
    if (s.name.endsWith('norm.weight')) data.fill(1)
    else if (!s.name.endsWith('.bias')) for (let i = 0; i < n; i++) data[i] = INIT_STD * rng.normal()
    out.set(s.name, { shape: s.shape, data })
  }
  return out
}

function validIds (ids: ArrayLike<number>, vocab: number): Int32Array {
  const a = Int32Array.from(ids as ArrayLike<number>)
  for (const id of a) if (id < 0 || id >= vocab) throw new TokenizerError(`token id ${id} is outside the vocabulary [0, ${vocab})`)
  return a
}

/** Token ids → hidden states. */
export class Embedding {
  constructor (readonly config: ModelConfig, readonly table: Tensor) {}

  /** ids (T) → (T, C) */
  forward (ids: ArrayLike<number>): Tensor {
    return tidy(() => embedding(intTensor(this.table.backend, validIds(ids, this.config.vocabSize)), this.table))
  }

  backward (ids: ArrayLike<number>, dh: Tensor, grads: GradSink): void {
    assertTrainable(new Map([[EMBED, this.table]]))
    const t = intTensor(this.table.backend, validIds(ids, this.config.vocabSize))
    grads(EMBED, embeddingBackward(t, dh, this.config.vocabSize))
    t.dispose()
  }
}

/** Final RMSNorm + LM head (tied heads read the embedding table). */
export class Head {
  readonly headName: string
  constructor (readonly config: ModelConfig, readonly norm: Tensor, readonly weight: Tensor) {
    this.headName = config.tieWordEmbeddings ? EMBED : LM_HEAD
  }

  /** h (T, C) → logits (T, V) */
  forward (h: Tensor): Tensor {
    return tidy(() => linear(rmsnorm(h, this.norm, this.config.rmsNormEps), this.weight))
  }

  forwardTape (h: Tensor): { logits: Tensor, hn: Tensor } {
    assertTrainable(new Map([[FINAL_NORM, this.norm], [this.headName, this.weight]]))
    const hn = rmsnorm(h, this.norm, this.config.rmsNormEps)
    return { logits: linear(hn, this.weight), hn }
  }

  /** dlogits (T, V) → dh (T, C) */
  backward (h: Tensor, hn: Tensor, dLogits: Tensor, grads: GradSink): Tensor {
    const l = linearBackward(hn, this.weight, dLogits, false)
    grads(this.headName, l.dw)
    const n = rmsnormBackward(h, this.norm, l.dx, this.config.rmsNormEps)
    grads(FINAL_NORM, n.dw)
    return n.dx
  }
}

/** The KV cache's dtype when none is asked for: f16 on a GPU backend with shader-f16, else f32. */
function defaultKvDtype (be: Backend): 'f32' | 'f16' {
  return be.kind === 'webgpu' && (be as GpuBackend).info.f16 ? 'f16' : 'f32'
}

/**
 * The KV cache of one inference session over one span of blocks: capacity S positions per layer.
 * `length` counts the positions already written (the next call's first position). `dtype` 'f16'
 * halves its memory on adapters with `shader-f16` (attention widens on load, as llama.cpp's
 * default f16 cache does).
 */
export class KvCache {
  readonly layers: LayerCache[] = []
  length = 0

  constructor (readonly span: BlockSpan, readonly capacity: number, readonly dtype: 'f32' | 'f16' = 'f32') {
    const c = span.config
    if (!Number.isInteger(capacity) || capacity < 1) throw new SessionError(`KV cache capacity must be a positive integer, got ${capacity}`)
    if (c.slidingWindow !== undefined && capacity > c.slidingWindow) throw new SessionError(`KV cache capacity ${capacity} exceeds sliding_window ${c.slidingWindow} (sliding-window attention is not implemented; use a shorter session)`)
    const be = span.backend
    for (let i = span.range.start; i < span.range.end; i++) {
      this.layers.push({ k: keep(be.zeros([capacity, c.numKvHeads, c.headDim], dtype)), v: keep(be.zeros([capacity, c.numKvHeads, c.headDim], dtype)) })
    }
  }

  get remaining (): number { return this.capacity - this.length }

  /** Forgets the last positions (e.g. to replay or branch); the rows are overwritten next call. */
  truncate (length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new SessionError(`truncate to ${length}: cache holds ${this.length}`)
    this.length = length
  }

  dispose (): void {
    for (const l of this.layers) { l.k.dispose(); l.v.dispose() }
    this.layers.length = 0
  }
}

/**
 * Decoder layers [start, end) of a model: the unit a peer serves. Runs on hidden states it
 * receives, with or without a session cache; trains with a tape.
 */
export class BlockSpan {
  readonly blocks: DecoderBlock[] = []

  constructor (readonly config: ModelConfig, readonly range: BlockRange, readonly params: ParamStore, readonly backend: Backend) {
    checkRange(config, range)
    for (let i = range.start; i < range.end; i++) this.blocks.push(new DecoderBlock(config, i, params))
  }

  /**
   * A session cache for up to `capacity` positions; 'f16' needs `shader-f16` on a GPU backend.
   * @default dtype f16 where the device has shader-f16 (half the memory per session), else f32
   */
  newCache (capacity: number, dtype: 'f32' | 'f16' = defaultKvDtype(this.backend)): KvCache {
    return new KvCache(this, capacity, dtype)
  }

  /**
   * hidden (T, C) → (T, C). With a cache, the rows sit at positions [cache.length, +T) and the
   * cache grows by T; without one, at [start, start + T) attending only to each other.
   */
  forward (hidden: Tensor, cache?: KvCache, start = cache?.length ?? 0): Tensor {
    const T = hidden.shape[0]
    if (hidden.rank !== 2 || hidden.shape[1] !== this.config.hiddenSize) throw new ModelArgumentError(`span forward: hidden must be (T, ${this.config.hiddenSize}), got (${hidden.shape.join(', ')})`)
    if (cache !== undefined) {
      if (cache.span !== this) throw new SessionError('span forward: cache belongs to another span')
      if (start !== cache.length) throw new SessionError(`span forward: start ${start} != cache length ${cache.length}`)
      if (T > cache.remaining) throw new SessionError(`span forward: ${T} tokens exceed the cache's remaining ${cache.remaining} of ${cache.capacity}`)
    } else if (this.config.slidingWindow !== undefined && start + T > this.config.slidingWindow) {
      throw new SessionError(`span forward: ${start + T} positions exceed sliding_window ${this.config.slidingWindow} (not implemented)`)
    }
    const positions = positionsTensor(this.backend, start, T)
    let h = hidden
    this.blocks.forEach((b, i) => {
      const x = h
      h = tidy(() => b.forward(x, { positions, start, cache: cache?.layers[i] }).y) // frees the block's intermediates
      if (x !== hidden) x.dispose()
    })
    positions.dispose()
    if (cache !== undefined) cache.length += T
    if (h === hidden) return hidden.reshape(hidden.shape) // empty span: a view, so callers may dispose both
    return h
  }

  /** Training forward from position `start`: keeps one tape per block. */
  forwardTape (hidden: Tensor, start = 0): { out: Tensor, tapes: BlockTape[] } {
    assertTrainable(this.params)
    const positions = positionsTensor(this.backend, start, hidden.shape[0])
    const tapes: BlockTape[] = []
    let h = hidden
    for (const b of this.blocks) {
      const r = b.forward(h, { positions, start, tape: true })
      if (r.tape === undefined) throw new Error('block forward returned no tape')
      tapes.push(r.tape)
      h = r.y
    }
    return { out: h, tapes }
  }

  /** d out → d hidden; parameter gradients go to `grads`. */
  backward (tapes: readonly BlockTape[], dOut: Tensor, grads: GradSink): Tensor {
    let d = dOut
    for (let i = this.blocks.length - 1; i >= 0; i--) d = this.blocks[i].backward(tapes[i], d, grads)
    return d
  }
}

export interface LoadOptions {
  /** Byte/tensor progress for progress bars. */
  onProgress?: ProgressFn
  /** Parsed config (skips reading config.json or the GGUF metadata). */
  config?: ModelConfig
  /**
   * Keep weights in their file encoding on the backend (GGUF block types, F16/BF16), norms and
   * biases in f32; false widens everything to f32 on the host (what training needs).
   * @default true (inference); training loads pass false
   */
  keepDtypes?: boolean
}

/** The GGUF file a source stands for, or undefined for a safetensors directory. */
export function ggufFileOf (source: ModelSource): string | undefined {
  return source.file !== undefined && isGgufName(source.file) ? source.file : undefined
}

/** Opened GGUF files by source: the header is read once per source, however many loads follow. */
const ggufFiles = new WeakMap<ModelSource, Promise<GgufModelFile>>()

/** The opened GGUF model file of a source (header and config), cached per source. */
export function openGguf (source: ModelSource): Promise<GgufModelFile> {
  const file = ggufFileOf(source)
  if (file === undefined) throw new ModelArgumentError(`${source.label}: not a GGUF source (no .gguf file)`)
  let f = ggufFiles.get(source)
  if (f === undefined) {
    f = GgufModelFile.open(source, file)
    ggufFiles.set(source, f)
    f.catch(() => ggufFiles.delete(source)) // a failed read may be retried
  }
  return f
}

/** The model's configuration: config.json, or a GGUF file's metadata. */
export async function loadConfig (source: ModelSource): Promise<ModelConfig> {
  if (ggufFileOf(source) !== undefined) return (await openGguf(source)).config
  return parseConfig(await readConfigJson(source))
}

/**
 * Loads the parameters of a part (span of blocks and/or embedding/head) onto a backend, reading
 * only their bytes; each read is uploaded before the next (host memory stays ~one read).
 */
export async function loadPart (source: ModelSource, be: Backend, part: PartSpec, opts: LoadOptions = {}): Promise<{ config: ModelConfig, params: ParamStore }> {
  const config = opts.config ?? await loadConfig(source)
  const specs = partParams(config, part)
  const params: ParamStore = new Map()
  const put = (name: string, p: HostParam): void => { params.set(name, uploadParam(be, p)) }
  try {
    if (ggufFileOf(source) !== undefined) {
      await (await openGguf(source)).load(specs, put, { keepDtypes: opts.keepDtypes ?? true, onProgress: opts.onProgress })
    } else if (opts.keepDtypes !== false) {
      await loadHostParams(await WeightIndex.open(source), specs, put, opts.onProgress)
    } else {
      const host = await loadHostWeights(await WeightIndex.open(source), specs, opts.onProgress)
      checkFinite(host)
      for (const [name, w] of host) put(name, { shape: w.shape, dtype: 'f32', data: w.data })
    }
  } catch (e) {
    for (const t of params.values()) t.dispose() // a failed load frees what it uploaded
    throw e
  }
  return { config, params }
}

/** Loads only decoder layers [range.start, range.end) — what a block server needs. */
export async function loadBlocks (source: ModelSource, be: Backend, range: BlockRange, opts: LoadOptions = {}): Promise<BlockSpan> {
  const { config, params } = await loadPart(source, be, { blocks: range, embedding: false, head: false }, opts)
  return new BlockSpan(config, range, params, be)
}

/** The full model (or a client's ends: embedding + head with an empty span). */
export class CausalLM {
  readonly embedding: Embedding
  readonly head: Head
  readonly span: BlockSpan

  constructor (readonly config: ModelConfig, readonly params: ParamStore, readonly backend: Backend, readonly tokenizer?: TextTokenizer, range: BlockRange = { start: 0, end: config.numLayers }) {
    const get = (n: string): Tensor => {
      const t = params.get(n)
      if (t === undefined) throw new MissingTensorError(n, 'not loaded')
      return t
    }
    this.embedding = new Embedding(config, get(EMBED))
    this.head = new Head(config, get(FINAL_NORM), get(config.tieWordEmbeddings ? EMBED : LM_HEAD))
    this.span = new BlockSpan(config, range, params, backend)
  }

  /** Logits (T, V) at every position of `ids` (no session). */
  logits (ids: ArrayLike<number>): Tensor {
    return tidy(() => this.head.forward(this.span.forward(this.embedding.forward(ids), undefined, 0)))
  }

  /** Names and shapes of every parameter, in HF layout with stacked experts. */
  paramSpecs (): ParamSpec[] {
    return partParams(this.config, wholeModel(this.config))
  }

  dispose (): void {
    for (const t of this.params.values()) t.dispose()
    this.params.clear()
  }
}

/** Loads a whole model (weights, config, tokenizer) from a directory, URL or Files. */
export async function loadModel (where: string | ModelSource, be: Backend, opts: LoadOptions = {}): Promise<CausalLM> {
  const source = typeof where === 'string' ? sourceFrom(where) : where
  const config = opts.config ?? await loadConfig(source)
  const { params } = await loadPart(source, be, wholeModel(config), { ...opts, config })
  const gguf = ggufFileOf(source) === undefined ? undefined : await openGguf(source)
  const tokenizer = await loadTokenizer(source, config.vocabSize, gguf?.header.metadata) // a GGUF's header is read once
  return new CausalLM(config, params, be, tokenizer)
}

/** A fresh model with seeded random weights (training from scratch). */
export function initModel (config: ModelConfig, be: Backend, seed: number, tokenizer?: TextTokenizer): CausalLM {
  const host = initHostWeights(partParams(config, wholeModel(config)), seed)
  return new CausalLM(config, uploadParams(be, host), be, tokenizer)
}

/** Adds `g` into the slot `name` of a gradient store (the first one is kept as is). */
export function gradAccumulator (store: ParamStore): GradSink {
  return (name, g) => {
    const cur = store.get(name)
    if (cur === undefined) store.set(name, keep(g))
    else addInPlace(cur, g)
  }
}
