/**
 * A trainer thread's accounting and its quiet runs (BENCHMARKS.md § Training, session 10): a
 * worker with no step listener gets no step events from its thread and the same bytes as one
 * with a listener; the thread's stats account for its run (the parts inside a run fit in it, one
 * wait per fence, the run's start before its held fence, and the per-run fields reset); and
 * bench:train's breakdown of a worker's wall time adds back up to it. Real threads on the seeded
 * in-memory network with a ManualClock that never moves; nothing here asserts a duration.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import type { SpawnTrainer } from '../../../web/src/swarm/train/thread-trainer.ts'
import type { TrainerTimes } from '../../../web/src/swarm/train/trainer-messages.ts'
import { spawnTrainerThread } from '../../../web/src/swarm/train/trainer-thread-node.ts'
import { DiLoCoWorker, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { threadBreakdown } from '../../../bench/train-thread-times.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const IDS = ['w-a', 'w-b', 'w-c']

let train: TextDataset
beforeAll(async () => {
  train = new TextDataset((await brownCorpus()).slice(0, 300_000)).split(0.1).train
})

/** Real trainer threads; counts the step-event messages they post and the runs sent with `events`. */
class Counted {
  stepMessages = 0
  runs: boolean[] = []
  readonly spawn: SpawnTrainer = () => {
    const p = spawnTrainerThread()
    const post = p.postMessage
    p.postMessage = (m, transfer) => {
      if (m.type === 'run') this.runs.push(m.events)
      post(m, transfer)
    }
    let handler: typeof p.onmessage = null
    Object.defineProperty(p, 'onmessage', {
      get: () => handler,
      set: (f: typeof p.onmessage) => {
        handler = f === null ? null : ev => { if (ev.data.type === 'steps') this.stepMessages++; f(ev) }
      }
    })
    return p
  }
}

interface Node { ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], steps: number }
let nodes: Node[] = []
afterEach(async () => {
  for (const n of nodes) n.ar.stop()
  await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
  nodes = []
})

/** 3 workers on threads, delayed outer update and top-k; `listen`: with an onStep hook. */
function swarm (threads: Counted, listen: boolean): Node[] {
  const net = new MemoryNetwork({ seed: 11 })
  const clock = new ManualClock()
  const made = IDS.map((id, i) => {
    const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected: () => IDS }, ...TIMING, clock, codec: topkCodec({ chunk: 64, k: 4, bits: 2, resultBits: 4 }) })
    const node: Node = { ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], steps: 0 }
    node.worker = new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ar, {
      innerSteps: 4, seqLen: 32, innerLr: 3e-3, warmupSteps: 3, outer: { lr: 0.7, momentum: 0.5 }, dataSeed: i + 1, delayOuter: true, trainerThread: threads.spawn
    }, {
      onSync: e => { node.syncs.push(e) },
      ...(listen ? { onStep: () => { node.steps++ } } : {})
    })
    return node
  })
  nodes.push(...made)
  return made
}

async function runSwarm (listen: boolean, syncs: number): Promise<{ threads: Counted, ns: Node[], hashes: string[][], local: Buffer[], global: Buffer[], stats: Array<TrainerTimes | undefined> }> {
  const threads = new Counted()
  const ns = swarm(threads, listen)
  for (const n of ns) await n.worker.initFromModel()
  await Promise.all(ns.map(async n => { await n.worker.runSyncs(syncs, undefined, { last: true }) }))
  const local = await Promise.all(ns.map(async n => Buffer.from((await (n.worker as unknown as { readLocal: () => Promise<Float32Array> }).readLocal()).buffer)))
  const stats = await Promise.all(ns.map(async n => await n.worker.trainerStats()))
  return { threads, ns, hashes: ns.map(n => n.syncs.map(s => s.hash)), local, global: ns.map(n => Buffer.from(n.worker.global.slice().buffer)), stats }
}

