/**
 * One peer's part in a swarm training run: reads the run from the CRDT board, builds the model
 * and the DiLoCo worker, joins as a founder (θ_global = the seeded init) or as a late joiner
 * (fetches θ_global + momentum from members, hash-checked against the board: late-join.ts),
 * publishes every sync's state as content-addressed shards and records its hash and root on the
 * board, and resyncs whenever it falls behind. While it runs it refreshes its member entry's
 * heartbeat (membership.ts), and at every round boundary it checks that its founding of the run
 * is the one the board kept, adopting the winner's θ_global if not (`healFork`). Used by the page's Training panel and by
 * `webswarm train --bootstrap … --run …`.
 */
import type { Backend } from '../../gpu/backend.ts'
import { TextDataset, type Window } from '../../model/data.ts'
import { initModel } from '../../model/model.ts'
import type { RpcTransport } from '../transport/index.ts'
import { codecOf } from './codec.ts'
import { AllReducePeer, type AllReduceOptions, type SnapshotState } from './allreduce.ts'
import { RoundFailedError, StateHashMismatchError } from './errors.ts'
import { fetchLatestState, fetchSnapshot, type LatestState } from './late-join.ts'
import { MEMBER_HEARTBEAT_MS, RunForkedError, specContentKey } from './membership.ts'
import { runConfig, type RunBoard, type RunSpec, type SyncRecord } from './run-board.ts'
import type { StateShards } from './state-shards.ts'
import type { SpawnTrainer } from './thread-trainer.ts'
import { DiLoCoWorker, type StepEvent, type SyncEvent } from './worker.ts'
import { GauntletCheck } from './contribution-check.ts'
import { ModelLossProbe } from './loss-probe.ts'
import { recordRefused } from './exclusions.ts'

/** First wait (ms) before a resync that found nothing to fetch tries again; later waits grow linearly. */
const RESYNC_RETRY_MS = 500

/** Share of the corpus held out for the global model's eval loss. */
const VALIDATION_FRACTION = 0.05
/** Validation windows evaluated after each sync (a fixed set, the same on every peer). */
const EVAL_WINDOWS = 4
/** Seed of the validation windows: fixed, so every peer's eval curve is comparable. */
const EVAL_SEED = 424242

export interface SessionInit {
  transport: RpcTransport
  board: RunBoard
  backend: Backend
  /** The run's corpus as text (Node: the whole Brown corpus; pages: a bundled excerpt). */
  corpus: (spec: RunSpec) => Promise<string>
  /**
   * Content-addressed state shards (libp2p: transport/shard-store.ts). Without them states move
   * only over SNAPSHOT and records carry no root. The caller owns them (closes them).
   */
  shards?: StateShards
  /** Heartbeat period of this peer's member entry, ms (tests). @default MEMBER_HEARTBEAT_MS */
  heartbeatMs?: number
  /** All-reduce timing overrides (tests). */
  allreduce?: Partial<Omit<AllReduceOptions, 'run' | 'directory' | 'block'>>
  log?: (line: string) => void
  onStep?: (e: StepEvent) => void
  onSync?: (e: SyncEvent) => void
  /**
   * Inner steps on a thread of their own (DiLoCoWorker `trainerThread`; Node: trainer-thread-node.ts
   * `spawnTrainerThread`). CPU backend only. @default undefined (steps on this thread)
   */
  trainerThread?: SpawnTrainer
}

export class TrainSession {
  /** How the last late join / resync got its state (tests and the dashboard). */
  lastFetch: Omit<LatestState, 'state'> & { seq: number, hash: string } | undefined
  /** Publications and records in sync order (each waits for the previous one). */
  private publishing: Promise<void> = Promise.resolve()
  /** The founding of the run this peer's θ_global descends from (changes when a fork heals). */
  private genesis: string
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined
  private lastBeat = 0
  private stopped = false

  private constructor (readonly spec: RunSpec, readonly worker: DiLoCoWorker, readonly allreduce: AllReducePeer, private readonly init: SessionInit) {
    this.genesis = spec.genesis
  }

  get self (): string { return this.init.transport.self }

  /** Genesis of the founding this peer trains in (RunSpec.genesis of the declaration it follows). */
  get founding (): string { return this.genesis }

