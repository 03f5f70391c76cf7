/**
 * This tab's contribution to the swarm: serve a span of the page's model's blocks. The span is
 * given (`A:B`) or chosen by the tab itself — the least-served window (Petals' rule, ServerRole)
 * as long as the GPU-memory budget allows (memory-plan.ts); it is announced to the DHT for routing
 * and mirrored into this tab's swarm entry for the map. Stopping announces OFFLINE and frees it.
 *
 * The blocks run in a Web Worker with its own WebGPU device (compute/), so that the page stays
 * responsive while it serves; `?compute=main` runs them on the page's thread instead.
 */
import type { Backend } from '../gpu/backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import type { ModelConfig } from '../model/config.ts'
import { MemoryBudgetError, checkBudget, costliestBlockPlan, formatBytes, pageBudgetBytes, planPart, readPlanTensors, spanLengthThatFits } from '../model/memory-plan.ts'
import { loadConfig } from '../model/model.ts'
import { sourceFrom } from '../model/source.ts'
import { DhtDirectory } from '../swarm/dht-directory.ts'
import { loadSpanBackend } from '../swarm/model-backend.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import { WorkerSpanBackend } from './compute/worker-span-backend.ts'
import type { PageContext } from './context.ts'
import { PageParamError } from './errors.ts'
import type { ProgressBar } from './progress-bar.ts'

/** KV-cache positions a serving tab offers (one chat's context). */
const SERVE_CACHE_TOKENS = 2048
/** The map's copy of this tab's throughput is rewritten at most this often, ms (each write is a signed CRDT update to every peer). */
const MIRROR_MIN_MS = 10_000
/** ... and only when the measurement moved by more than this fraction. */
const MIRROR_CHANGE = 0.1
/** An automatically chosen span moves when Petals' rebalancing rule says so, checked this often, ms. */
const REBALANCE_MS = 60_000

export interface ContributionStatus {
  model: string
  state: string
  span?: { start: number, end: number }
  numBlocks?: number
  /** Sessions open now. */
  sessions: number
  steps: number
  /** Tokens that went through this tab's blocks. */
  tokens: number
  /** Measured tokens/s through one block. */
  throughput: number
  /** GPU memory the span needs by the plan (weights + KV for one session + scratch), bytes. */
  plannedBytes?: number
  budgetBytes?: number
  startedAt?: number
  device: string
  /** 'worker' or 'page': where the blocks run. */
  computeIn: string
}

/** The libp2p pieces serving and chatting share (one transport per node). */
export interface SwarmPieces {
  transport: Libp2pTransport
  directory: DhtDirectory
  config: ModelConfig
}

/** One per page: the transport/directory the chat client and the block server share. */
export function swarmPieces (ctx: PageContext): () => Promise<SwarmPieces> {
  let pieces: Promise<SwarmPieces> | undefined
  return async () => {
    pieces ??= (async () => {
      const swarm = await ctx.swarm()
      const config = await loadConfig(sourceFrom(ctx.params.modelUrl))
      return {
        transport: new Libp2pTransport(swarm.node),
        directory: new DhtDirectory(swarm.dht, swarm.peerId, { numBlocks: config.numLayers, numExperts: config.numExperts }),
        config
      }
    })()
    // A failed attempt (relay down, model missing) is retried on the next call.
    return await pieces.catch(e => { pieces = undefined; throw e })
  }
}

/** The page's default budget: `?max-gpu-memory=`, else derived from the adapter; none on the CPU twins. */
export function defaultBudget (ctx: PageContext, be: Backend): number | undefined {
  if (ctx.params.maxGpuMemory !== undefined) return ctx.params.maxGpuMemory
  if (be.kind !== 'webgpu') return undefined
  return pageBudgetBytes((be as GpuBackend).info.limits, (navigator as Navigator & { deviceMemory?: number }).deviceMemory)
}

export class Contribution {
  role?: ServerRole
  private startedAt?: number
  private plannedBytes?: number
  private budgetBytes?: number
  private numBlocks?: number
  private starting?: Promise<{ start: number, end: number }>
  /** When the role was last written into the swarm entry, and with which throughput. */
  private mirrored?: { at: number, throughput: number }

  constructor (private readonly ctx: PageContext, private readonly pieces: () => Promise<SwarmPieces>, private readonly progress: ProgressBar) {}

  get active (): boolean {
    return this.role !== undefined
  }

  /**
   * Serves `spec` ('A:B', or 'auto' for the tab's own choice) within `budgetBytes` (undefined: no
   * budget, the CPU twins). Resolves with the span once ONLINE; MemoryBudgetError when not even
   * one block fits (its message names the costliest block's needs).
   */
  async start (spec = 'auto', budgetBytes?: number): Promise<{ start: number, end: number }> {
    if (this.role?.currentSpan !== undefined && this.role.state === 'online') return this.role.currentSpan
    this.starting ??= this.startOnce(spec, budgetBytes).finally(() => { this.starting = undefined })
    return await this.starting
  }

