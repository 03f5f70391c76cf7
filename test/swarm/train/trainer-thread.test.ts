/**
 * DiLoCo workers whose inner steps run on a trainer thread (trainer-thread.ts on a Node worker
 * thread) against the same workers stepping on their own thread, on the seeded in-memory network
 * with a ManualClock that never moves: the same θ_global hash after every sync, the same θ_local,
 * losses and eval losses, with the delayed outer update and top-k (landings planned ahead), and
 * with plain DiLoCo, two fragments and q8 (the thread holds at each sync); a late joiner; an error
 * in the thread surfaces as a TrainerThreadError and ends the thread; an abort mid-sync halts the
 * thread at a step, the run resumes with replicas identical, and dispose leaves none running.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import { TrainArgumentError, TrainerThreadError } from '../../../web/src/swarm/train/errors.ts'
import type { SpawnTrainer, TrainerPort } from '../../../web/src/swarm/train/thread-trainer.ts'
import { spawnTrainerThread } from '../../../web/src/swarm/train/trainer-thread-node.ts'
import { DiLoCoWorker, type DiLoCoOptions, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import * as Y from 'yjs'
import { runAbortedAt } from './abort-at-step.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
/** Timers on a ManualClock that never moves: no window or timeout can decide anything here. */
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const OPTS: Omit<DiLoCoOptions, 'dataSeed'> = { innerSteps: 4, seqLen: 32, innerLr: 3e-3, warmupSteps: 3, outer: { lr: 0.7, momentum: 0.5 } }

let train: TextDataset
let evalWindows: Window[]
beforeAll(async () => {
  const text = (await brownCorpus()).slice(0, 300_000)
  const split = new TextDataset(text).split(0.1)
  train = split.train
  const it = split.validation.windows(32, 5)
  evalWindows = [it.next().value as Window, it.next().value as Window]
})

/** Spawns real trainer threads; counts those that have exited and the plans sent to them. */
class Threads {
  readonly ports: TrainerPort[] = []
  exited = 0
  rebases = 0
  /** Plans that hold the thread at their fence. */
  holds = 0
  readonly spawn: SpawnTrainer = () => {
    const p = spawnTrainerThread()
    const postMessage = p.postMessage
    p.postMessage = (m, transfer) => {
      if (m.type === 'plan' && m.op !== undefined) this.rebases++
      if (m.type === 'plan' && m.then === undefined) this.holds++
      postMessage(m, transfer)
    }
    const terminate = p.terminate
    p.terminate = async () => { await terminate(); this.exited++ }
    this.ports.push(p)
    return p
  }
}

interface Node { id: string, ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], losses: number[] }
let nodes: Node[] = []
afterEach(async () => {
  for (const n of nodes) n.ar.stop()
  await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
  nodes = []
})

const IDS = ['w-a', 'w-b', 'w-c']
/** Every worker id any test uses (data seeds follow this order). */
const ALL = [...IDS, 'w-d']

function swarm (ids: string[], expected: (seq: number) => string[], net: MemoryNetwork, clock: ManualClock, opts: Partial<DiLoCoOptions>, threads?: Threads, topk = true): Node[] {
  const made = ids.map(id => {
    const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected }, ...TIMING, clock, ...(topk ? { codec: topkCodec({ chunk: 64, k: 4, bits: 2, resultBits: 4 }) } : {}) })
    const node: Node = { id, ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], losses: [] }
    node.worker = new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ar, { ...OPTS, dataSeed: ALL.indexOf(id) + 1, ...opts, ...(threads !== undefined ? { trainerThread: threads.spawn } : {}) }, {
      onSync: (e) => { node.syncs.push(e) },
      onStep: (e) => { node.losses.push(e.loss) }
    })
    return node
  })
  nodes.push(...made)
  return made
}

/** Runs `syncs` syncs on 3 workers (stepping here, or on threads); what each worker ends with. */
async function run (opts: Partial<DiLoCoOptions>, syncs: number, threads?: Threads, topk = true): Promise<Array<{ hashes: string[], evals: Array<number | undefined>, losses: number[], local: Float32Array, global: Float32Array, step: number }>> {
  const ns = swarm(IDS, () => IDS, new MemoryNetwork({ seed: 11 }), new ManualClock(), opts, threads, topk)
  for (const n of ns) await n.worker.initFromModel()
  await Promise.all(ns.map(async n => { await n.worker.runSyncs(syncs, undefined, { last: true }) }))
  return await Promise.all(ns.map(async n => ({
    hashes: n.syncs.map(s => s.hash),
    evals: n.syncs.map(s => s.evalLoss),
    losses: n.losses,
    local: await (n.worker as unknown as { readLocal: () => Promise<Float32Array> }).readLocal(),
    global: n.worker.global.slice(),
    step: n.worker.step
  })))
}

