/**
 * One peer's part in a swarm training run: reads the run from the CRDT board, builds the model
 * and the DiLoCo worker, joins as a founder (θ_global = the seeded init) or as a late joiner
 * (fetches θ_global + momentum from members, hash-checked against the board), records every
 * sync's hash on the board, and resyncs whenever it falls behind. Used by the page's Training
 * panel and by `webswarm train --bootstrap … --run …`.
 */
import type { Backend } from '../../gpu/backend.ts'
import { TextDataset, type Window } from '../../model/data.ts'
import { initModel } from '../../model/model.ts'
import type { RpcTransport } from '../transport/index.ts'
import { AllReducePeer, type AllReduceOptions, type SnapshotState } from './allreduce.ts'
import { StateHashMismatchError } from './errors.ts'
import { fetchSnapshot } from './late-join.ts'
import { runConfig, type RunBoard, type RunSpec } from './run.ts'
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
  /** All-reduce timing overrides (tests). */
  allreduce?: Partial<Omit<AllReduceOptions, 'run' | 'directory' | 'block'>>
  log?: (line: string) => void
  onStep?: (e: StepEvent) => void
  onSync?: (e: SyncEvent) => void
}

export class TrainSession {
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
    const worker = new DiLoCoWorker(initModel(config, init.backend, spec.seed), train, ar, {
      innerSteps: spec.innerSteps, batchSize: spec.batchSize, seqLen: spec.seqLen, innerLr: spec.innerLr, warmupSteps: spec.warmupSteps,
      adam: { weightDecay: spec.weightDecay }, maxGradNorm: spec.maxGradNorm, outer: spec.outer, fragments: spec.fragments,
      overlapSteps: spec.overlapSteps, mixAlpha: spec.mixAlpha, block: spec.compression.block, dataSeed: seedOf(self), evalWindows
    }, {
      onStep: (e) => { init.onStep?.(e) },
      onSync: (e) => {
        if (e.resynced !== true) init.board.record(e.seq, { hash: e.hash, members: e.members, attempt: e.attempt })
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
    const { seq, rec } = this.init.board.latest()
    const holders = [...new Set([...(rec?.members ?? []), ...this.init.board.expected(Number.MAX_SAFE_INTEGER)])].filter(p => p !== this.self)
    const snap = await fetchSnapshot(this.allreduce, holders, { minRound: seq, totalBytes: 8 * this.worker.layout.total })
    const recorded = this.init.board.recordAt(snap.round)
    if (recorded !== undefined && recorded.hash !== snap.hash) throw new StateHashMismatchError(`peer served θ_global ${snap.hash.slice(0, 12)}… for sync ${snap.round}, the board records ${recorded.hash.slice(0, 12)}…`)
    return snap
  }

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
