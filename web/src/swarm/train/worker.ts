/**
 * The DiLoCo worker loop (Douillard et al. 2023; Streaming DiLoCo, Douillard et al. 2025):
 * inner AdamW steps on this peer's data shard → per fragment, every H steps, the pseudo-gradient
 * Δ = θ_global − θ_local → q8 with error feedback → fault-tolerant all-reduce mean → outer
 * Nesterov step on θ_global (host f32, bit-identical everywhere) → θ_local ← θ_global (or a mix,
 * when the sync overlapped later inner steps). Inner optimizer state stays local.
 *
 * Schedule: fragment f (of F) syncs at inner steps t = offset_f + k·H (k ≥ 1), offset_f =
 * f·⌊H/F⌋. Syncs are numbered in time order: seq = (k − 1)·F + f; seq is the all-reduce's round.
 * With overlapSteps τ > 0 the all-reduce runs while τ more inner steps happen, and its result
 * lands at t + τ (τ < ⌊H/F⌋, so at most one sync is in flight). F = 1, τ = 0 is plain DiLoCo.
 * With `delayOuter` the sync lands one sync later, at t + ⌊H/F⌋ (the one-step-delayed outer
 * update: round r's mean is applied while the inner steps of the next window run), and the
 * steps taken meanwhile are kept: θ_local ← θ_global + (θ_local − base), where `base` is where
 * the current window started; Δ is then each window's own progress, base − θ_local.
 * `delayOuter: d` (d syncs, 1–4) lands sync s at t + d·⌊H/F⌋, at sync s + d's fence: up to d
 * syncs are in flight, landed in order on every replica, so a lag of up to d windows costs no
 * wait. A landing moves θ_local and every window start still held onto the new θ_global
 * (`shiftTo`). A worker that adopts the state of sync s (late join, resync) starts at s's step
 * with θ_local = θ_global(s); the syncs s + 1 … s + d the members had started by then are not in
 * that state and are still theirs: it sits them out (`contributesAfter`), and each lands on it as
 * the swarm's state after that sync (`hooks.observe`), rebased as a member's landing is, so its
 * θ_global equals theirs from then on and it contributes from sync s + d + 1.
 */
import type { CausalLM } from '../../model/model.ts'
import type { TextDataset, Window } from '../../model/data.ts'
import { evaluateLoss, Trainer } from '../../model/train.ts'
import type { ScheduleOptions } from '../../model/schedule.ts'
import type { AdamWOptions } from '../../model/optimizer.ts'
import type { Backend } from '../../gpu/backend.ts'
import { q8Bytes } from '../../gpu/cpu/quant.ts'
import { isGpu } from '../../gpu/ops/util.ts'
import { AllReducePeer, type ReduceBuffers, type ReduceOutcome, type SnapshotState } from './allreduce.ts'
import { ErrorFeedback } from './compress.ts'
import { GpuTopKFeedback, gpuTopKFits } from './compress-gpu.ts'
import type { PartCodec } from './codec.ts'
import { DEFAULT_Q8_BLOCK, MAX_OUTER_DELAY } from './constants.ts'
import { BehindError, NoCoordinatorError, RoundFailedError, TrainArgumentError } from './errors.ts'
import { fragmentsOf, layoutOf, type Fragment, type ParamLayout } from './flat.ts'
import { innerLr, nextTurn, readParams, rebaseLocal, WindowStream, writeParams } from './inner-loop.ts'
import { hashBytes, nesterovStep, outerLrAt, pseudoGradient, resolveOuter, type OuterOptions } from './outer.ts'
import { ThreadTrainer, type SpawnTrainer } from './thread-trainer.ts'
import type { TrainerTimes } from './trainer-messages.ts'

