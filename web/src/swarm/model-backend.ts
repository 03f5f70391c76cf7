/**
 * The swarm roles on the real model (web/src/model): a block server's span, an expert host's
 * experts, and a client's embedding + head. Works on either backend (WebGPU or the CPU twins).
 */
import type { Backend } from '../gpu/backend.ts'
import { add } from '../gpu/ops/elementwise.ts'
import { keep, tidy, type Tensor } from '../gpu/tensor.ts'
import { BlockSpan, CausalLM, loadBlocks, loadConfig, loadPart, type KvCache, type LoadOptions } from '../model/model.ts'
import type { ModelConfig } from '../model/config.ts'
import type { DecoderBlock } from '../model/block.ts'
import { runExperts, type MoeLayer } from '../model/moe.ts'
import type { ModelSource } from '../model/source.ts'
import { positionsTensor } from '../model/tensors.ts'
import { SwarmArgumentError } from './errors.ts'
import type { ClientEnds } from './client/generate.ts'
import type { ExpertRunner } from './moe/expert-host.ts'
import type { RemoteExperts } from './moe/remote-experts.ts'
import type { CoSelectionStats } from './moe/coselection.ts'
import type { SpanBackend, SpanCache, SpanStep } from './server/backend.ts'
import { forwardBatched } from './server/batched-span.ts'

/** f32 bytes. */
const F32 = 4

class ModelSpanCache implements SpanCache {
  constructor (readonly kv: KvCache, readonly span: BlockSpan) {}
  get length (): number { return this.kv.length }
  get capacity (): number { return this.kv.capacity }
  get start (): number { return this.span.range.start }
  get end (): number { return this.span.range.end }
  dispose (): void { this.kv.dispose() }
}

export interface ModelSpanOptions {
  /** MoE layers whose experts run on other peers (DMoE); the router stays here. */
  remoteExperts?: { layers: ReadonlySet<number>, experts: RemoteExperts }
  /** Records each MoE layer's routing decisions (co-selection counts). */
  coselection?: CoSelectionStats
  /**
   * Run concurrent sessions' steps as one forward over their stacked rows (M > 1 matmuls;
   * server/batched-span.ts); false runs each session's span on its own rows. @default true
   */
  batching?: boolean
}

/** A block server's span on a loaded BlockSpan. */
export class ModelSpanBackend implements SpanBackend {
  readonly hiddenSize: number
  /** K and V rows of one position in one block: 2 × Hkv × D f32. */
  readonly cacheBytesPerToken: number
  private readonly subSpans = new Map<string, BlockSpan>()

  constructor (readonly model: string, readonly span: BlockSpan, private readonly opts: ModelSpanOptions = {}) {
    const c = span.config
    this.hiddenSize = c.hiddenSize
    this.cacheBytesPerToken = 2 * c.numKvHeads * c.headDim * F32
  }

  get start (): number { return this.span.range.start }
  get end (): number { return this.span.range.end }
  get config (): ModelConfig { return this.span.config }

  /** Blocks [start, end) as their own BlockSpan over the same parameters (no copy). */
  private sub (start: number, end: number): BlockSpan {
    if (start < this.start || end > this.end || start >= end) throw new SwarmArgumentError(`blocks [${start}, ${end}) are not within [${this.start}, ${this.end})`)
    if (start === this.start && end === this.end) return this.span
    const key = `${start}:${end}`
    let s = this.subSpans.get(key)
    if (s === undefined) this.subSpans.set(key, (s = new BlockSpan(this.span.config, { start, end }, this.span.params, this.span.backend)))
    return s
  }

  createCache (capacity: number, start: number, end: number): SpanCache {
    const s = this.sub(start, end)
    return new ModelSpanCache(s.newCache(capacity), s)
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    const be = this.span.backend
    const C = this.hiddenSize
    const remote = this.opts.remoteExperts
    const needsAsync = remote !== undefined || this.opts.coselection !== undefined
    if (!needsAsync && this.opts.batching !== false) {
      // Continuous batching: sessions over the same blocks run as one forward on stacked rows.
      const groups = new Map<BlockSpan, number[]>()
      steps.forEach((s, i) => {
        const span = (s.cache as ModelSpanCache).span
        groups.set(span, [...groups.get(span) ?? [], i])
      })
      const res: Float32Array[] = new Array(steps.length)
      for (const [span, idx] of groups) {
        const outs = await forwardBatched(span, idx.map(i => ({ kv: (steps[i].cache as ModelSpanCache).kv, hidden: steps[i].hidden, tokens: steps[i].tokens })))
        idx.forEach((i, j) => { res[i] = outs[j] })
      }
      return res
    }
    if (!needsAsync) {
      // Encode every session's span, then read all: one submission for the batch on WebGPU.
      const outs = steps.map(s => {
        const c = s.cache as ModelSpanCache
        return tidy(() => c.span.forward(be.tensor(s.hidden, [s.tokens, C]), c.kv))
      })
      try {
        return await Promise.all(outs.map(async o => await o.readF32()))
      } finally {
        for (const o of outs) o.dispose()
      }
    }
    const res: Float32Array[] = []
    for (const s of steps) res.push(await this.forwardAsync(s))
    return res
  }