describe('inner steps on a trainer thread', () => {
  it('delayed outer update, top-k: the same bytes as stepping on the worker\'s thread, sync by sync', async () => {
    const opts = { delayOuter: true }
    const here = await run(opts, 4)
    const threads = new Threads()
    const there = await run(opts, 4, threads)
    expect(threads.ports.length).toBe(3)
    expect(here[0].hashes.length).toBe(4)
    expect(threads.rebases).toBe(12) // every landing was planned ahead: the threads never held for one
    expect(threads.holds).toBe(3) // each thread held only at the end of the run
    for (let i = 0; i < 3; i++) {
      expect(there[i].hashes).toEqual(here[i].hashes)
      expect(there[i].losses).toEqual(here[i].losses)
      expect(there[i].step).toBe(here[i].step)
      expect(Buffer.from(there[i].local.buffer).equals(Buffer.from(here[i].local.buffer))).toBe(true)
      expect(Buffer.from(there[i].global.buffer).equals(Buffer.from(here[i].global.buffer))).toBe(true)
    }
    // replicas agree, and θ_local moved off θ_global (the steps since the last landing are kept)
    expect(new Set(there.map(r => r.hashes.join())).size).toBe(1)
    expect(there[0].local).not.toEqual(there[0].global)
  })

  it('delayed outer update with 2 fragments (streaming): the same bytes, every landing planned ahead', async () => {
    const opts = { delayOuter: true, fragments: 2, innerSteps: 6 }
    const here = await run(opts, 4)
    const threads = new Threads()
    const there = await run(opts, 4, threads)
    for (let i = 0; i < 3; i++) {
      expect(there[i].hashes).toEqual(here[i].hashes)
      expect(Buffer.from(there[i].local.buffer).equals(Buffer.from(here[i].local.buffer))).toBe(true)
    }
    expect(threads.rebases).toBe(12)
    expect(threads.holds).toBe(3)
  })

  it('plain DiLoCo, 2 fragments, q8, eval loss after each sync: the same bytes and eval losses', async () => {
    const opts = { fragments: 2, evalWindows }
    const here = await run(opts, 4, undefined, false)
    const threads = new Threads()
    const there = await run(opts, 4, threads, false)
    expect(threads.rebases).toBe(0) // without the delay each thread holds at every sync until it lands
    expect(threads.holds).toBe(3 * 4) // the syncs start and land at steps 4, 6, 8 and 10
    for (let i = 0; i < 3; i++) {
      expect(there[i].hashes).toEqual(here[i].hashes)
      expect(there[i].evals).toEqual(here[i].evals)
      expect(there[i].evals.every(e => e !== undefined && Number.isFinite(e))).toBe(true)
      expect(Buffer.from(there[i].local.buffer).equals(Buffer.from(here[i].local.buffer))).toBe(true)
    }
  })

  it('a late joiner on a thread starts from the swarm\'s snapshot and stays bit-identical', async () => {
    const threads = new Threads()
    const net = new MemoryNetwork({ seed: 4 })
    const clock = new ManualClock()
    // w-d takes part from sync 2 (the first after the snapshot of sync 1 it joins from)
    const expected = (seq: number): string[] => seq >= 2 ? ALL : IDS
    const founders = swarm(IDS, expected, net, clock, { delayOuter: true }, threads)
    for (const n of founders) await n.worker.initFromModel()
    await Promise.all(founders.map(async n => { await n.worker.runSyncs(2) }))
    const [late] = swarm(['w-d'], expected, net, clock, { delayOuter: true }, threads)
    const snap = founders[0].worker.snapshot()
    if (snap === undefined) throw new Error('no snapshot')
    await late.worker.initFromSnapshot(snap)
    expect(late.worker.contributesFrom).toBe(2)
    await Promise.all([...founders, late].map(async n => { await n.worker.runSyncs(2) }))
    const last = late.syncs.at(-1)!
    expect(founders.map(n => n.syncs.find(s => s.seq === last.seq)?.hash)).toEqual([last.hash, last.hash, last.hash])
    expect(last.seq).toBe(3)
    expect(last.members).toEqual(ALL)
    expect(late.worker.step).toBe(founders[0].worker.step)
    expect(threads.ports.length).toBe(4)
  })

  it('an error in the thread is a TrainerThreadError naming it; the thread is ended, the all-reduce peer goes on', async () => {
    const threads = new Threads()
    const ar = new AllReducePeer(new MemoryNetwork({ seed: 1 }).endpoint('w-a'), { run: 'r1', directory: { expected: () => ['w-a'] }, ...TIMING, clock: new ManualClock() })
    // a corpus shorter than one window: the first step's windows throw, on the thread
    const w = new DiLoCoWorker(initModel(CONFIG, cpu, 7), new TextDataset('too short'), ar, { ...OPTS, dataSeed: 1, trainerThread: threads.spawn })
    nodes.push({ id: 'w-a', ar, worker: w, syncs: [], losses: [] })
    await w.initFromModel()
    const err = await w.runSyncs(1).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TrainerThreadError)
    expect((err as Error).message).toMatch(/ModelArgumentError: corpus of 9 bytes is shorter than one window of 33/)
    await expect(w.runSyncs(1)).rejects.toBe(err)
    expect(w.snapshot()?.round).toBe(-1) // θ_global is still this thread's to serve
    await w.dispose()
    expect(threads.exited).toBe(1)
  })

  it('a thread that dies mid-run fails the run with a TrainerThreadError', async () => {
    const threads = new Threads()
    const ns = swarm(['w-a'], () => ['w-a'], new MemoryNetwork({ seed: 2 }), new ManualClock(), {}, threads)
    const w = ns[0].worker
    await w.initFromModel()
    let killed = false
    ;(w.hooks as { onStep?: (e: unknown) => void }).onStep = () => {
      if (!killed) { killed = true; void threads.ports[0].terminate() } // from outside, as a crash would
    }
    const err = await w.runSyncs(2).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TrainerThreadError)
    expect((err as Error).message).toMatch(/exited with code 1/)
  })

  it('an abort mid-sync halts the thread at a step; the run resumes bit-identical; dispose leaves no thread running', async () => {
    const threads = new Threads()
    const ns = swarm(IDS, () => IDS, new MemoryNetwork({ seed: 3 }), new ManualClock(), { delayOuter: true }, threads)
    for (const n of ns) await n.worker.initFromModel()
    // sync 0 starts at step 4 and lands at step 8: each worker aborts at its step 6, while it is in flight
    const outs = await runAbortedAt(ns.map(n => n.worker), 6, 3)
    for (const e of outs) expect((e as Error).message).toBe('stop')
    for (const n of ns) {
      // halted after step 6 or a later one (step events come in batches): at the fence (8) if
      // the halt came that late, past it if the thread had already taken sync 0's planned
      // landing there, at the latest at the next fence (12), whose plan no longer comes
      expect(n.worker.step).toBeGreaterThanOrEqual(6)
      expect(n.worker.step).toBeLessThanOrEqual(12)
      expect(n.worker.lastSeq).toBe(n.worker.step > 8 ? 0 : -1)
    }
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(3 - (n.worker.lastSeq + 1), undefined, { last: true }) }))
    for (const n of ns) expect(n.syncs.map(s => s.hash)).toEqual(ns[0].syncs.map(s => s.hash))
    expect(ns[0].syncs.map(s => s.seq)).toEqual([0, 1, 2])
    for (const n of ns) n.ar.stop()
    await Promise.all(ns.map(async n => { await n.worker.dispose() }))
    expect(threads.exited).toBe(3)
    nodes = []
  })

  it('TrainSession with trainerThread: the same sync hashes and eval losses as sessions stepping on their own thread', async () => {
    const spec = defaultRunSpec('threaded', { innerSteps: 3, seqLen: 16, totalSyncs: 3, delayOuter: true, corpus: { kind: 'text', text: 'x' } })
    const text = 'the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. '.repeat(200)
    const timing = { partTimeoutMs: 30_000, readyWindowMs: 60_000, coordinatorTimeoutMs: 120_000, partElements: 4096, windowParts: 4 }
    const runSessions = async (threads?: Threads): Promise<SyncEvent[][]> => {
      const net = new MemoryNetwork({ seed: 8 })
      const doc = new Y.Doc()
      new RunBoard(doc.getMap(TRAIN_MAP), spec.id).declare(spec)
      const syncs: SyncEvent[][] = [[], [], []]
      const ss = await Promise.all(['s-a', 's-b', 's-c'].map(async (id, i) => await TrainSession.start({
        transport: net.endpoint(id), board: new RunBoard(doc.getMap(TRAIN_MAP), spec.id), backend: cpu, corpus: async () => text, allreduce: timing,
        onSync: (e) => { syncs[i].push(e) }, ...(threads !== undefined ? { trainerThread: threads.spawn } : {})
      })))
      try {
        await Promise.all(ss.map(async s => { await s.run() }))
      } finally {
        for (const s of ss) s.stop()
        await Promise.all(ss.map(async s => { await s.worker.dispose() }))
      }
      return syncs
    }
    const here = await runSessions()
    const threads = new Threads()
    const there = await runSessions(threads)
    expect(here[0].map(e => e.seq)).toEqual([0, 1, 2])
    for (let i = 0; i < 3; i++) {
      expect(there[i].map(e => e.hash)).toEqual(here[0].map(e => e.hash))
      expect(there[i].map(e => e.evalLoss)).toEqual(here[i].map(e => e.evalLoss))
    }
    expect(there[0].every(e => e.evalLoss !== undefined)).toBe(true)
    expect(threads.exited).toBe(3)
  })

  it('refuses tick() with a trainer thread', async () => {
    const ns = swarm(['w-a'], () => ['w-a'], new MemoryNetwork({ seed: 2 }), new ManualClock(), {}, new Threads())
    await expect(ns[0].worker.tick()).rejects.toThrow(TrainArgumentError)
  })
})