export interface DiLoCoOptions {
  /** Inner steps between two syncs of a fragment (H). */
  innerSteps: number
  /** Sequences per inner step. @default 1 */
  batchSize?: number
  /** Tokens per sequence. */
  seqLen: number
  /** Peak inner AdamW learning rate (after the warm-up; constant unless `totalSteps` is set). */
  innerLr: number
  /** Linear warm-up of the inner lr over this worker's first steps (a late joiner's fresh AdamW warms up too). @default 0 */
  warmupSteps?: number
  /**
   * Inner steps of the whole run: when set, the inner lr decays (cosine, after the warm-up) from
   * innerLr to minInnerLr at this run step, as DiLoCo's inner schedule does. The decay follows the
   * run's step count, so a late joiner uses the same lr as the founders. @default none (constant)
   */
  totalSteps?: number
  /** Floor of the cosine decay (with totalSteps). @default innerLr / 10 */
  minInnerLr?: number
  /** Inner AdamW options besides lr. @default torch defaults, weight decay 0.01 */
  adam?: Omit<AdamWOptions, 'lr'>
  /** Inner gradient clipping (0 = none). @default 1 */
  maxGradNorm?: number
  outer?: OuterOptions
  /** Streaming DiLoCo: fragments synced on a staggered schedule. @default 1 */
  fragments?: number
  /** Inner steps a sync overlaps before its result is applied (τ). @default 0 */
  overlapSteps?: number
  /** θ_local ← α·θ_local + (1 − α)·θ_global when an overlapped sync lands. @default 0 (replace) */
  mixAlpha?: number
  /**
   * Delayed outer update (file comment): a sync lands d·⌊H/F⌋ steps after it started, at the
   * fence of the sync d later (`true` = 1: the one-step delay), and the steps taken meanwhile are
   * rebased onto the new θ_global instead of replaced. An integer 1–4 (`MAX_OUTER_DELAY`).
   * Excludes overlapSteps and mixAlpha; d > 1 needs hooks.observe with hooks.resync (a resync sits
   * out the syncs in flight). @default false (none)
   */
  delayOuter?: boolean | number
  /**
   * After a sync, θ_local ← θ_global − residual instead of θ_global: what error feedback holds back
   * (Δ not sent yet) stays in this worker's model, so its next window does not learn it again,
   * and Δ = θ_global − θ_local already carries it (ErrorFeedback `inModel`). Needs τ = 0, no
   * delayOuter. @default false
   */
  localResidual?: boolean
  /**
   * Decay β of the error feedback: e ← β·e + Δ (compress.ts; SparseLoCo's error-feedback momentum,
   * usually with outer momentum 0). @default 1 (classic error feedback)
   */
  efDecay?: number
  /** q8 block of pseudo-gradients (with the q8 codec; the codec is the all-reduce's). @default 64 */
  block?: number
  /** Seed of this worker's data windows (with the sync number mixed in): a per-peer shard. */
  dataSeed: number
  /** Validation windows for the global model's eval loss after each sync (none: no eval). */
  evalWindows?: readonly Window[]
  /**
   * Runs the model, its inner AdamW and the inner steps on a thread of their own
   * (trainer-thread.ts; Node: `spawnTrainerThread` of trainer-thread-node.ts), leaving this thread
   * the network, the all-reduce and the codec: the steps between two syncs no longer wait for
   * this thread's event loop, and the two meet only at a sync's step. The same bytes as without
   * it. CPU twins only (a WebGPU device stays on the thread that made it). Then `trainer` is
   * undefined and `tick` refuses: use `runSyncs`. @default undefined (steps on this thread)
   */
  trainerThread?: SpawnTrainer
}

/** One inner step, for the dashboard. */
export interface StepEvent { step: number, loss: number, tokens: number, ms: number, /** The inner lr this step used. */ lr: number }

/** One completed sync. */
export interface SyncEvent {
  seq: number
  fragment: number
  members: string[]
  attempt: number
  /** sha256 of θ_global after this sync. */
  hash: string
  rejected: string[]
  clipped: string[]
  /** Eval loss of θ_global, when evalWindows were given. */
  evalLoss?: number
  /** Set when this peer was left out and resynced from a peer instead. */
  resynced?: boolean
  /**
   * Set when this peer sat the sync out because its fragment's window began before this peer's
   * θ_local came from θ_global (a streaming joiner's first F − 1 syncs) and took the swarm's result.
   */
  satOut?: boolean
}

export interface WorkerHooks {
  onStep?: (e: StepEvent) => void
  onSync?: (e: SyncEvent) => void
  /** Called when the worker fell behind: must return the swarm's state (late-join.ts fetch). */
  resync?: () => Promise<SnapshotState>
  /**
   * The swarm's state of sync `seq` (or newer), once the run records it: how a worker that sits a
   * sync out gets its result (`contributesFrom`). Without it such a worker contributes a partial
   * window's Δ instead.
   */
  observe?: (seq: number) => Promise<SnapshotState>
}

/** What a sync that this worker sat out brings back: the swarm's state after it. */
class Observed {
  constructor (readonly state: SnapshotState) {}
}

/** A sync started and not applied yet. */
interface InFlight {
  seq: number
  landAt: number
  promise: Promise<ReduceOutcome | BehindError | Observed>
  /**
   * delayOuter d > 1: the fragment's θ_local when this sync started (its window's end), kept
   * where θ_local is (shifted by each landing before this one). With d = 1 that is `base`.
   */
  from?: Float32Array
  /** This worker sits the sync out (`contributesFrom`): its promise brings the swarm's state after it. */
  sitOut?: true
}

/** `delayOuter` as a number of syncs (0: none), or a TrainArgumentError naming the bad value. */
export function outerDelayOf (v: boolean | number | undefined): number {
  if (v === undefined || v === false) return 0
  if (v === true) return 1
  if (!Number.isInteger(v) || v < 1 || v > MAX_OUTER_DELAY) throw new TrainArgumentError(`delayOuter must be true, false or an integer number of syncs in [1, ${MAX_OUTER_DELAY}], got ${String(v)}`)
  return v
}

/** Time (inner step) at which sync `seq` starts. */
function syncTime (seq: number, H: number, F: number): number {
  const k = Math.floor(seq / F) + 1
  const f = seq % F
  return f * Math.floor(H / F) + k * H
}

