/**
 * This tab's contribution to the swarm. With `A:B` it serves those blocks of the page's model;
 * otherwise the tab chooses its role itself (role-choice.ts) from what the swarm map sees —
 * blocks of the model that needs them most, experts an MoE model lacks, or a training run that
 * wants members — within the GPU-memory budget (memory-plan.ts), and keeps the reason for the
 * status line. Blocks are announced to the DHT for routing (a chosen span still rebalances by
 * Petals' rule) and mirrored into this tab's swarm entry for the map; experts likewise; a run is
 * joined through the Training panel. Stopping announces OFFLINE and frees it.
 *
 * Served blocks run in a Web Worker with its own WebGPU device (compute/), so that the page stays
 * responsive; `?compute=main` runs them on the page's thread instead. Hosted experts run on the
 * page's thread (their layer's weights, loaded by swarm/moe).
 */
import type { Backend } from '../gpu/backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import type { ModelConfig } from '../model/config.ts'
import { checkBudget, pageBudgetBytes, planPart, readPlanTensors } from '../model/memory-plan.ts'
import { loadConfig } from '../model/model.ts'
import { sourceFrom } from '../model/source.ts'
import { DhtDirectory } from '../swarm/dht-directory.ts'
import { ExpertRole, formatPlacement, loadExpertLayer, measureExpertThroughput } from '../swarm/moe/index.ts'
import { loadSpanBackend } from '../swarm/model-backend.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import { WorkerSpanBackend } from './compute/worker-span-backend.ts'
import { loadWorkerExpertLayer } from './compute/worker-expert-layer.ts'
import type { PageContext } from './context.ts'
import { NoRoleFitsError, PageParamError } from './errors.ts'
import type { ProgressBar } from './progress-bar.ts'
import { chooseRole, type Role } from './role-choice.ts'
import { gatherRoleInputs, loadableModels, readModel, SERVE_PLAN, type LoadableModel } from './role-inputs.ts'
import { blocksText } from './swarm-summary.ts'

/** The map's copy of this tab's throughput is rewritten at most this often, ms (each write is a signed CRDT update to every peer). */
const MIRROR_MIN_MS = 10_000
/** ... and only when the measurement moved by more than this fraction. */
const MIRROR_CHANGE = 0.1
/** An automatically chosen span moves when Petals' rebalancing rule says so, checked this often, ms. */
const REBALANCE_MS = 60_000

export interface ContributionStatus {
  /** The model served (blocks or experts), or the run's id when training. */
  model: string
  state: string
  /** The role taken and why (for the status line). */
  role?: Role
  reason?: string
  span?: { start: number, end: number }
  numBlocks?: number
  /** Sessions open now (blocks), or expert calls answered. */
  sessions: number
  steps: number
  /** Tokens that went through this tab's blocks (or rows through its experts). */
  tokens: number
  /** Measured tokens/s through one block (rows/s through one expert). */
  throughput: number
  /** GPU memory the role needs by the plan, bytes. */
  plannedBytes?: number
  budgetBytes?: number
  startedAt?: number
  device: string
  /** 'worker' or 'page': where the blocks run. */
  computeIn: string
}

/** The Training panel's side of a contribution that joins a run. */
export interface RunJoiner {
  /** Starts training run `run`; resolves once the tab takes part. */
  join: (run: string) => Promise<void>
  leave: () => void
  readonly running: boolean
}

/** The libp2p pieces serving and chatting share (one transport per node). */
export interface SwarmPieces {
  transport: Libp2pTransport
  directory: DhtDirectory
  config: ModelConfig
  /** A DHT directory for another model (its depth and experts bound its records). */
  directoryFor: (config: ModelConfig) => DhtDirectory
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
        config,
        directoryFor: c => new DhtDirectory(swarm.dht, swarm.peerId, { numBlocks: c.numLayers, numExperts: c.numExperts })
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


/** The role running now. */
type Active =
  | { kind: 'blocks', role: ServerRole, model: string, numBlocks: number }
  | { kind: 'experts', role: ExpertRole, model: string }
  | { kind: 'train', run: string }

export class Contribution {
  private active_?: Active
  private choice?: { role: Role, reason: string }
  private startedAt?: number
  private plannedBytes?: number
  private budgetBytes?: number
  private starting?: Promise<Role>
  private models?: Promise<Awaited<ReturnType<typeof loadableModels>>>
  /** When the block role was last written into the swarm entry, and with which throughput (undefined: not measured yet). */
  private mirrored?: { at: number, throughput: number | undefined }

  constructor (private readonly ctx: PageContext, private readonly pieces: () => Promise<SwarmPieces>, private readonly progress: ProgressBar, private readonly trainer?: RunJoiner) {}

  get active (): boolean {
    return this.active_ !== undefined
  }

  /** The block server, when the role is blocks (the chat's `state()` and tests read its span). */
  get role (): ServerRole | undefined {
    return this.active_?.kind === 'blocks' ? this.active_.role : undefined
  }

