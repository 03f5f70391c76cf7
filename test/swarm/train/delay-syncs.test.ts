/**
 * The delayed outer update over d > 1 syncs (worker.ts `delayOuter: d`), on a real tiny Llama
 * (CPU twins) over the seeded in-memory network with a ManualClock that never moves: sync s lands
 * at sync s + d's fence, in order; replicas stay bit-identical with and without the trainer
 * thread; one worker's run equals a reference written the slow way (full vectors, one array per
 * sync in flight, applied at fence s + 2); `true` is d = 1; bad values and unsupported
 * combinations are refused by name. Late joins and resyncs with d > 1: delay-join.test.ts.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { Trainer } from '../../../web/src/model/train.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'
import { layoutOf } from '../../../web/src/swarm/train/flat.ts'
import { innerLr, readParams, rebaseLocal, WindowStream, writeParams } from '../../../web/src/swarm/train/inner-loop.ts'
import { hashBytes, nesterovStep, outerLrAt, pseudoGradient, resolveOuter } from '../../../web/src/swarm/train/outer.ts'
import { spawnTrainerThread } from '../../../web/src/swarm/train/trainer-thread-node.ts'
import { DiLoCoWorker, type DiLoCoOptions, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { runAbortedAt } from './abort-at-step.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
/** Timers on a ManualClock that never moves: no window or timeout can decide anything here. */
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const OPTS: Omit<DiLoCoOptions, 'dataSeed'> = { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.5 } }
const CODEC = { chunk: 64, k: 4, bits: 2, resultBits: 4 }

let train: TextDataset
beforeAll(async () => { train = new TextDataset((await brownCorpus()).slice(0, 300_000)) })

interface Node { ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], landedAt: number[] }
let nodes: Node[] = []
afterEach(async () => {
  for (const n of nodes) n.ar.stop()
  await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
  nodes = []
})

function swarm (n: number, seed: number, opts: Partial<DiLoCoOptions>, thread = false): Node[] {
  const net = new MemoryNetwork({ seed })
  const ids = Array.from({ length: n }, (_, i) => `w-${String.fromCharCode(97 + i)}`)
  const clock = new ManualClock()
  nodes = ids.map((id, i) => {
    const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected: () => ids }, ...TIMING, clock, codec: topkCodec(CODEC) })
    const node: Node = { ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], landedAt: [] }
    node.worker = new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ar, { ...OPTS, dataSeed: i + 1, ...opts, ...(thread ? { trainerThread: spawnTrainerThread } : {}) }, {
      onSync: (e) => { node.syncs.push(e); node.landedAt.push(node.worker.step) }
    })
    return node
  })
  return nodes
}

async function localOf (w: DiLoCoWorker): Promise<Float32Array> {
  return await (w as unknown as { readLocal: () => Promise<Float32Array> }).readLocal()
}

function expectIdentical (ns: Node[]): void {
  for (const n of ns) expect(n.syncs.map(s => s.hash)).toEqual(ns[0].syncs.map(s => s.hash))
  for (const n of ns) expect(n.worker.global).toEqual(ns[0].worker.global)
}

/** Runs `syncs` syncs (last: true) on n workers; what each ends with. */
async function run (n: number, opts: Partial<DiLoCoOptions>, syncs: number, thread = false): Promise<Array<{ hashes: string[], landedAt: number[], local: Float32Array, global: Float32Array, step: number }>> {
  const ns = swarm(n, 11, opts, thread)
  for (const x of ns) await x.worker.initFromModel()
  await Promise.all(ns.map(async x => { await x.worker.runSyncs(syncs, undefined, { last: true }) }))
  expectIdentical(ns)
  const out = await Promise.all(ns.map(async x => ({ hashes: x.syncs.map(s => s.hash), landedAt: x.landedAt, local: await localOf(x.worker), global: x.worker.global.slice(), step: x.worker.step })))
  for (const x of ns) x.ar.stop()
  await Promise.all(ns.map(async x => { await x.worker.dispose() }))
  nodes = []
  return out
}

const same = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