export class DiLoCoWorker {
  readonly layout: ParamLayout
  readonly fragments: Fragment[]
  /** (P) θ_global and the outer Nesterov buffer: identical on every member after every sync. */
  global: Float32Array
  momentum: Float32Array
  /** Inner steps taken in this run's time (a late joiner starts at its snapshot's). */
  step = 0
  /** Next sync number; `lastSeq` = the last one applied (-1: none). */
  nextSeq = 0
  lastSeq = -1
  lastHash = ''
  /**
   * The first sync whose whole window this worker trained from θ_global, so the first it
   * contributes to: 0 for a founder; after a snapshot of sync s, s + F. Fragment f's window is the
   * H steps since its previous sync, and a snapshot resets θ_local of every fragment at once, so
   * syncs s + 1 … s + F − 1 would carry only part of a window's Δ (1/F … (F − 1)/F): the worker
   * sits them out (`hooks.observe`) and enters the board's membership from s + F. F = 1: s + 1.
   * delayOuter d > 1: from s + max(F, d + 1) (`contributesAfter`).
   */
  contributesFrom = 0
  private momentumHash = ''
  /** The inner optimizer, when the steps run on this thread (no `trainerThread`). */
  readonly trainer: Trainer | undefined
  /** The trainer thread, with `trainerThread`. */
  private readonly thread: ThreadTrainer | undefined
  private readonly ef: Array<ErrorFeedback | GpuTopKFeedback>
  /**
   * Per fragment, the all-reduce's receive buffers (mean and its q8), reused every sync of that
   * fragment: a fresh fragment-sized array per sync (32 MB for 8 M parameters) costs page faults
   * and GC on the hot path. Safe to reuse: the mean is consumed by the outer step in land(),
   * before the fragment's next sync (at most one sync is in flight). Allocated at the first sync.
   * With delayOuter d, ⌈d/F⌉ per fragment: sync kF + f uses slot k mod ⌈d/F⌉, free again once it
   * has landed, at or before sync (k + ⌈d/F⌉)F + f starts.
   */
  private recv: ReduceBuffers[][]
  /**
   * (P) With delayOuter: θ_local where each fragment's current window started (θ_global after its
   * last landed sync, plus nothing); Δ = base − θ_local. Unused otherwise (Δ = θ_global − θ_local).
   */
  private base: Float32Array | undefined
  private readonly outer: Required<OuterOptions>
  private readonly H: number
  private readonly F: number
  private tau: number
  /** delayOuter as a number of syncs (0: none). */
  private readonly delay: number
  /** The inner lr over run steps (warm-up, then constant or cosine). */
  private readonly schedule: ScheduleOptions
  private readonly stream: WindowStream
  /** With a trainer thread: the landing planned for its next fence (planFence). */
  private planned: { at: number, then: number | undefined, landing?: { seq: number, out: ReduceOutcome, global: Float32Array, momentum: Float32Array } } | undefined
  /** Syncs started and not applied, oldest first (one at most unless delayOuter > 1). */
  private inflight: InFlight[] = []

  constructor (readonly model: CausalLM, readonly data: TextDataset, readonly allreduce: AllReducePeer, readonly opts: DiLoCoOptions, readonly hooks: WorkerHooks = {}) {
    const H = opts.innerSteps
    if (!Number.isInteger(H) || H < 1) throw new TrainArgumentError(`innerSteps must be a positive integer, got ${H}`)
    this.H = H
    this.F = opts.fragments ?? 1
    this.tau = opts.overlapSteps ?? 0
    if (!Number.isInteger(this.F) || this.F < 1 || this.F > H) throw new TrainArgumentError(`fragments must be an integer in [1, innerSteps], got ${this.F}`)
    if (!Number.isInteger(this.tau) || this.tau < 0 || this.tau >= Math.floor(H / this.F)) throw new TrainArgumentError(`overlapSteps must be an integer in [0, ⌊H/F⌋ = ${Math.floor(H / this.F)}), got ${this.tau}`)
    this.delay = outerDelayOf(opts.delayOuter)
    if (this.delay > 0) {
      if (this.tau !== 0 || (opts.mixAlpha ?? 0) !== 0) throw new TrainArgumentError('delayOuter replaces overlapSteps and mixAlpha: leave them 0')
      this.tau = this.delay * Math.floor(H / this.F)
    }
    // A resync with d > 1 drops syncs this worker contributed to and whose rounds go on without
    // it: it must sit out every sync up to the first it has not started (contributesAfter), and
    // take their results from the swarm, not send them again.
    if (this.delay > 1 && hooks.resync !== undefined && hooks.observe === undefined) throw new TrainArgumentError(`delayOuter ${this.delay} (> 1 sync) resyncs by sitting out the syncs in flight: set hooks.observe with hooks.resync, or use delayOuter 1`)
    if (opts.localResidual === true && (this.tau !== 0 || this.delay > 0)) throw new TrainArgumentError('localResidual needs overlapSteps 0 and no delayOuter')
    const alpha = opts.mixAlpha ?? 0
    if (!(alpha >= 0 && alpha < 1)) throw new TrainArgumentError(`mixAlpha must be in [0, 1), got ${alpha}`)
    if (allreduce.codec.kind === 'q8' && (opts.block ?? DEFAULT_Q8_BLOCK) !== allreduce.block) throw new TrainArgumentError(`worker block ${opts.block ?? DEFAULT_Q8_BLOCK} differs from the all-reduce's ${allreduce.block}`)
    this.layout = layoutOf(model.paramSpecs())
    this.fragments = fragmentsOf(this.layout, this.F)
    this.global = new Float32Array(this.layout.total)
    this.momentum = new Float32Array(this.layout.total)
    this.outer = resolveOuter(opts.outer)
    this.ef = this.fragments.map(f => feedbackFor(model.backend, f.end - f.start, allreduce.codec, opts.localResidual === true, opts.efDecay ?? 1))
    this.recv = this.freshRecv()
    const warm = opts.warmupSteps ?? 0
    if (!(opts.innerLr > 0 && Number.isFinite(opts.innerLr))) throw new TrainArgumentError(`innerLr must be positive and finite, got ${opts.innerLr}`)
    const b = opts.batchSize ?? 1
    if (!Number.isInteger(b) || b < 1) throw new TrainArgumentError(`batchSize must be a positive integer, got ${b}`)
    if (!Number.isInteger(warm) || warm < 0) throw new TrainArgumentError(`warmupSteps must be an integer ≥ 0, got ${warm}`)
    if (opts.totalSteps !== undefined && (!Number.isInteger(opts.totalSteps) || opts.totalSteps <= warm)) throw new TrainArgumentError(`totalSteps must be an integer above warmupSteps (${warm}), got ${opts.totalSteps}`)
    if (opts.minInnerLr !== undefined && opts.totalSteps === undefined) throw new TrainArgumentError('minInnerLr needs totalSteps (the decay it ends)')
    const minLr = opts.minInnerLr ?? (opts.totalSteps === undefined ? opts.innerLr : opts.innerLr / 10)
    if (!(minLr >= 0 && minLr <= opts.innerLr)) throw new TrainArgumentError(`minInnerLr must be in [0, innerLr = ${opts.innerLr}], got ${minLr}`)
    this.schedule = { lr: opts.innerLr, warmupSteps: warm, totalSteps: opts.totalSteps ?? Number.MAX_SAFE_INTEGER, minLr }
    const plan = { seqLen: opts.seqLen, batchSize: b, H, dataSeed: opts.dataSeed }
    this.stream = new WindowStream(data, plan)
    if (opts.trainerThread !== undefined) {
      if (isGpu(model.backend)) throw new TrainArgumentError('trainerThread runs the model on the CPU twins: a WebGPU device cannot move to another thread (leave trainerThread unset)')
      this.thread = new ThreadTrainer(opts.trainerThread, model, this.layout, { config: model.config, corpus: data.bytes.slice(), plan, schedule: this.schedule, adam: opts.adam ?? {}, maxGradNorm: opts.maxGradNorm ?? 1 })
    } else this.trainer = new Trainer(model, this.schedule, opts.adam ?? {}, { maxGradNorm: opts.maxGradNorm ?? 1 })
    allreduce.snapshotProvider = () => this.snapshot()
  }