  /** Joins the run declared on the board (founding member or late joiner). */
  static async start (init: SessionInit): Promise<TrainSession> {
    const spec = init.board.spec()
    if (spec === undefined) throw new StateHashMismatchError(`run ${init.board.runId} is not declared in the swarm doc`)
    const config = runConfig(spec)
    const text = await init.corpus(spec)
    const { train, validation } = new TextDataset(text).split(VALIDATION_FRACTION)
    const it = validation.windows(spec.seqLen, EVAL_SEED)
    const evalWindows: Window[] = Array.from({ length: EVAL_WINDOWS }, () => it.next().value as Window)
    const self = init.transport.self
    const ar = new AllReducePeer(init.transport, { ...init.allreduce, aggregation: spec.aggregation, run: spec.id, directory: init.board, ...(spec.compression.kind === 'q8' ? { block: spec.compression.block } : {}), codec: codecOf(spec.compression), log: init.log })
    let session: TrainSession | undefined
    let lossSum = 0
    let lossSteps = 0
    const worker = new DiLoCoWorker(initModel(config, init.backend, spec.seed), train, ar, {
      innerSteps: spec.innerSteps, batchSize: spec.batchSize, seqLen: spec.seqLen, innerLr: spec.innerLr, warmupSteps: spec.warmupSteps,
      ...(spec.decaySteps > 0 ? { totalSteps: spec.decaySteps, minInnerLr: spec.minInnerLr } : {}),
      adam: { weightDecay: spec.weightDecay, beta1: spec.beta1, beta2: spec.beta2, eps: spec.eps }, maxGradNorm: spec.maxGradNorm, outer: spec.outer, fragments: spec.fragments,
      overlapSteps: spec.overlapSteps, mixAlpha: spec.mixAlpha, delayOuter: spec.delayOuter, ...(spec.compression.kind === 'topk' && spec.compression.efDecay !== undefined ? { efDecay: spec.compression.efDecay } : {}), ...(spec.compression.kind === 'q8' ? { block: spec.compression.block } : {}), dataSeed: seedOf(self), evalWindows,
      ...(init.trainerThread !== undefined ? { trainerThread: init.trainerThread } : {})
    }, {
      onStep: (e) => { lossSum += e.loss; lossSteps++; init.onStep?.(e) },
      onSync: (e) => {
        if (e.resynced !== true && e.satOut !== true) session!.publish(e)
        // After a resync this peer sits out the syncs whose windows it did not train (F > 1):
        // the others must not expect it in them (they would wait out a ready window each).
        if (e.resynced === true) init.board.join(self, worker.contributesFrom, session!.founding)
        else if (!session!.stopped) session!.beat(true)
        // This worker's mean inner loss since its last sync, for every peer's dashboard.
        if (lossSteps > 0) init.board.recordLoss(self, e.seq, lossSum / lossSteps)
        // Whom the owners refused or excluded this sync: on the board for every peer to see.
        if (e.resynced !== true && e.satOut !== true) recordRefused(init.board.map, spec.id, e.seq, e.rejected)
        lossSum = 0; lossSteps = 0
        init.onSync?.(e)
      },
      resync: async () => await session!.resync(),
      observe: async (seq) => await session!.fetchRecorded(seq)
    })
    // The owners' contribution check evaluates on its own copy of the model (loss-probe.ts).
    if (spec.checkWindows > 0) {
      ar.contributionCheck = new GauntletCheck(new ModelLossProbe({
        model: initModel(config, init.backend, spec.seed), data: train, layout: worker.layout, fragments: worker.fragments,
        global: () => worker.global, seqLen: spec.seqLen, windows: spec.checkWindows, seed: spec.seed
      }))
    }
    session = new TrainSession(spec, worker, ar, init)
    for (const { key, reason } of init.board.memberStatus().ignored) init.log?.(`train: ignoring board entry ${key}: ${reason}`)
    const latest = init.board.latest()
    if (latest.seq < 0) {
      await worker.initFromModel()
      init.board.join(self, 0, spec.genesis)
    } else {
      await worker.initFromSnapshot(await session.fetchLatest())
      init.board.join(self, worker.contributesFrom, spec.genesis)
      init.log?.(`train: joined run ${spec.id} late, after sync ${worker.lastSeq}, contributing from sync ${worker.contributesFrom} (θ_global ${worker.lastHash.slice(0, 12)}…)`)
    }
    session.startHeartbeat()
    return session
  }

  /** Keeps this peer's member entry live; enters again if the entry vanished (pruned, or deleted by a stale tab of ours). */
  private startHeartbeat (): void {
    this.heartbeatTimer = setInterval(() => { this.beat(); this.init.board.prune() }, this.heartbeatMs)
    // A Node peer exits when its work is done, not when its heartbeat is the only thing left.
    const t = this.heartbeatTimer as { unref?: () => void }
    t.unref?.()
  }

