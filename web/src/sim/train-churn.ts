/**
 * DiLoCo training under churn through the real stack: N real `DiLoCoWorker`s (a tiny Llama on the
 * CPU twins), each with its real `AllReducePeer` (coordinator, READY window, part owners, bounded
 * messages), over the seeded `MemoryNetwork`. Each sync is a churn round: after it a seeded
 * fraction of the workers leaves without goodbye (its node killed, its messages lost), and as many
 * new workers join the way a late joiner does (`fetchSnapshot` of θ_global + momentum from live
 * peers, checked against the run's hash). The run's directory — who is expected at a round, as
 * the swarm doc holds it — keeps a leaver for the next round (its entry has not expired yet), so
 * that round's coordinator waits out its READY window for it, as in a real swarm.
 *
 * Time: the all-reduce's timers run on a ManualClock that moves only when every live worker waits
 * inside the all-reduce on a quiet network (./quiet-clock.ts), so a READY window closes because a
 * member is gone, never because this machine was slow; results replay for a seed.
 */
import { cpu } from '../gpu/cpu-backend.ts'
import { parseConfig, type ModelConfig } from '../model/config.ts'
import { TextDataset, type Window } from '../model/data.ts'
import { initModel } from '../model/model.ts'
import { AllReducePeer, type RoundDirectory } from '../swarm/train/allreduce.ts'
import { fetchSnapshot } from '../swarm/train/late-join.ts'
import { DiLoCoWorker, type SyncEvent } from '../swarm/train/worker.ts'
import { MemoryNetwork } from '../swarm/transport/memory.ts'
import { ManualClock } from '../util/clock.ts'
import { SimConfigError, SimStateError } from './errors.ts'
import { NetModel } from './model.ts'
import { CLOCKED_TIMING, countReduces, driveWhenQuiet } from './quiet-clock.ts'

/** The model every worker trains: 2 layers, width 32, byte vocabulary (bench:train's default). */
const CONFIG: ModelConfig = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const MODEL_SEED = 7
/** A joiner's state fetch: slices of this many bytes (the late-join protocol's own default is larger; small slices exercise the resume path). */
const SNAPSHOT_SLICE_BYTES = 64 * 1024

export interface TrainChurnInit {
  /** Workers live at every sync. */
  workers: number
  /** Fraction of the live workers that leave after each sync (as many join). @default 0.1 */
  churnPerSync?: number
  /** Seed of the world: data order, who leaves, message order. @default 1 */
  seed?: number
  /** Inner steps per sync (H). @default 4 */
  innerSteps?: number
  /** Training text (the bench and tests pass the Brown corpus). */
  corpus: string
}

export interface TrainChurnResult {
  workers: number
  syncs: number
  /** Members of each sync (as every live worker's sync event reports it). */
  members: number[]
  left: number
  joined: number
  /** Syncs after which every live worker (joiners included) held the same θ_global hash. */
  identicalSyncs: number
  /** Every worker's sync events agree on each sync's hash (leavers' earlier syncs included). */
  replicasIdentical: boolean
  /** Held-out loss of θ_global before the first sync and after the last. */
  evalBefore: number
  evalAfter: number
  /** READY windows and part timeouts the clock fired (a leaver's round waits one out). */
  timersFired: number
  errors: string[]
}

interface SimWorker { id: string, ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], reducing: number }

/** The run's directory as the swarm doc holds it: worker → first sync it takes part in, and the sync after which its entry is gone. */
class Directory implements RoundDirectory {
  readonly from = new Map<string, number>()
  readonly until = new Map<string, number>()
  expected = (round: number): string[] => [...this.from].filter(([p, s]) => s <= round && round <= (this.until.get(p) ?? Infinity)).map(([p]) => p).sort()
}

export class TrainChurnSim {
  private readonly net: MemoryNetwork
  private readonly clock = new ManualClock()
  private readonly dir = new Directory()
  private readonly model: NetModel
  private readonly live: SimWorker[] = []
  private readonly all: SimWorker[] = []
  private readonly train: TextDataset
  private readonly evalWindows: Window[]
  private readonly churn: number
  private readonly innerSteps: number
  private next = 0

  constructor (private readonly init: TrainChurnInit) {
    if (!Number.isInteger(init.workers) || init.workers < 2) throw new SimConfigError(`training needs at least 2 workers, got ${init.workers}`)
    this.churn = init.churnPerSync ?? 0.1
    if (!(this.churn >= 0 && this.churn < 1)) throw new SimConfigError(`churnPerSync ${this.churn} must be in [0, 1)`)
    this.innerSteps = init.innerSteps ?? 4
    if (!Number.isInteger(this.innerSteps) || this.innerSteps < 1) throw new SimConfigError(`innerSteps ${this.innerSteps} must be a positive integer`)
    if (init.corpus.length < 10_000) throw new SimConfigError(`the corpus has ${init.corpus.length} characters; at least 10,000 are needed`)
    const seed = init.seed ?? 1
    this.model = new NetModel({ seed })
    this.net = new MemoryNetwork({ seed })
    const { train, validation } = new TextDataset(init.corpus).split(0.1)
    this.train = train
    const it = validation.windows(32, 99)
    this.evalWindows = Array.from({ length: 4 }, () => it.next().value as Window)
  }