  /** Empty receive buffers (`recv`): ⌈d/F⌉ slots per fragment, allocated at their first sync. */
  private freshRecv (): ReduceBuffers[][] {
    const slots = Math.max(1, Math.ceil(this.delay / this.F))
    return this.fragments.map(() => Array.from({ length: slots }, () => ({})))
  }

  /**
   * The first sync a worker that adopts the state of sync `round` contributes to
   * (`contributesFrom`). Without `hooks.observe` it cannot sit syncs out: round + 1, and the
   * directory must expect it there. With it: the first whose whole window it trains from that
   * state, round + F; and with delayOuter d > 1 also the first that no member that has applied
   * `round` has started yet, round + d + 1 (each started sync s + 1 … s + d at the fence where
   * s landed), so that its board entry is read before that round starts and it never sends a
   * sync twice after a resync (it had started at most d − 1 past the one it was left out of).
   */
  contributesAfter (round: number): number {
    if (this.hooks.observe === undefined) return round + 1
    return round + Math.max(this.F, this.delay > 1 ? this.delay + 1 : 1)
  }

  /** Starts from the model's current weights as θ_global (every founding worker uses the same seed). */
  async initFromModel (): Promise<void> {
    this.global = await this.readLocal()
    this.momentum = new Float32Array(this.layout.total)
    if (this.delay > 0) this.base = this.global.slice()
    await this.rehash()
  }

  /** θ_global ‖ momentum ← a peer's state bytes, checked for size and against their hashes. */
  private async adoptState (s: SnapshotState, what: string): Promise<void> {
    const P = this.layout.total
    if (s.data.byteLength !== 8 * P) throw new TrainArgumentError(`${what} holds ${s.data.byteLength} bytes, θ and momentum of ${P} parameters are ${8 * P}`)
    const f = new Float32Array(s.data.slice().buffer)
    this.global = f.slice(0, P)
    this.momentum = f.slice(P)
    await this.rehash()
    if (this.lastHash !== s.hash || this.momentumHash !== s.momentumHash) throw new TrainArgumentError(`${what} bytes do not match their hashes`)
  }

  /** Starts from a peer's state (late join or resync): θ_local ← θ_global; the next sync is round + 1. */
  async initFromSnapshot (s: SnapshotState): Promise<void> {
    await this.adoptState(s, 'snapshot')
    const meta = JSON.parse(s.meta) as { step?: unknown }
    this.lastSeq = s.round
    this.nextSeq = s.round + 1
    this.contributesFrom = this.contributesAfter(s.round)
    this.step = typeof meta.step === 'number' && Number.isInteger(meta.step) ? meta.step : (s.round < 0 ? 0 : syncTime(s.round, this.H, this.F))
    for (const e of this.ef) e.reset()
    // delayOuter d > 1: syncs this worker contributed to may still be in flight here; their rounds
    // go on without it and would write their means into the receive buffers that its later syncs reuse.
    if (this.inflight.some(fl => fl.sitOut !== true)) this.recv = this.freshRecv()
    this.inflight = []
    if (this.delay > 0) this.base = this.global.slice()
    this.writeLocal(this.global)
  }