  /** One step block by block, with MoE layers' experts possibly on other peers. */
  private async forwardAsync (s: SpanStep): Promise<Float32Array> {
    const c = s.cache as ModelSpanCache
    const be = this.span.backend
    const start = c.kv.length
    if (start + s.tokens > c.kv.capacity) throw new SwarmArgumentError(`${s.tokens} tokens exceed the cache's remaining ${c.kv.capacity - start}`)
    const positions = positionsTensor(be, start, s.tokens)
    const choices: Int32Array[] = []
    let h = be.tensor(s.hidden, [s.tokens, this.hiddenSize])
    try {
      for (let j = 0; j < c.span.blocks.length; j++) {
        const block = c.span.blocks[j]
        const ctx = { positions, start, cache: c.kv.layers[j] }
        const layer = block.index
        let y: Tensor
        if (block.moe !== undefined && (this.opts.remoteExperts?.layers.has(layer) === true || this.opts.coselection !== undefined)) {
          y = await this.moeBlock(block, block.moe, h, ctx, choices)
        } else {
          const x = h
          y = tidy(() => block.forward(x, ctx).y)
        }
        h.dispose()
        h = y
      }
      c.kv.length += s.tokens
      if (this.opts.coselection !== undefined && choices.length === this.opts.coselection.numLayers) this.opts.coselection.record(choices, this.span.config.expertsPerToken)
      return await h.readF32()
    } finally {
      h.dispose()
      positions.dispose()
    }
  }

  /**
   * A MoE block whose experts may run elsewhere: the block runs with its MoE branch swapped for
   * zeros (so it yields x2 = x + attention, writing the KV cache), capturing the branch's input
   * xn2; then route → gather → experts (remote or local) → combine, and y = x2 + moe(xn2), which
   * is the same sum DecoderBlock.forward computes.
   */
  private async moeBlock (block: DecoderBlock, moe: MoeLayer, x: Tensor, ctx: { positions: Tensor, start: number, cache: KvCache['layers'][number] }, choices: Int32Array[]): Promise<Tensor> {
    let xn2: Tensor | undefined
    const capture = Object.create(moe) as MoeLayer
    capture.forward = (t: Tensor) => {
      xn2 = keep(t)
      return { y: t.backend.zeros(t.shape) }
    }
    const shadow = Object.create(block, { moe: { value: capture } }) as DecoderBlock
    const x2 = tidy(() => shadow.forward(x, ctx).y)
    if (xn2 === undefined) throw new Error(`layer ${block.index}: MoE branch was not reached`)
    const input = xn2
    const { xs: xsT, ...routing } = tidy(() => {
      const r = moe.route(input)
      return { ...r, xs: moe.gather(input, r) }
    })
    const [offsets, experts] = await Promise.all([routing.offsets.read(), routing.experts.read()])
    choices.push(Int32Array.from(experts as ArrayLike<number>))
    let ysT: Tensor
    const remote = this.opts.remoteExperts
    if (remote !== undefined && remote.layers.has(block.index)) {
      const ys = await remote.experts.run(block.index, await xsT.readF32(), offsets as ArrayLike<number>)
      ysT = x.backend.tensor(ys, xsT.shape)
    } else {
      ysT = runExperts(moe.experts, xsT, routing.offsets)
    }
    const y = tidy(() => add(x2, moe.combine(ysT, routing)))
    for (const t of [x2, input, xsT, ysT, routing.logits, routing.weights, routing.experts, routing.order, routing.slotRow, routing.offsets]) t.dispose()
    return y
  }

  dispose (): void {
    for (const t of this.span.params.values()) t.dispose()
    this.span.params.clear()
  }
}