  /**
   * Serves `spec` ('A:B' of the page's model, or 'auto' for the tab's own choice) within
   * `budgetBytes` (undefined: the page's default). Resolves with the role once it runs;
   * NoRoleFitsError when no role fits (its message names the smallest role's needs).
   */
  async start (spec = 'auto', budgetBytes?: number): Promise<Role> {
    if (this.active_ !== undefined && this.choice !== undefined) return this.choice.role
    this.starting ??= this.startOnce(spec, budgetBytes).finally(() => { this.starting = undefined })
    return await this.starting
  }

  private async startOnce (spec: string, budgetGiven?: number): Promise<Role> {
    const m = /^(\d+):(\d+)$/.exec(spec)
    if (m === null && spec !== 'auto') throw new PageParamError(`serve "${spec}": want A:B (blocks A to B-1) or auto`)
    const pieces = await this.pieces()
    const be = await this.ctx.backend()
    const budget = this.budgetBytes = budgetGiven ?? defaultBudget(this.ctx, be)
    let choice: { role: Role, reason: string }
    let models: LoadableModel[]
    if (m !== null) {
      // Given blocks of the page's own model: nothing else to read.
      const own = await readModel({ id: this.ctx.params.modelId, url: this.ctx.params.modelUrl, own: true, files: await this.ctx.modelFiles(this.ctx.params.modelUrl) })
      models = [own]
      const span = { start: Number(m[1]), end: Number(m[2]) }
      if (budget !== undefined) checkBudget(planPart(own.config, own.tensors, { blocks: span, embedding: false, head: false }, SERVE_PLAN), budget)
      choice = { role: { kind: 'blocks', model: own.id, ...span }, reason: 'asked for' }
    } else {
      this.models ??= loadableModels(this.ctx)
      const loadable = await this.models.catch(e => { this.models = undefined; throw e })
      models = loadable.models
      const c = chooseRole(await gatherRoleInputs(await this.ctx.swarm(), models, loadable.unloadable, budget, l => { this.ctx.log(l) }))
      for (const x of c.skipped) this.ctx.log(`contribute: skipped ${x}`)
      if (c.role === undefined) throw new NoRoleFitsError(c.reason, c.smallest)
      choice = { role: c.role, reason: c.reason }
      this.ctx.log(`contribute: chose ${c.reason}`)
    }
    this.choice = choice
    const r = choice.role
    try {
      if (r.kind === 'train') await this.startTraining(r.run)
      else {
        const model = models.find(x => x.id === r.model)!
        if (r.kind === 'blocks') await this.startBlocks(pieces, be, model, { start: r.start, end: r.end }, m !== null)
        else await this.startExperts(pieces, be, model, r.layer, r.experts)
      }
    } catch (e) {
      this.choice = undefined
      throw e
    }
    this.startedAt = Date.now()
    return r
  }

  private async startBlocks (pieces: SwarmPieces, be: Backend, model: LoadableModel, span: { start: number, end: number }, fixed: boolean): Promise<void> {
    const { config, id, url, files } = model
    const role = new ServerRole({
      transport: pieces.transport,
      directory: model.own ? pieces.directory : pieces.directoryFor(config),
      model: id,
      numBlocks: config.numLayers,
      ...(fixed ? { span } : { firstSpan: span, numServed: span.end - span.start }),
      loadSpan: async (s, e) => {
        this.plannedBytes = planPart(config, model.tensors, { blocks: { start: s, end: e }, embedding: false, head: false }, SERVE_PLAN).totalBytes
        const onProgress = this.progress.start(`${id} ${blocksText(s, e)}`)
        if (this.ctx.params.compute === 'main') return await loadSpanBackend(sourceFrom(url, { files }), be, id, s, e, {}, { onProgress })
        // The worker opens its own device of the same kind (WebGPU, or the CPU twins).
        return await WorkerSpanBackend.load({ url, files, model: id, start: s, end: e, device: be.kind === 'webgpu' ? 'webgpu' : 'cpu', onProgress })
      },
      cacheBudgetBytes: SERVE_PLAN.context * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
      rebalanceMs: fixed ? 0 : REBALANCE_MS,
      log: l => { this.ctx.log(l) },
      // The map and other tabs read who serves what from the swarm doc (the DHT is for routing).
      onAnnounce: () => { this.mirror() }
    })
    await this.startActive({ kind: 'blocks', role, model: id, numBlocks: config.numLayers })
    document.body.dataset.serving = `${role.currentSpan!.start}:${role.currentSpan!.end}`
  }

  /** Makes `a` the active role and starts it; a role that fails to start is stopped and forgotten. */
  private async startActive (a: Extract<Active, { role: unknown }>): Promise<void> {
    this.active_ = a
    try {
      await a.role.start()
    } catch (e) {
      this.active_ = undefined
      // The start failure rethrown below is what the caller learns; a half-started role may fail to stop too.
      await a.role.stop().catch(() => {})
      throw e
    }
  }