  /** What late joiners fetch: θ_global ‖ momentum after the last applied sync. */
  snapshot (): SnapshotState | undefined {
    if (this.lastHash === '') return undefined
    const data = new Uint8Array(8 * this.layout.total)
    data.set(new Uint8Array(this.global.buffer, this.global.byteOffset, this.global.byteLength), 0)
    data.set(new Uint8Array(this.momentum.buffer, this.momentum.byteOffset, this.momentum.byteLength), 4 * this.layout.total)
    const step = this.lastSeq < 0 ? 0 : syncTime(this.lastSeq, this.H, this.F)
    return { round: this.lastSeq, data, hash: this.lastHash, momentumHash: this.momentumHash, meta: JSON.stringify({ step }) }
  }

  private async rehash (): Promise<void> {
    this.lastHash = await hashBytes(this.global)
    this.momentumHash = await hashBytes(this.momentum)
  }

  /** θ_local (on the trainer thread's side: as of its last fence, with what syncs wrote since). */
  private async readLocal (): Promise<Float32Array> {
    return this.thread !== undefined ? await this.thread.read() : await readParams(this.model, this.layout)
  }

  /** Writes elements [start, end) of a flat vector into θ_local. */
  private writeLocal (flat: Float32Array, start = 0, end = this.layout.total): void {
    if (this.thread !== undefined) this.thread.write(start, flat.subarray(start, end))
    else writeParams(this.model, this.layout, start, flat.subarray(start, end))
  }

  /** The inner lr of the next step (inner-loop.ts `innerLr`). */
  innerLrAt (runStep: number, localStep: number): number {
    return innerLr(this.schedule, runStep, localStep)
  }

  /** One inner step, then whatever sync is due (none after sync `lastLaunch` starts). */
  async tick (lastLaunch = Infinity): Promise<void> {
    const trainer = this.trainer
    if (trainer === undefined) throw new TrainArgumentError('tick() steps on this thread: with trainerThread use runSyncs')
    const t0 = performance.now()
    const r = await trainer.trainStep(this.stream.next(this.step), this.innerLrAt(this.step + 1, trainer.step + 1))
    // On the CPU twins a step resolves in microtasks only: yield to the event loop so this peer
    // keeps serving the all-reduce (it may be a coordinator or an owner) and a page stays live.
    await nextTurn()
    this.step++
    this.hooks.onStep?.({ step: this.step, loss: r.loss, tokens: r.tokens, ms: performance.now() - t0, lr: r.lr })
    await this.fence(lastLaunch)
  }

  /** What a step boundary does: apply the sync due, start the next one. */
  private async fence (lastLaunch: number): Promise<void> {
    if (this.due()) await this.land()
    if (this.nextSeq <= lastLaunch && this.step >= syncTime(this.nextSeq, this.H, this.F)) await this.launch()
    if (this.due()) await this.land()
  }

  /** Whether the oldest sync in flight lands at this step. */
  private due (): boolean {
    const fl = this.inflight[0]
    return fl !== undefined && this.step >= fl.landAt
  }

  /**
   * Runs inner steps until `syncs` more syncs have been applied (or resynced). `last`: the run
   * ends there, so no sync starts after them (with delayOuter d a sync starts in the step that
   * applies the one d before it; at the end of a run it would go out and never be applied), and
   * every sync still in flight lands before it returns.
   */
  async runSyncs (syncs: number, signal?: AbortSignal, opts: { last?: boolean } = {}): Promise<void> {
    const target = this.lastSeq + syncs
    const lastLaunch = opts.last === true ? target : Infinity
    if (this.thread !== undefined) { await this.runThreaded(this.thread, target, lastLaunch, signal); return }
    while (this.lastSeq < target) {
      signal?.throwIfAborted()
      await this.tick(lastLaunch)
    }
  }

  /**
   * runSyncs with a trainer thread: it steps on its own from fence to fence (the steps where a
   * sync lands or starts), and at each this thread does what tick() does after that step. With
   * the delayed outer update a landing's rebase is planned as soon as the all-reduce's result
   * is here (`planFence`), so the thread applies it at the fence and steps on to the next one
   * while this thread records the landing and starts the next sync; otherwise the thread holds
   * at the fence until this one has done its part.
   */
  private async runThreaded (th: ThreadTrainer, target: number, lastLaunch: number, signal?: AbortSignal): Promise<void> {
    await th.start(this.step)
    // No listener, no step events: each one the thread posts costs it a preemption on a loaded machine.
    const onStep = (e: StepEvent): void => { this.hooks.onStep?.(e) }
    for (;;) {
      if (!th.running) {
        signal?.throwIfAborted()
        if (this.lastSeq >= target) return
        const to = this.nextFence(lastLaunch)
        th.run(to, this.step, this.hooks.onStep === undefined ? undefined : onStep)
        this.planFence(th, to, lastLaunch, target)
      }
      const f = await th.nextFence(signal)
      this.step = f.step
      if (f.halted) continue
      if (f.rebased) await this.landPlanned(f.step)
      await this.fence(lastLaunch)
      if (th.running && signal?.aborted !== true) {
        const next = this.nextFence(lastLaunch)
        if (next !== this.planned?.then) throw new TrainArgumentError(`the trainer thread went on to step ${this.planned?.then}, the next sync is at ${next}`)
        this.planFence(th, next, lastLaunch, target)
      }
    }
  }