describe('trainer thread: quiet runs and the accounting of its time', () => {
  it('with no step listener the thread posts no step events, and the bytes equal a run with one', async () => {
    const heard = await runSwarm(true, 3)
    expect(heard.threads.runs.every(e => e)).toBe(true)
    expect(heard.threads.stepMessages).toBeGreaterThan(0)
    for (const n of heard.ns) expect(n.steps).toBe(n.worker.step)
    for (const n of nodes) n.ar.stop()
    await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
    nodes = []
    const quiet = await runSwarm(false, 3)
    expect(quiet.threads.runs.length).toBeGreaterThan(0)
    expect(quiet.threads.runs.some(e => e)).toBe(false)
    expect(quiet.threads.stepMessages).toBe(0)
    expect(quiet.hashes[0].length).toBe(3)
    for (let i = 0; i < IDS.length; i++) {
      expect(quiet.hashes[i]).toEqual(heard.hashes[i])
      expect(quiet.local[i].equals(heard.local[i])).toBe(true)
      expect(quiet.global[i].equals(heard.global[i])).toBe(true)
    }
  })

  it('the thread\'s stats account for its run: its parts fit in it, one wait per fence, the per-run fields reset', async () => {
    const { ns, stats } = await runSwarm(false, 3)
    for (const [i, s] of stats.entries()) {
      if (s === undefined) throw new Error('no stats from a started thread')
      // 3 syncs, H 4, delayed: they start at steps 4, 8, 12 and land at 8, 12, 16 — fences 4, 8, 12, 16
      expect(ns[i].worker.step).toBe(16)
      expect(s.fenceWaitsMs.length).toBe(4)
      expect(s.stepMs).toBeGreaterThan(0)
      expect(s.firstStepMs).toBeGreaterThan(0)
      expect(s.firstStepMs).toBeLessThanOrEqual(s.stepMs)
      expect(s.stepEventsMs).toBe(0) // no listener: nothing posted
      const parts = s.stepMs + s.stepEventsMs + s.turnMs + s.planWaitMs + s.rebaseMs + s.fenceMs
      expect(parts).toBeLessThanOrEqual(s.runMs + 1e-6)
      expect(s.fenceWaitsMs.reduce((a, b) => a + b, 0)).toBeCloseTo(s.planWaitMs, 6)
      expect(s.planLateMs).toBeLessThanOrEqual(s.planWaitMs + 1e-6)
      expect(Number.isFinite(s.runAt) && Number.isFinite(s.heldAt)).toBe(true)
      expect(s.heldAt).toBeGreaterThanOrEqual(s.runAt)
      expect(s.cpuMs).toBeGreaterThan(0) // Linux schedstat, where the suite runs
      expect(s.gcMs).toBeGreaterThanOrEqual(0)
    }
    const again = await ns[0].worker.trainerStats()
    expect(again?.runAt).toBeNaN()
    expect(again?.fenceWaitsMs).toEqual([])
    expect(again?.stepMs).toBe(stats[0]!.stepMs) // the sums go on
  })
})

describe('bench:train utilization: a trainer thread\'s breakdown (bench/train-thread-times.ts)', () => {
  const zero: TrainerTimes = { stepMs: 0, firstStepMs: 0, runMs: 0, stepEventsMs: 0, turnMs: 0, planWaitMs: 0, planLateMs: 0, rebaseMs: 0, fenceMs: 0, runAt: NaN, heldAt: NaN, fenceWaitsMs: [], gcMs: 5 }

  it('adds back up to the wall time: start, the run\'s parts and what is left in it, held, end', () => {
    const after: TrainerTimes = { stepMs: 900, firstStepMs: 40, runMs: 1000, stepEventsMs: 3, turnMs: 11, planWaitMs: 60, planLateMs: 2, rebaseMs: 7, fenceMs: 5, runAt: 10_020, heldAt: 11_020, fenceWaitsMs: [0, 50, 10], gcMs: 30 }
    const b = threadBreakdown(zero, after, 10_000, 11_100)
    expect(b).toEqual({ startMs: 20, firstStepMs: 40, stepEventsMs: 3, turnMs: 11, planWaitMs: 60, planLateMs: 2, lastPlanWaitMs: 10, rebaseMs: 7, fenceMs: 5, loopMs: 14, heldMs: 0, endMs: 80, gcMs: 25, fenceWaitsMs: [0, 50, 10] })
    const sum = after.stepMs + b.startMs + b.stepEventsMs + b.turnMs + b.planWaitMs + b.rebaseMs + b.fenceMs + b.loopMs + b.heldMs + b.endMs
    expect(sum).toBe(1100)
  })

  it('counts only the run between the two stats: sums as differences, the first step only if the thread had taken none, a hold between runs', () => {
    const before: TrainerTimes = { ...zero, stepMs: 500, firstStepMs: 40, runMs: 600, turnMs: 10 }
    const after: TrainerTimes = { ...before, stepMs: 1400, runMs: 1600, turnMs: 30, runAt: 0, heldAt: 1800, fenceWaitsMs: [] }
    const b = threadBreakdown(before, after, 0, 1800)
    expect(b.firstStepMs).toBe(0)
    expect(b.turnMs).toBe(20)
    expect(b.loopMs).toBe(80) // 1000 in the runs, 900 in steps, 20 in turns
    expect(b.heldMs).toBe(800) // the thread held between two runs for what the run did not spend in them
    expect(b.lastPlanWaitMs).toBe(0)
  })
})