  /**
   * At a round boundary: if the board's declaration is another founding of the run than ours
   * (two peers declared at once; Yjs kept the other entry), adopt its newest θ_global ‖ momentum
   * through the late-join path and enter the board under its genesis. True when it did. Throws
   * RunForkedError when the winning declaration trains something else (this model cannot follow).
   * A fetch that fails (no member of the winning founding reachable yet) is retried at the next
   * boundary; until then this peer's records are not written (they are not the run's history).
   */
  async healFork (): Promise<boolean> {
    const spec = this.followedSpec()
    if (spec === undefined || spec.genesis === this.genesis) return false
    this.init.log?.(`train: run ${spec.id} was founded twice at once; the swarm kept founding ${spec.genesis}, this peer trained in ${this.genesis || "''"}: adopting its θ_global`)
    try {
      await this.worker.initFromSnapshot(await this.fetchLatest())
    } catch (e) {
      if (e instanceof RunForkedError) throw e
      this.init.log?.(`train: could not fetch the winning founding's state yet (${(e as Error).message}); retrying at the next sync`)
      return false
    }
    return true
  }

  /**
   * The declaration on the board, when this peer can follow it: one of another founding with
   * other settings throws RunForkedError (its states would load into a model trained otherwise).
   * Undefined when none or unreadable.
   */
  private followedSpec (): RunSpec | undefined {
    let spec: RunSpec | undefined
    try { spec = this.init.board.spec() } catch (e) {
      this.init.log?.(`train: ignoring the run declaration on the board: ${(e as Error).message}`)
      return undefined
    }
    if (spec !== undefined && spec.genesis !== this.genesis && specContentKey(spec) !== specContentKey(this.spec)) {
      throw new RunForkedError(`run ${spec.id} was declared twice at once with different settings; the swarm kept the other declaration (genesis ${spec.genesis}): start again to join it`)
    }
    return spec
  }

  /**
   * θ_global + momentum of the newest sync on the board, from the members that recorded it. The
   * board only reads records of its declaration's founding, so when that is not ours (a fork,
   * met here through a resync or `healFork`) the state is the winner's: this peer then trains in
   * the winning founding and enters the board under it.
   */
  async fetchLatest (): Promise<SnapshotState> {
    const spec = this.followedSpec()
    const totalBytes = 8 * this.worker.layout.total
    const got = await fetchLatestState({
      board: this.init.board, self: this.self, totalBytes, shards: this.init.shards, log: this.init.log,
      snapshot: async (peers, minRound) => await fetchSnapshot(this.allreduce, peers, { minRound, totalBytes })
    })
    this.lastFetch = { seq: got.state.round, hash: got.state.hash, via: got.via, fetchedFrom: got.fetchedFrom }
    this.init.log?.(`train: fetched the state of sync ${got.state.round} via ${got.via}${got.via === 'shards' ? ` from ${got.fetchedFrom.size} providers` : ''}`)
    // Whoever holds a state serves it: a SNAPSHOT-fetched one goes into the shard store too.
    // Serving it to others is a courtesy: the joiner holds the state either way, and members still serve it.
    if (got.via === 'snapshot' && this.init.shards !== undefined) await this.init.shards.publish(got.state.data).catch(() => {})
    if (spec !== undefined && spec.genesis !== this.genesis) {
      this.genesis = spec.genesis
      const from = this.worker.contributesAfter(got.state.round) // what initFromSnapshot will set (worker.contributesFrom)
      this.init.board.join(this.self, from, this.genesis)
      this.init.log?.(`train: now in founding ${this.genesis} from sync ${from} (θ_global ${got.state.hash.slice(0, 12)}…)`)
    }
    return got.state
  }