  /**
   * Tells the trainer thread what to do at the fence `at`. With the delayed outer update it steps
   * on to the next fence: at once where a sync only starts at `at` (the start reads θ_local, it
   * writes nothing), and where one lands, once its all-reduce succeeded, with the rebase (the
   * outer step is computed then, on copies: θ_global changes only at the fence, in landPlanned).
   * Otherwise (no delay: a landing writes θ_local from what only this thread has; a resync, a
   * sync sat out, an error) the thread holds at `at` until this thread has done its part.
   */
  private planFence (th: ThreadTrainer, at: number, lastLaunch: number, target: number): void {
    const fl = this.inflight[0]
    this.planned = undefined
    if (this.base === undefined) { th.plan(at); return }
    if (fl === undefined || fl.landAt !== at) {
      const then = this.fenceAfter(at, this.lastSeq, lastLaunch, target)
      this.planned = { at, then }
      th.plan(at, undefined, then)
      return
    }
    const epoch = th.epoch
    const current = (): boolean => th.epoch === epoch && this.inflight[0] === fl && th.running
    // Holding hands the landing to land() at the fence, which meets any error there. A thread
    // that has failed takes no plan: its error ends the run at nextFence.
    const hold = (): void => { try { th.plan(at) } catch {} }
    fl.promise.then(out => {
      if (!current()) return
      if (out instanceof Observed || out instanceof BehindError) { hold(); return }
      try {
        const frag = this.fragments[fl.seq % this.F]
        const g = this.global.slice(frag.start, frag.end)
        const m = this.momentum.slice(frag.start, frag.end)
        nesterovStep(g, m, out.mean, { lr: outerLrAt(this.outer, fl.seq), momentum: this.outer.momentum })
        const then = this.fenceAfter(at, fl.seq, lastLaunch, target)
        this.planned = { at, then, landing: { seq: fl.seq, out, global: g, momentum: m } }
        th.plan(at, { start: frag.start, global: g.slice(), base: (fl.from ?? this.base!.subarray(frag.start, frag.end)).slice() }, then)
      } catch {
        this.planned = undefined
        hold()
      }
    }, () => { if (current()) hold() })
  }

  /**
   * The fence after `at` (what nextFence will say once `fence` has run there: the sync that
   * starts at `at` lands ⌊H/F⌋ later), `seq` being the last sync applied by then; undefined when
   * runSyncs ends at `at`.
   */
  private fenceAfter (at: number, seq: number, lastLaunch: number, target: number): number | undefined {
    if (seq >= target) return undefined
    let nextSeq = this.nextSeq
    let lands = this.inflight.find(fl => fl.landAt > at)?.landAt ?? Infinity
    if (nextSeq <= lastLaunch && at >= syncTime(nextSeq, this.H, this.F)) { lands = Math.min(lands, at + this.tau); nextSeq++ }
    const next = Math.min(lands, nextSeq <= lastLaunch ? syncTime(nextSeq, this.H, this.F) : Infinity)
    return Number.isFinite(next) ? next : undefined
  }

  /** The landing planned for the fence at `step` (planFence), recorded as land() records one. */
  private async landPlanned (step: number): Promise<void> {
    const p = this.planned?.landing
    const fl = this.inflight[0]
    if (p === undefined || fl === undefined || this.planned!.at !== step || fl.seq !== p.seq) throw new TrainArgumentError(`the trainer thread rebased at step ${step} with no landing planned there`)
    this.inflight.shift()
    const frag = this.fragments[p.seq % this.F]
    this.ef[frag.index].commit()
    this.global.set(p.global, frag.start)
    this.momentum.set(p.momentum, frag.start)
    this.shiftTo(frag, fl)
    await this.recordLanding(p.seq, p.out)
  }

  /** The next step at which `fence` has work: a sync lands, or one starts. */
  private nextFence (lastLaunch: number): number {
    const lands = this.inflight[0]?.landAt ?? Infinity
    const starts = this.nextSeq <= lastLaunch ? syncTime(this.nextSeq, this.H, this.F) : Infinity
    const at = Math.min(lands, starts)
    if (!Number.isFinite(at)) throw new TrainArgumentError(`no sync lands or starts after step ${this.step}`)
    return at
  }