/** Loads blocks [start, end) of the model at `source` as a span backend. */
export async function loadSpanBackend (source: ModelSource, be: Backend, model: string, start: number, end: number, opts: ModelSpanOptions = {}, load: LoadOptions = {}): Promise<ModelSpanBackend> {
  const span = await loadBlocks(source, be, { start, end }, load)
  return new ModelSpanBackend(model, span, opts)
}

/**
 * Hosts some experts of some MoE layers. Runs each call's experts in one grouped kernel over the
 * layer's stacked weights: rows sorted by expert with offsets, as the local layer runs them.
 */
export class ModelExpertRunner implements ExpertRunner {
  readonly hiddenSize: number
  readonly hosted: ReadonlyMap<number, ReadonlySet<number>>

  constructor (readonly model: string, private readonly layers: ReadonlyMap<number, MoeLayer>, hosted: ReadonlyMap<number, ReadonlySet<number>>) {
    const first = [...layers.values()][0]
    if (first === undefined) throw new SwarmArgumentError('an expert host needs at least one MoE layer')
    this.hiddenSize = first.config.hiddenSize
    for (const l of hosted.keys()) if (!layers.has(l)) throw new SwarmArgumentError(`layer ${l} is not loaded`)
    this.hosted = hosted
  }

  async run (layer: number, items: ReadonlyArray<{ expert: number, rows: Float32Array, count: number }>): Promise<Float32Array[]> {
    const moe = this.layers.get(layer)
    if (moe === undefined) throw new SwarmArgumentError(`layer ${layer} is not loaded`)
    const C = this.hiddenSize
    const E = moe.config.numExperts
    const sorted = [...items].sort((a, b) => a.expert - b.expert)
    const offsets = new Int32Array(E + 1)
    for (const it of sorted) offsets[it.expert + 1] = it.count
    for (let e = 0; e < E; e++) offsets[e + 1] += offsets[e]
    const N = offsets[E]
    if (N === 0) return items.map(() => new Float32Array(0))
    const xs = new Float32Array(N * C)
    for (const it of sorted) xs.set(it.rows.subarray(0, it.count * C), offsets[it.expert] * C)
    const be = moe.gate.backend
    const ys = tidy(() => runExperts(moe.experts, be.tensor(xs, [N, C]), be.tensor(offsets, [E + 1], 'i32')))
    const out = await ys.readF32()
    ys.dispose()
    return items.map(it => out.slice(offsets[it.expert] * C, offsets[it.expert + 1] * C))
  }
}

/** Loads the MoE layers named in `hosted` (layer → experts) and returns a runner for them. */
export async function loadExpertRunner (source: ModelSource, be: Backend, model: string, hosted: ReadonlyMap<number, ReadonlySet<number>>): Promise<ModelExpertRunner> {
  const layers = new Map<number, MoeLayer>()
  for (const l of hosted.keys()) {
    // Loads the whole block (attention too): the weights reader loads by parameter, not by expert slice.
    const span = await loadBlocks(source, be, { start: l, end: l + 1 })
    const moe = span.blocks[0].moe
    if (moe === undefined) throw new SwarmArgumentError(`layer ${l} is not a MoE layer`)
    layers.set(l, moe)
  }
  return new ModelExpertRunner(model, layers, hosted)
}

/** A client's ends on a CausalLM whose span is empty (or the whole model, for references). */
export function modelEnds (lm: CausalLM): ClientEnds {
  const be = lm.backend
  const C = lm.config.hiddenSize
  return {
    eosTokenIds: lm.config.eosTokenIds,
    async embed (ids) {
      const t = lm.embedding.forward(ids)
      const d = await t.readF32()
      t.dispose()
      return d
    },
    async logits (hidden) {
      if (hidden.length !== C) throw new SwarmArgumentError(`logits: hidden must be (C=${C}), got ${hidden.length}`)
      const l = tidy(() => lm.head.forward(be.tensor(hidden, [1, C])))
      const d = await l.readF32()
      l.dispose()
      return d
    }
  }
}

/** Loads only the config, embedding and head: what `generate --bootstrap` needs locally. */
export async function loadClientEnds (source: ModelSource, be: Backend, load: LoadOptions = {}): Promise<{ config: ModelConfig, lm: CausalLM, ends: ClientEnds }> {
  const config = load.config ?? await loadConfig(source)
  const { params } = await loadPart(source, be, { blocks: { start: 0, end: 0 }, embedding: true, head: true }, { ...load, config })
  const lm = new CausalLM(config, params, be, undefined, { start: 0, end: 0 })
  return { config, lm, ends: modelEnds(lm) }
}