describe('delayed outer update over d > 1 syncs', () => {
  it('d = 2, 3 workers, 5 syncs: sync s lands at sync s + 2\'s fence, in order; replicas identical; the run\'s end lands every sync in flight', async () => {
    const r = await run(3, { delayOuter: 2 }, 5)
    // sync s starts at step 4(s + 1) and lands 2·4 steps later
    expect(r[0].landedAt).toEqual([12, 16, 20, 24, 28])
    expect(r[0].step).toBe(28)
    expect(r[0].hashes.length).toBe(5)
    expect(new Set(r[0].hashes).size).toBe(5)
    // against d = 1 (same seeds): sync 0 is the same window and mean, later ones are not
    const one = await run(3, { delayOuter: 1 }, 5)
    expect(one[0].landedAt).toEqual([8, 12, 16, 20, 24])
    expect(one[0].hashes[0]).toBe(r[0].hashes[0])
    expect(one[0].hashes[4]).not.toBe(r[0].hashes[4])
  })

  it('delayOuter: true is d = 1, bit for bit', async () => {
    const a = await run(2, { delayOuter: true }, 3)
    const b = await run(2, { delayOuter: 1 }, 3)
    expect(b[0].hashes).toEqual(a[0].hashes)
    expect(same(b[0].local, a[0].local)).toBe(true)
  })

  it('d = 2 on trainer threads: the same bytes as stepping on the worker\'s thread, replicas identical', async () => {
    const here = await run(3, { delayOuter: 2 }, 5)
    const there = await run(3, { delayOuter: 2 }, 5, true)
    for (let i = 0; i < 3; i++) {
      expect(there[i].hashes).toEqual(here[i].hashes)
      expect(there[i].landedAt).toEqual(here[i].landedAt)
      expect(same(there[i].local, here[i].local)).toBe(true)
      expect(same(there[i].global, here[i].global)).toBe(true)
    }
    expect(there[0].local).not.toEqual(there[0].global)
  })

  it('d = 3 with 2 fragments (two syncs of one fragment in flight): replicas identical, with and without the thread', async () => {
    const opts = { delayOuter: 3, fragments: 2, innerSteps: 6 }
    const here = await run(2, opts, 6)
    const there = await run(2, opts, 6, true)
    // fragment f's k-th sync starts at 3f + 6k and lands 3·3 steps later
    expect(here[0].landedAt).toEqual([15, 18, 21, 24, 27, 30])
    for (let i = 0; i < 2; i++) {
      expect(there[i].hashes).toEqual(here[i].hashes)
      expect(same(there[i].local, here[i].local)).toBe(true)
    }
  })

  it('d = 2 on trainer threads, aborted with two syncs in flight: the run resumes and ends with the uninterrupted run\'s bytes', async () => {
    const whole = await run(3, { delayOuter: 2 }, 4, true)
    const ns = swarm(3, 11, { delayOuter: 2 }, true)
    for (const x of ns) await x.worker.initFromModel()
    // syncs 0 and 1 start at steps 4 and 8; sync 0 lands at 12: each worker aborts at its step 10
    const outs = await runAbortedAt(ns.map(x => x.worker), 10, 4)
    for (const e of outs) expect((e as Error).message).toBe('stop')
    for (const x of ns) expect(x.worker.lastSeq).toBeLessThan(1)
    await Promise.all(ns.map(async x => { await x.worker.runSyncs(4 - (x.worker.lastSeq + 1), undefined, { last: true }) }))
    expectIdentical(ns)
    expect(ns[0].syncs.map(s => s.seq)).toEqual([0, 1, 2, 3])
    for (let i = 0; i < 3; i++) {
      expect(ns[i].syncs.map(s => s.hash)).toEqual(whole[i].hashes)
      expect(same(await localOf(ns[i].worker), whole[i].local)).toBe(true)
    }
  })

  it('d = 2 equals a reference written the slow way: each sync\'s bytes, each θ_global after it, θ_local at the end', async () => {
    const SYNCS = 5
    const ns = swarm(2, 5, { delayOuter: 2 })
    const sent = new Map<number, Uint8Array>()
    const means = new Map<number, Float32Array>()
    const ar = ns[0].ar
    const reduce = ar.reduce.bind(ar)
    ar.reduce = async (round, q, n, into, norm) => {
      sent.set(round, q.slice())
      const out = await reduce(round, q, n, into, norm)
      means.set(round, out.mean.slice())
      return out
    }
    for (const x of ns) await x.worker.initFromModel()
    await Promise.all(ns.map(async x => { await x.worker.runSyncs(SYNCS, undefined, { last: true }) }))
    expectIdentical(ns)

    // The reference: worker w-a's steps on a model of its own; sync s starts at step 4(s + 1),
    // sends base − θ_local (its window), and its mean (the swarm's, recorded above) is applied at
    // step 4(s + 3): θ_global's outer step, then θ_local and every kept point x ← g + (x − L_s).
    const model = initModel(CONFIG, cpu, 7)
    const layout = layoutOf(model.paramSpecs())
    const schedule = { lr: OPTS.innerLr, warmupSteps: 0, totalSteps: Number.MAX_SAFE_INTEGER, minLr: OPTS.innerLr }
    const trainer = new Trainer(model, schedule, {}, { maxGradNorm: 1 })
    const stream = new WindowStream(train, { seqLen: OPTS.seqLen, batchSize: 1, H: 4, dataSeed: 1 })
    const ef = new ErrorFeedback(layout.total, ar.codec)
    const outer = resolveOuter(OPTS.outer)
    const g = await readParams(model, layout)
    const m = new Float32Array(layout.total)
    let base: Float32Array = g.slice()
    const windowEnd = new Map<number, Float32Array>()
    const hashes: string[] = []
    let local: Float32Array = g.slice()
    for (let t = 1; hashes.length < SYNCS; t++) {
      await trainer.trainStep(stream.next(t - 1), innerLr(schedule, t, trainer.step + 1))
      local = await readParams(model, layout)
      const lands = t / 4 - 3
      if (Number.isInteger(lands) && lands >= 0) {
        nesterovStep(g, m, means.get(lands)!, { lr: outerLrAt(outer, lands), momentum: outer.momentum })
        ef.commit()
        const from = windowEnd.get(lands)!
        windowEnd.delete(lands)
        const moved = (x: Float32Array): Float32Array => { const o = new Float32Array(x.length); rebaseLocal(o, g, x, from); return o }
        local = moved(local)
        base = moved(base)
        for (const [s, x] of windowEnd) windowEnd.set(s, moved(x))
        writeParams(model, layout, 0, local)
        hashes.push(await hashBytes(g))
      }
      const starts = t / 4 - 1
      if (Number.isInteger(starts) && starts >= 0 && starts < SYNCS) {
        const delta = pseudoGradient(base, local)
        base = local.slice()
        windowEnd.set(starts, local.slice())
        const { q } = ef.compress(delta)
        expect(Buffer.from(q).equals(Buffer.from(sent.get(starts)!))).toBe(true)
      }
    }
    trainer.dispose()
    expect(hashes).toEqual(ns[0].syncs.map(s => s.hash))
    expect(same(local, await localOf(ns[0].worker))).toBe(true)
    expect(ns[0].worker.step).toBe(4 * (SYNCS + 2))
  })

  it('refuses a delay that is not an integer 1–4, and d > 1 with a resync hook but no observe hook', () => {
    const ar = new AllReducePeer(new MemoryNetwork({ seed: 1 }).endpoint('x'), { run: 'r1', directory: { expected: () => ['x'] } })
    const model = initModel(CONFIG, cpu, 7)
    for (const bad of [0, 5, 1.5, -1, Number.NaN]) {
      expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: bad })).toThrow(/delayOuter must be true, false or an integer number of syncs in \[1, 4\]/)
    }
    expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 2, overlapSteps: 1 })).toThrow(/delayOuter replaces/)
    const snap = async (): Promise<never> => { throw new Error('unused') }
    expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 2 }, { resync: snap })).toThrow(TrainArgumentError)
    expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 2 }, { resync: snap })).toThrow(/resyncs by sitting out the syncs in flight: set hooks.observe/)
    // with observe (a session sets both) d > 1 late-joins and resyncs (delay-join.test.ts); d = 1 keeps them too
    void new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 2 }, { observe: snap }).dispose()
    void new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 2 }, { resync: snap, observe: snap }).dispose()
    void new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: 1 }, { resync: snap, observe: snap }).dispose()
    ar.stop()
  })
})