  private async launch (): Promise<void> {
    const seq = this.nextSeq++
    const frag = this.fragments[seq % this.F]
    const observe = this.hooks.observe
    if (seq < this.contributesFrom && observe !== undefined) {
      const promise = observe(seq).then(state => new Observed(state), (e: unknown) => {
        if (this.hooks.resync !== undefined) return new BehindError(seq, -1)
        throw e
      })
      promise.catch(() => {}) // awaited in land() (or dropped by a later state's landing); keep an early failure from being unhandled
      // d > 1: the window still ends here, as a member's does; its Δ is not sent, but its landing
      // keeps the steps after it (landObserved) and the fragment's next window starts here.
      let from: Float32Array | undefined
      if (this.delay > 1) {
        const local = await this.readLocal()
        from = local.slice(frag.start, frag.end)
        this.base!.set(from, frag.start)
      }
      this.inflight.push({ seq, landAt: this.step + this.tau, promise, sitOut: true, ...(from !== undefined ? { from } : {}) })
      return
    }
    const local = await this.readLocal()
    const from = this.base ?? this.global // delayOuter: the window's own progress
    const delta = pseudoGradient(from.subarray(frag.start, frag.end), local.subarray(frag.start, frag.end))
    this.base?.set(local.subarray(frag.start, frag.end), frag.start)
    const windowEnd = this.delay > 1 ? local.slice(frag.start, frag.end) : undefined
    const { q, norm } = await this.ef[frag.index].compress(delta)
    const n = frag.end - frag.start
    const slots = this.recv[frag.index]
    const into = slots[Math.floor(seq / this.F) % slots.length]
    into.mean ??= new Float32Array(n)
    if (this.allreduce.codec.kind === 'q8') into.qMean ??= new Uint8Array(q8Bytes(n, this.allreduce.block))
    const promise = this.allreduce.reduce(seq, q, n, into, norm).catch((e: unknown) => {
      if (e instanceof BehindError) return e
      // No quorum reachable or too many failed attempts: the swarm may have gone on without us.
      if ((e instanceof RoundFailedError || e instanceof NoCoordinatorError) && this.hooks.resync !== undefined) return new BehindError(seq, -1)
      throw e
    })
    promise.catch(() => {}) // awaited in land(); keep an early failure from being unhandled
    this.inflight.push({ seq, landAt: this.step + this.tau, promise, ...(windowEnd !== undefined ? { from: windowEnd } : {}) })
  }

  private async land (): Promise<void> {
    const fl = this.inflight.shift()!
    const frag = this.fragments[fl.seq % this.F]
    let out: ReduceOutcome | BehindError | Observed
    try {
      out = await fl.promise
    } catch (e) {
      this.ef[frag.index].discard()
      throw e
    }
    if (out instanceof Observed) {
      await this.landObserved(fl, out.state)
      return
    }
    if (out instanceof BehindError) {
      this.ef[frag.index].discard()
      if (this.hooks.resync === undefined) throw out
      await this.initFromSnapshot(await this.hooks.resync())
      this.hooks.onSync?.({ seq: this.lastSeq, fragment: frag.index, members: [], attempt: -1, hash: this.lastHash, rejected: [], clipped: [], resynced: true })
      return
    }
    this.ef[frag.index].commit()
    const g = this.global.subarray(frag.start, frag.end)
    nesterovStep(g, this.momentum.subarray(frag.start, frag.end), out.mean, { lr: outerLrAt(this.outer, fl.seq), momentum: this.outer.momentum })
    const alpha = this.opts.mixAlpha ?? 0
    if (this.base !== undefined) await this.rebase(frag, fl)
    else if (this.opts.localResidual === true) {
      const e = (this.ef[frag.index] as ErrorFeedback).residual // localResidual: always the host's
      const full = new Float32Array(this.layout.total)
      for (let i = frag.start; i < frag.end; i++) full[i] = Math.fround(this.global[i] - e[i - frag.start])
      this.writeLocal(full, frag.start, frag.end)
    }    else if (alpha === 0 || this.tau === 0) this.writeLocal(this.global, frag.start, frag.end)
    else {
      const local = (await this.readLocal()).subarray(frag.start, frag.end)
      const mixed = new Float32Array(g.length)
      for (let i = 0; i < g.length; i++) mixed[i] = alpha * local[i] + (1 - alpha) * g[i]
      const full = new Float32Array(this.layout.total)
      full.set(mixed, frag.start)
      this.writeLocal(full, frag.start, frag.end)
    }
    await this.recordLanding(fl.seq, out)
  }

  /** Sync `seq` has landed: the state's hash, the event. */
  private async recordLanding (seq: number, out: ReduceOutcome): Promise<void> {
    this.lastSeq = seq
    await this.rehash()
    const ev: SyncEvent = { seq, fragment: this.fragments[seq % this.F].index, members: out.members, attempt: out.attempt, hash: this.lastHash, rejected: out.rejected, clipped: out.clipped }
    if (this.opts.evalWindows !== undefined && this.opts.evalWindows.length > 0) ev.evalLoss = await this.evalGlobal(this.opts.evalWindows)
    this.hooks.onSync?.(ev)
  }

  /**
   * delayOuter: fragment `frag`'s θ_global just moved with sync `fl`; the steps trained since
   * that sync's window ended (θ_local − from; d = 1: from = base) move onto it: θ_local ←
   * θ_global + (θ_local − from) (f32, Math.fround per operation; θ_local is this worker's own).
   */
  private async rebase (frag: Fragment, fl: InFlight): Promise<void> {
    const local = await this.readLocal()
    const full = new Float32Array(this.layout.total)
    const { start, end } = frag
    rebaseLocal(full.subarray(start, end), this.global.subarray(start, end), local.subarray(start, end), fl.from ?? this.base!.subarray(start, end))
    this.shiftTo(frag, fl)
    this.writeLocal(full, start, end)
  }

