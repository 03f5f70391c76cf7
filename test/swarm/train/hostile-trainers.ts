/**
 * A DiLoCo run with hostile trainers over the seeded MemoryNetwork, for robust-attacks.test.ts
 * and bench:trust: workers on a tiny llama with the trimmed mean and the Gauntlet-style
 * contribution check, some of which corrupt what they contribute.
 *
 * The attack sits in front of the attacker's AllReducePeer.reduce: it replaces the q8 vector the
 * worker contributes (and its norm claim), so every owner, the attacker's own part included, sees it.
 */
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { GauntletCheck } from '../../../web/src/swarm/train/contribution-check.ts'
import { ModelLossProbe } from '../../../web/src/swarm/train/loss-probe.ts'
import type { Aggregation } from '../../../web/src/swarm/train/robust.ts'
import { DiLoCoWorker, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { normQ8 } from '../../../web/src/swarm/train/q8fast.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const MODEL_SEED = 7
const BLOCK = 64
/** One part per owner (the tiny model's fifth is < 16 Ki elements): one check per owner and round. */
const TIMING = { ...CLOCKED_TIMING, partElements: 16_384, windowParts: 4 }

/** sign-flip: −update; scale: 10× its block scales; zeros; noise: uniform int8 at 2× the scale; replay: its round-0 bytes again. */
export type Attack = 'sign-flip' | 'scale' | 'zeros' | 'noise' | 'replay'

export interface TrainerNode { id: string, ar: AllReducePeer, worker: DiLoCoWorker, check: GauntletCheck, syncs: SyncEvent[] }

/** The Brown corpus split the runs train on, and 4 held-out evaluation windows. */
export async function trainingData (): Promise<{ train: TextDataset, evalWindows: Window[] }> {
  const { train, validation } = new TextDataset((await brownCorpus()).slice(0, 400_000)).split(0.1)
  const it = validation.windows(32, 99)
  return { train, evalWindows: Array.from({ length: 4 }, () => it.next().value as Window) }
}

/** The attacker's replacement for its q8 contribution of round `round` (`first`: its round-0 bytes). */
function corrupt (attack: Attack, q: Uint8Array, n: number, rng: Rng, first: Uint8Array | undefined): Uint8Array {
  const out = q.slice()
  const i8 = new Int8Array(out.buffer)
  const v = new DataView(out.buffer)
  const nb = Math.ceil(n / BLOCK)
  for (let j = 0; j < nb; j++) {
    const at = j * (4 + BLOCK)
    for (let i = 0; i < BLOCK; i++) {
      const o = at + 4 + i
      if (attack === 'sign-flip') i8[o] = -i8[o]
      else if (attack === 'zeros') i8[o] = 0
      else if (attack === 'noise') i8[o] = rng.int(255) - 127
    }
    if (attack === 'zeros') v.setFloat32(at, 0, true)
    if (attack === 'noise') v.setFloat32(at, 2 * v.getFloat32(at, true), true) // twice the honest scale: noise of ~2× an honest norm
    if (attack === 'scale') v.setFloat32(at, 10 * v.getFloat32(at, true), true)
  }
  if (attack === 'replay' && first !== undefined) return first.slice()
  return out
}

export interface HostileRun {
  nodes: TrainerNode[]
  honest: TrainerNode[]
  attackers: TrainerNode[]
  /** The global model's evaluation loss before training. */
  before: number
  /** Timeouts that fired: 0 when every exclusion was the check's. */
  fired: number
  /** Stops every node's all-reduce and frees its model. */
  dispose: () => void
}

export interface HostileRunOptions {
  seed: number
  /** Worker ids, in any order. */
  ids: string[]
  /** Which of them attack. */
  attackers: string[]
  attack?: Attack
  syncs: number
  aggregation: Aggregation
  data: { train: TextDataset, evalWindows: Window[] }
}

export async function hostileRun (o: HostileRunOptions): Promise<HostileRun> {
  const clock = new ManualClock()
  const net = new MemoryNetwork({ seed: o.seed })
  const { train, evalWindows } = o.data
  const node = (id: string, dataSeed: number, attack?: Attack): TrainerNode => {
    const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected: () => o.ids }, ...TIMING, clock, aggregation: o.aggregation })
    const worker = new DiLoCoWorker(initModel(CONFIG, cpu, MODEL_SEED), train, ar, { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.9 }, dataSeed, evalWindows })
    const check = new GauntletCheck(new ModelLossProbe({ model: initModel(CONFIG, cpu, MODEL_SEED), data: train, layout: worker.layout, fragments: worker.fragments, global: () => worker.global, seqLen: 32 }))
    ar.contributionCheck = check
    if (process.env.CHECK_LOG !== undefined) {
      const inner = check.check.bind(check)
      check.check = async (p) => { const out = await inner(p); console.log(`${id} r${p.round} [${p.start}] gains ${[...check.lastGains].map(([k, g]) => `${k}:${g.toExponential(2)}`).join(' ')} excl ${[...out.keys()].join(',')}`); return out }
    }
    const n: TrainerNode = { id, ar, worker, check, syncs: [] }
    if (attack !== undefined) {
      const reduce = ar.reduce.bind(ar)
      const rng = new Rng(dataSeed)
      let first: Uint8Array | undefined
      ar.reduce = async (round, q, len, into, _norm) => {
        first ??= q.slice()
        const bad = corrupt(attack, q, len, rng, round === 0 ? undefined : first)
        return await reduce(round, bad, len, into, normQ8(bad, len, BLOCK)) // an honest-looking claim of what it sends
      }
    }
    worker.hooks.onSync = (e) => { n.syncs.push(e) }
    return n
  }
  const nodes = o.ids.map((id, i) => node(id, o.seed * 10 + i + 1, o.attackers.includes(id) ? o.attack : undefined))
  const dispose = (): void => { for (const n of nodes) { n.ar.stop(); n.worker.dispose() } }
  try {
    const before = await nodes[0].worker.evalGlobal(evalWindows)
    for (const n of nodes) await n.worker.initFromModel()
    await Promise.all(nodes.map(async n => { await n.worker.runSyncs(o.syncs) }))
    const hostile = o.attack === undefined ? [] : o.attackers
    return { nodes, honest: nodes.filter(n => !hostile.includes(n.id)), attackers: nodes.filter(n => hostile.includes(n.id)), before, fired: clock.fired, dispose }
  } catch (e) {
    dispose()
    throw e
  }
}