  /**
   * A worker that fell behind (or was left out of a round) fetches the newest state. When nobody
   * can serve one yet (the winning founding of a forked run has not recorded a sync, or its
   * members have not entered the board), it tries again with a growing pause, for at most two
   * coordinator timeouts; only then does training stop with the error.
   */
  async resync (): Promise<SnapshotState> {
    const deadline = Date.now() + 2 * this.allreduce.coordinatorTimeoutMs
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.fetchLatest()
      } catch (e) {
        const left = deadline - Date.now()
        if (e instanceof RunForkedError || left <= 0 || this.stopped) throw e
        const wait = Math.min(RESYNC_RETRY_MS * attempt, left)
        this.init.log?.(`train: resync attempt ${attempt} found no state to fetch (${(e as Error).message}); trying again in ${wait} ms`)
        await new Promise(resolve => setTimeout(resolve, wait))
      }
    }
  }

  /**
   * The swarm's state of sync `seq` or newer, once the board records it: a sync this peer sits
   * out (worker.contributesFrom). Waits at most two coordinator timeouts (a round that long is
   * stuck); then throws, and the worker resyncs to whatever is newest.
   */
  async fetchRecorded (seq: number): Promise<SnapshotState> {
    const ms = 2 * this.allreduce.coordinatorTimeoutMs
    if (!await this.boardChange(ms, () => this.init.board.latest().seq >= seq)) throw new RoundFailedError(`sync ${seq} was not recorded within ${ms} ms`)
    return await this.fetchLatest()
  }

  /** Resolves true once `until()` holds (checked now and on each board change), false after `ms`. */
  private async boardChange (ms: number, until: () => boolean): Promise<boolean> {
    if (until()) return true
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { unwatch(); resolve(false) }, ms)
      const unwatch = this.init.board.watch(() => {
        if (!until()) return
        clearTimeout(timer); unwatch(); resolve(true)
      })
    })
  }

  /** Publishes sync `e`'s state as shards (when there are shards), then records hash and root on the board. */
  private publish (e: SyncEvent): void {
    const rec: SyncRecord = { hash: e.hash, members: e.members, attempt: e.attempt, genesis: this.genesis }
    const shards = this.init.shards
    const snap = shards === undefined ? undefined : this.worker.snapshot() // copies θ ‖ momentum now, before the next sync moves them
    this.publishing = this.publishing.then(async () => {
      if (shards !== undefined && snap !== undefined && snap.round === e.seq && snap.hash === e.hash) {
        try {
          rec.root = await shards.publish(snap.data)
        } catch (err) {
          this.init.log?.(`train: could not publish the state of sync ${e.seq} as shards: ${(err as Error).message}`)
        }
      }
      // A sync of a founding the board no longer follows is not the run's history: writing it
      // could only overwrite the winner's record of the same number.
      if (rec.genesis !== this.init.board.genesis()) {
        this.init.log?.(`train: not recording sync ${e.seq}: it belongs to founding ${rec.genesis || "''"}, the run's is ${this.init.board.genesis()}`)
        return
      }
      // Every member writes the same record; one without a root never replaces one with it.
      const cur = this.init.board.recordAt(e.seq)
      if (rec.root === undefined && cur?.root !== undefined && cur.hash === rec.hash) return
      this.init.board.record(e.seq, rec)
    })
  }

  /** Resolves once every sync so far is published and recorded. */
  async published (): Promise<void> { await this.publishing }

  /** Trains until `syncs` more syncs have landed (or the run's totalSyncs, or the signal). */
  async run (syncs?: number, signal?: AbortSignal): Promise<void> {
    const last = this.spec.totalSyncs > 0 ? this.spec.totalSyncs - 1 : Infinity
    let target = Math.min(this.worker.lastSeq + (syncs ?? Infinity), last)
    // One sync at a time: between two syncs is where a fork heals.
    while (this.worker.lastSeq < target) {
      signal?.throwIfAborted()
      const left = target - this.worker.lastSeq
      if (await this.healFork()) target = Math.min(this.worker.lastSeq + left, last)
      if (this.worker.lastSeq >= target) break
      await this.worker.runSyncs(1, signal)
    }
  }

  /**
   * Refreshes this peer's member entry (or enters again); with `ifDue`, only when half a heartbeat
   * period has passed. Syncs beat too: a throttled timer (a hidden tab) cannot let a peer that is
   * still syncing go stale.
   */
  beat (ifDue = false): void {
    const now = Date.now()
    if (ifDue && now - this.lastBeat < this.heartbeatMs / 2) return
    this.lastBeat = now
    const { board } = this.init
    if (!board.heartbeat(this.self)) board.join(this.self, Math.max(this.worker.nextSeq, this.worker.contributesFrom), this.genesis)
  }

  private get heartbeatMs (): number { return this.init.heartbeatMs ?? MEMBER_HEARTBEAT_MS }

  /** Leaves the run: off the board, stops serving the all-reduce (once; later calls do nothing). */
  stop (): void {
    if (this.stopped) return
    this.stopped = true
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    this.heartbeatTimer = undefined
    this.init.board.leave(this.self)
    this.allreduce.stop()
    this.allreduce.contributionCheck?.dispose?.()
    void this.worker.dispose() // ends a trainer thread; never rejects (thread-trainer.ts dispose)
  }
}

/** A peer's data seed from its id (FNV-1a): each peer draws its own shard of windows. */
function seedOf (peer: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < peer.length; i++) h = Math.imul(h ^ peer.charCodeAt(i), 0x01000193) >>> 0
  return h
}