  private async startOnce (spec: string, budgetGiven?: number): Promise<{ start: number, end: number }> {
    const { transport, directory, config } = await this.pieces()
    const be = await this.ctx.backend()
    const m = /^(\d+):(\d+)$/.exec(spec)
    if (m === null && spec !== 'auto') throw new PageParamError(`serve "${spec}": want A:B (blocks A to B-1) or auto`)
    const span = m === null ? undefined : { start: Number(m[1]), end: Number(m[2]) }
    const budget = budgetGiven ?? defaultBudget(this.ctx, be)
    const numServed = await this.blocksToServe(config, span, budget)
    const model = this.ctx.params.modelId
    const source = sourceFrom(this.ctx.params.modelUrl)
    this.numBlocks = config.numLayers
    this.budgetBytes = budget
    const role = this.role = new ServerRole({
      transport,
      directory,
      model,
      numBlocks: config.numLayers,
      span,
      numServed,
      loadSpan: async (s, e) => {
        this.plannedBytes = planPart(config, await readPlanTensors(source), { blocks: { start: s, end: e }, embedding: false, head: false }, { sessions: 1, context: SERVE_CACHE_TOKENS }).totalBytes
        const onProgress = this.progress.start(`${model} blocks ${s}–${e - 1}`)
        if (this.ctx.params.compute === 'main') return await loadSpanBackend(source, be, model, s, e, {}, { onProgress })
        // The worker opens its own device of the same kind (WebGPU, or the CPU twins).
        return await WorkerSpanBackend.load({ url: this.ctx.params.modelUrl, model, start: s, end: e, device: be.kind === 'webgpu' ? 'webgpu' : 'cpu', onProgress })
      },
      cacheBudgetBytes: SERVE_CACHE_TOKENS * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
      rebalanceMs: span === undefined ? REBALANCE_MS : 0,
      log: l => { this.ctx.log(l) },
      // The map and other tabs read who serves what from the swarm doc (the DHT is for routing).
      onAnnounce: r => { this.mirror(r.state, r.throughput) }
    })
    try {
      await role.start()
    } catch (e) {
      this.role = undefined
      // The start failure rethrown below is what the caller learns; a half-started role may fail to stop too.
      await role.stop().catch(() => {})
      throw e
    }
    this.startedAt = Date.now()
    document.body.dataset.serving = `${role.currentSpan!.start}:${role.currentSpan!.end}`
    return role.currentSpan!
  }

  /** Writes the role into this tab's swarm entry (what the map and other tabs read). */
  private mirror (state: string, throughput: number): void {
    const span = this.role?.currentSpan
    if (span === undefined) return
    this.mirrored = { at: Date.now(), throughput }
    void this.ctx.publishSelf({ serving: { model: this.ctx.params.modelId, start: span.start, end: span.end, blocks: this.numBlocks, state, throughput: Math.round(throughput * 10) / 10 } })
      .catch(e => { this.ctx.log(`mirroring the serving role failed: ${(e as Error).message}`) })
  }

  /**
   * Re-mirrors the measured throughput when it moved (announces come every few minutes; the
   * first measurement comes with the first steps). Called by the panel's status tick.
   */
  refreshMirror (): void {
    const r = this.role
    const tp = r?.server?.throughput
    if (r === undefined || r.state !== 'online' || tp === undefined || this.mirrored === undefined) return
    if (Date.now() - this.mirrored.at < MIRROR_MIN_MS) return
    if (Math.abs(tp - this.mirrored.throughput) <= MIRROR_CHANGE * Math.max(this.mirrored.throughput, 1e-6)) return
    this.mirror(r.state, tp)
  }

  /**
   * How many blocks to hold: a given span must fit the budget (refused with the numbers
   * otherwise); a chosen one is as long as fits in every window, at most half the model (so that
   * two tabs cover it).
   */
  private async blocksToServe (config: ModelConfig, span: { start: number, end: number } | undefined, budget: number | undefined): Promise<number> {
    const wanted = Math.max(1, Math.ceil(config.numLayers / 2))
    if (budget === undefined) return wanted
    const tensors = await readPlanTensors(sourceFrom(this.ctx.params.modelUrl))
    const plan = { sessions: 1, context: SERVE_CACHE_TOKENS }
    if (span !== undefined) {
      checkBudget(planPart(config, tensors, { blocks: span, embedding: false, head: false }, plan), budget)
      return wanted
    }
    const n = spanLengthThatFits(config, tensors, budget, plan)
    if (n === 0) throw new MemoryBudgetError(costliestBlockPlan(config, tensors, plan), budget)
    this.ctx.log(`GPU memory budget ${formatBytes(budget)}: up to ${n} of ${config.numLayers} blocks`)
    return Math.min(wanted, n)
  }

  /** Announces OFFLINE, frees the blocks and drops the role from this tab's entry. */
  async stop (): Promise<void> {
    const role = this.role
    if (role === undefined) return
    this.role = undefined
    this.startedAt = undefined
    this.mirrored = undefined
    await role.stop()
    delete document.body.dataset.serving
    // The patch stays in selfData, and the entry's periodic refresh publishes it again.
    await this.ctx.publishSelf({ serving: undefined }).catch(() => {})
  }

  status (): ContributionStatus {
    const r = this.role
    const s = r?.server
    return {
      model: this.ctx.params.modelId,
      state: r?.state ?? 'offline',
      span: r?.currentSpan,
      numBlocks: this.numBlocks,
      sessions: s?.sessions.size ?? 0,
      steps: s?.stats.steps ?? 0,
      tokens: s?.stats.tokens ?? 0,
      throughput: s?.throughput ?? 0,
      plannedBytes: this.plannedBytes,
      budgetBytes: this.budgetBytes,
      startedAt: this.startedAt,
      device: this.ctx.deviceLabel,
      computeIn: this.ctx.params.compute === 'main' ? 'page' : 'worker'
    }
  }
}