  /**
   * After sync `fl` of fragment `frag` landed: what is kept where θ_local is moves with it. d = 1:
   * the window now starts at θ_global (base ← θ_global). d > 1: base and the window ends of the
   * fragment's syncs still in flight move as θ_local did, x ← θ_global + (x − from), so each later
   * Δ is still its own window's progress and each later landing keeps what followed it.
   */
  private shiftTo (frag: Fragment, fl: InFlight): void {
    const { start, end } = frag
    const g = this.global.subarray(start, end)
    const from = fl.from
    if (from === undefined) { this.base!.set(g, start); return }
    const b = this.base!.subarray(start, end)
    rebaseLocal(b, g, b, from)
    for (const o of this.inflight) if (o.from !== undefined && o.seq % this.F === frag.index) rebaseLocal(o.from, g, o.from, from)
  }

  /**
   * A sync this worker sat out: θ_global ‖ momentum become the swarm's state after it, and only
   * that sync's fragment restarts its window (θ_local ← θ_global there), as it does on every
   * member; the other fragments keep training. d > 1: the fragment's θ_local is rebased onto it
   * instead, as a member's is when a sync lands (the steps since its window ended stay). A state
   * newer than `seq` (the swarm ran ahead) is taken as a resync; with d > 1, one of a sync this
   * worker has started and sits out lands that sync and every one before it at once.
   */
  private async landObserved (fl: InFlight, s: SnapshotState): Promise<void> {
    const seq = fl.seq
    let frag = this.fragments[seq % this.F]
    if (s.round < seq) throw new TrainArgumentError(`observe(${seq}) returned the state of sync ${s.round}`)
    // d > 1: a newer state whose syncs this worker sits out too, and has started, lands them all.
    const ahead = this.inflight.filter(o => o.seq <= s.round)
    const landsAll = this.delay > 1 && ahead.length === s.round - seq && ahead.every(o => o.sitOut === true)
    if (s.round !== seq && !landsAll) {
      await this.initFromSnapshot(s)
      this.hooks.onSync?.({ seq: this.lastSeq, fragment: frag.index, members: [], attempt: -1, hash: this.lastHash, rejected: [], clipped: [], resynced: true })
      return
    }
    await this.adoptState(s, 'observed state')
    if (this.delay > 1) {
      // As a member's landing (rebase), with the swarm's θ_global: θ_local keeps the steps since
      // the sync's window ended. Several syncs of a fragment landing at once compose to one
      // rebase on the last one's window end: x ← g + (x − from) (each from moves with θ_local).
      this.inflight = this.inflight.filter(o => o.seq > s.round)
      const last = new Map<number, InFlight>()
      for (const o of [fl, ...ahead]) last.set(o.seq % this.F, o)
      for (const o of last.values()) await this.rebase(this.fragments[o.seq % this.F], o)
      frag = this.fragments[s.round % this.F]
    } else {
      this.writeLocal(this.global, frag.start, frag.end)
      this.base?.set(this.global.subarray(frag.start, frag.end), frag.start)
    }
    this.lastSeq = s.round
    const ev: SyncEvent = { seq: s.round, fragment: frag.index, members: [], attempt: -1, hash: this.lastHash, rejected: [], clipped: [], satOut: true }
    if (this.opts.evalWindows !== undefined && this.opts.evalWindows.length > 0) ev.evalLoss = await this.evalGlobal(this.opts.evalWindows)
    this.hooks.onSync?.(ev)
  }

  /** With trainerThread: starts the thread now (model, AdamW, corpus copied there) rather than at the first runSyncs. */
  async startTrainer (): Promise<void> {
    await this.thread?.start(this.step)
  }

  /** With trainerThread, once started: where its wall time went (trainer-messages.ts TrainerTimes); undefined otherwise. */
  async trainerStats (): Promise<TrainerTimes | undefined> {
    return await this.thread?.stats()
  }

  /**
   * Eval loss of θ_global (swaps it into the model for the forward passes, then restores θ_local).
   * With a trainer thread the model on this thread is idle once the thread has started, and
   * evaluates θ_global while the thread steps.
   */
  async evalGlobal (windows: readonly Window[]): Promise<number> {
    const local = await readParams(this.model, this.layout)
    writeParams(this.model, this.layout, 0, this.global)
    try {
      return await evaluateLoss(this.model, windows)
    } finally {
      writeParams(this.model, this.layout, 0, local)
    }
  }

  /** Frees the model's training state and ends the trainer thread (resolves once it has exited). */
  async dispose (): Promise<void> {
    this.trainer?.dispose()
    for (const e of this.ef) if (e instanceof GpuTopKFeedback) e.dispose()
    if (this.allreduce.snapshotProvider !== undefined) this.allreduce.snapshotProvider = undefined
    await this.thread?.dispose()
  }
}

/**
 * A fragment's error feedback: on the GPU kernel (compress-gpu.ts) when the model trains on a GPU
 * and the codec is top-k with a chunk the kernel holds; else on the host (compress.ts).
 */
function feedbackFor (be: Backend, n: number, codec: PartCodec, inModel: boolean, decay: number): ErrorFeedback | GpuTopKFeedback {
  const spec = codec.spec
  if (isGpu(be) && spec.kind === 'topk' && gpuTopKFits(spec.chunk) && !inModel) return new GpuTopKFeedback(be, n, spec, decay)
  return new ErrorFeedback(n, codec, inModel, decay)
}