  private async startExperts (pieces: SwarmPieces, be: Backend, model: LoadableModel, layer: number, experts: number[]): Promise<void> {
    const { config, id, url, files } = model
    this.plannedBytes = planPart(config, model.tensors, { blocks: { start: layer, end: layer + 1 }, embedding: false, head: false }, { sessions: 1, context: 1 }).totalBytes
    const role: ExpertRole = new ExpertRole({
      transport: pieces.transport,
      directory: model.own ? pieces.directory : pieces.directoryFor(config),
      model: id,
      hiddenSize: config.hiddenSize,
      numExperts: config.numExperts,
      layers: [layer],
      hosted: new Map([[layer, new Set(experts)]]),
      loadLayer: async l => {
        // The worker opens its own device of the same kind (WebGPU, or the CPU twins).
        const loaded = this.ctx.params.compute === 'main'
          ? await loadExpertLayer(sourceFrom(url, { files }), be, id, l)
          : await loadWorkerExpertLayer({ url, files, model: id, layer: l, device: be.kind === 'webgpu' ? 'webgpu' : 'cpu', onProgress: this.progress.start(`${id} experts of layer ${l}`) })
        role.throughput = await measureExpertThroughput(loaded, config.numExperts, config.hiddenSize)
        return loaded
      },
      log: l => { this.ctx.log(l) },
      onAnnounce: () => {
        void this.ctx.publishSelf({ experts: { model: id, state: role.state, hosted: formatPlacement(role.placement), throughput: Math.round(role.throughput * 10) / 10 } })
          .catch(e => { this.ctx.log(`mirroring the expert role failed: ${(e as Error).message}`) })
      }
    })
    await this.startActive({ kind: 'experts', role, model: id })
    document.body.dataset.serving = `experts ${formatPlacement(role.placement)}`
  }

  private async startTraining (run: string): Promise<void> {
    if (this.trainer === undefined) throw new PageParamError('this page has no Training panel to join a run with')
    this.active_ = { kind: 'train', run }
    try {
      await this.trainer.join(run)
    } catch (e) {
      this.active_ = undefined
      throw e
    }
    document.body.dataset.serving = `train ${run}`
  }

  /** Writes the block role into this tab's swarm entry (what the map and other tabs read). */
  private mirror (): void {
    const a = this.active_
    const entry = a?.kind === 'blocks' ? a.role.servingEntry() : undefined
    if (a?.kind !== 'blocks' || entry === undefined) return
    this.mirrored = { at: Date.now(), throughput: a.role.server?.measuredThroughput }
    void this.ctx.publishSelf({ serving: { ...entry, blocks: a.numBlocks } })
      .catch(e => { this.ctx.log(`mirroring the serving role failed: ${(e as Error).message}`) })
  }

  /**
   * Re-mirrors the measured throughput when it moved (announces come every few minutes; the
   * first measurement comes with the first steps). Called by the panel's status tick.
   */
  refreshMirror (): void {
    const r = this.role
    const tp = r?.server?.measuredThroughput
    const before = this.mirrored?.throughput
    if (r === undefined || r.state !== 'online' || tp === undefined || this.mirrored === undefined) return
    if (Date.now() - this.mirrored.at < MIRROR_MIN_MS) return
    if (before !== undefined && Math.abs(tp - before) <= MIRROR_CHANGE * Math.max(before, 1e-6)) return
    this.mirror()
  }

  /** Announces OFFLINE (or leaves the run), frees the memory and drops the role from this tab's entry. */
  async stop (): Promise<void> {
    const a = this.active_
    if (a === undefined) return
    this.active_ = undefined
    this.choice = undefined
    this.startedAt = undefined
    this.mirrored = undefined
    this.plannedBytes = undefined
    delete document.body.dataset.serving
    if (a.kind === 'train') {
      this.trainer?.leave()
      return
    }
    await a.role.stop()
    // The patch stays in selfData, and the entry's periodic refresh publishes it again.
    await this.ctx.publishSelf(a.kind === 'blocks' ? { serving: undefined } : { experts: undefined }).catch(() => {})
  }

  status (): ContributionStatus {
    const a = this.active_
    const base = { role: this.choice?.role, reason: this.choice?.reason, plannedBytes: this.plannedBytes, budgetBytes: this.budgetBytes, startedAt: this.startedAt, device: this.ctx.deviceLabel, computeIn: this.ctx.params.compute === 'main' ? 'page' : 'worker' }
    if (a?.kind === 'blocks') {
      const s = a.role.server
      return { ...base, model: a.model, state: a.role.state, span: a.role.currentSpan, numBlocks: a.numBlocks, sessions: s?.sessions.size ?? 0, steps: s?.stats.steps ?? 0, tokens: s?.stats.tokens ?? 0, throughput: s?.throughput ?? 0 }
    }
    if (a?.kind === 'experts') {
      const st = a.role.stats
      return { ...base, model: a.model, state: a.role.state, sessions: 0, steps: st.calls, tokens: st.rows, throughput: a.role.throughput, computeIn: 'page' }
    }
    if (a?.kind === 'train') return { ...base, model: a.run, state: this.trainer?.running === true ? 'online' : this.startedAt === undefined ? 'joining' : 'stopped', sessions: 0, steps: 0, tokens: 0, throughput: 0 }
    return { ...base, model: this.ctx.params.modelId, state: 'offline', sessions: 0, steps: 0, tokens: 0, throughput: 0 }
  }
}