  private spawn (): SimWorker {
    const id = `w-${String(this.next).padStart(5, '0')}`
    const dataSeed = ++this.next
    const ar = new AllReducePeer(this.net.endpoint(id), { run: 'sim', directory: this.dir, ...CLOCKED_TIMING, partElements: 4096, windowParts: 4, clock: this.clock })
    const w: SimWorker = { id, ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], reducing: 0 }
    countReduces(ar, d => { w.reducing += d })
    w.worker = new DiLoCoWorker(initModel(CONFIG, cpu, MODEL_SEED), this.train, ar, { innerSteps: this.innerSteps, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.9 }, dataSeed }, {
      onSync: e => { w.syncs.push(e) },
      resync: async () => await fetchSnapshot(ar, this.live.filter(o => o !== w).map(o => o.id), { sliceBytes: SNAPSHOT_SLICE_BYTES })
    })
    this.all.push(w)
    return w
  }

  /** Runs `syncs` syncs with a churn round after each but the last. */
  async run (syncs: number): Promise<TrainChurnResult> {
    if (!Number.isInteger(syncs) || syncs < 1) throw new SimConfigError(`syncs ${syncs} must be a positive integer`)
    const errors: string[] = []
    for (let i = 0; i < this.init.workers; i++) {
      const w = this.spawn()
      this.dir.from.set(w.id, 0)
      this.live.push(w)
    }
    for (const w of this.live) await w.worker.initFromModel()
    const evalBefore = await this.live[0].worker.evalGlobal(this.evalWindows)
    const driver = driveWhenQuiet(this.clock, this.net, () => this.live.every(w => w.reducing > 0))
    const members: number[] = []
    let identicalSyncs = 0
    let left = 0
    let joined = 0
    try {
      for (let s = 0; s < syncs; s++) {
        await Promise.all(this.live.map(async w => { await w.worker.runSyncs(1) }))
        const hashes = new Set(this.live.map(w => w.worker.lastHash))
        if (hashes.size === 1) identicalSyncs++
        else errors.push(`sync ${s}: ${hashes.size} different θ_global hashes among ${this.live.length} live workers`)
        members.push(this.live[0].syncs.at(-1)?.members.length ?? 0)
        if (s === syncs - 1) break
        // Leavers vanish now; the doc still lists them for the next round (their entries expire after it).
        const picks = new Set(this.model.pick(this.live.length, Math.round(this.live.length * this.churn)))
        const leaving = this.live.filter((_, i) => picks.has(i))
        for (const w of leaving) {
          this.net.kill(w.id)
          w.ar.stop()
          this.dir.until.set(w.id, s + 1)
        }
        const staying = this.live.filter((_, i) => !picks.has(i))
        this.live.splice(0, this.live.length, ...staying)
        left += leaving.length
        // As many join: each fetches the state of sync s from live peers and takes part from s + 1.
        for (let j = 0; j < leaving.length; j++) {
          const w = this.spawn()
          const snap = await fetchSnapshot(w.ar, staying.map(o => o.id), { expectHash: staying[0].worker.lastHash, totalBytes: 8 * w.worker.layout.total, sliceBytes: SNAPSHOT_SLICE_BYTES })
          await w.worker.initFromSnapshot(snap)
          if (w.worker.lastHash !== staying[0].worker.lastHash) throw new SimStateError(`joiner ${w.id} fetched a state that does not match the run's`)
          this.dir.from.set(w.id, w.worker.nextSeq)
          this.live.push(w)
          joined++
        }
      }
    } finally {
      driver.stop()
    }
    const evalAfter = await this.live[0].worker.evalGlobal(this.evalWindows)
    return { workers: this.init.workers, syncs, members, left, joined, identicalSyncs, replicasIdentical: replicasAgree(this.all), evalBefore, evalAfter, timersFired: driver.fired, errors }
  }

  /** Stops every worker's all-reduce and frees their models. */
  stop (): void {
    for (const w of this.all) { w.ar.stop(); w.worker.dispose() }
  }
}

/** Every worker's sync events agree on the hash of each sync number they both applied. */
function replicasAgree (ws: readonly SimWorker[]): boolean {
  const bySeq = new Map<number, string>()
  for (const w of ws) {
    for (const e of w.syncs) {
      const h = bySeq.get(e.seq)
      if (h === undefined) bySeq.set(e.seq, e.hash)
      else if (h !== e.hash) return false
    }
  }
  return true
}
