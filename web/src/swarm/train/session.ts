/**
 * One peer's part in a swarm training run: reads the run from the CRDT board, builds the model
 * and the DiLoCo worker, joins as a founder (θ_global = the seeded init) or as a late joiner
 * (fetches θ_global + momentum from members, hash-checked against the board: late-join.ts),
 * publishes every sync's state as content-addressed shards and records its hash and root on the
 * board, and resyncs whenever it falls behind. Used by the page's Training panel and by
 * `webswarm train --bootstrap … --run …`.
 */
import type { Backend } from '../../gpu/backend.ts'
import { TextDataset, type Window } from '../../model/data.ts'
import { initModel } from '../../model/model.ts'
import type { RpcTransport } from '../transport/index.ts'
import { AllReducePeer, type AllReduceOptions, type SnapshotState } from './allreduce.ts'
import { StateHashMismatchError } from './errors.ts'
import { fetchLatestState, fetchSnapshot, type LatestState } from './late-join.ts'
import { runConfig, type RunBoard, type RunSpec, type SyncRecord } from './run.ts'
import type { StateShards } from './state-shards.ts'
import { DiLoCoWorker, type StepEvent, type SyncEvent } from './worker.ts'

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
  /** All-reduce timing overrides (tests). */
  allreduce?: Partial<Omit<AllReduceOptions, 'run' | 'directory' | 'block'>>
  log?: (line: string) => void
  onStep?: (e: StepEvent) => void
  onSync?: (e: SyncEvent) => void
}

export class TrainSession {
  /** How the last late join / resync got its state (tests and the dashboard). */
  lastFetch: Omit<LatestState, 'state'> & { seq: number, hash: string } | undefined
  /** Publications and records in sync order (each waits for the previous one). */
  private publishing: Promise<void> = Promise.resolve()

  private constructor (readonly spec: RunSpec, readonly worker: DiLoCoWorker, readonly allreduce: AllReducePeer, private readonly init: SessionInit) {}

  get self (): string { return this.init.transport.self }

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
    const ar = new AllReducePeer(init.transport, { ...init.allreduce, run: spec.id, directory: init.board, block: spec.compression.block, log: init.log })
    let session: TrainSession | undefined
    let lossSum = 0
    let lossSteps = 0
    const worker = new DiLoCoWorker(initModel(config, init.backend, spec.seed), train, ar, {
      innerSteps: spec.innerSteps, batchSize: spec.batchSize, seqLen: spec.seqLen, innerLr: spec.innerLr, warmupSteps: spec.warmupSteps,
      ...(spec.decaySteps > 0 ? { totalSteps: spec.decaySteps, minInnerLr: spec.minInnerLr } : {}),
      adam: { weightDecay: spec.weightDecay, beta1: spec.beta1, beta2: spec.beta2, eps: spec.eps }, maxGradNorm: spec.maxGradNorm, outer: spec.outer, fragments: spec.fragments,
      overlapSteps: spec.overlapSteps, mixAlpha: spec.mixAlpha, block: spec.compression.block, dataSeed: seedOf(self), evalWindows
    }, {
      onStep: (e) => { lossSum += e.loss; lossSteps++; init.onStep?.(e) },
      onSync: (e) => {
        if (e.resynced !== true) session!.publish(e)
        // This worker's mean inner loss since its last sync, for every peer's dashboard.
        if (lossSteps > 0) init.board.recordLoss(self, e.seq, lossSum / lossSteps)
        lossSum = 0; lossSteps = 0
        init.onSync?.(e)
      },
      resync: async () => await session!.fetchLatest()
    })
    session = new TrainSession(spec, worker, ar, init)
    const latest = init.board.latest()
    if (latest.seq < 0) {
      await worker.initFromModel()
      init.board.join(self, 0)
    } else {
      await worker.initFromSnapshot(await session.fetchLatest())
      init.board.join(self, worker.nextSeq)
      init.log?.(`train: joined run ${spec.id} late, at sync ${worker.nextSeq} (θ_global ${worker.lastHash.slice(0, 12)}…)`)
    }
    return session
  }

  /** θ_global + momentum of the newest sync on the board, from the members that recorded it. */
  async fetchLatest (): Promise<SnapshotState> {
    const totalBytes = 8 * this.worker.layout.total
    const got = await fetchLatestState({
      board: this.init.board, self: this.self, totalBytes, shards: this.init.shards, log: this.init.log,
      snapshot: async (peers, minRound) => await fetchSnapshot(this.allreduce, peers, { minRound, totalBytes })
    })
    this.lastFetch = { seq: got.state.round, hash: got.state.hash, via: got.via, fetchedFrom: got.fetchedFrom }
    this.init.log?.(`train: fetched the state of sync ${got.state.round} via ${got.via}${got.via === 'shards' ? ` from ${got.fetchedFrom.size} providers` : ''}`)
    // Whoever holds a state serves it: a SNAPSHOT-fetched one goes into the shard store too.
    if (got.via === 'snapshot' && this.init.shards !== undefined) await this.init.shards.publish(got.state.data).catch(() => {})
    return got.state
  }

  /** Publishes sync `e`'s state as shards (when there are shards), then records hash and root on the board. */
  private publish (e: SyncEvent): void {
    const rec: SyncRecord = { hash: e.hash, members: e.members, attempt: e.attempt }
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
    const total = this.spec.totalSyncs > 0 ? this.spec.totalSyncs - 1 - this.worker.lastSeq : Infinity
    const n = Math.min(syncs ?? Infinity, total)
    if (n <= 0) return
    if (Number.isFinite(n)) { await this.worker.runSyncs(n, signal); return }
    for (;;) await this.worker.runSyncs(1, signal)
  }

  /** Leaves the run: off the board, stops serving the all-reduce. */
  stop (): void {
    this.init.board.leave(this.self)
    this.allreduce.stop()
    this.worker.dispose()
  }
}

/** A peer's data seed from its id (FNV-1a): each peer draws its own shard of windows. */
export function seedOf (peer: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < peer.length; i++) h = Math.imul(h ^ peer.charCodeAt(i), 0x01000193) >>> 0
  return h
}
