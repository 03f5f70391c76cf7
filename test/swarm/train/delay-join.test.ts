/**
 * Late joins and resyncs under the delayed outer update over d > 1 syncs (worker.ts `delayOuter`,
 * `contributesAfter`, `landObserved`), on a real tiny Llama (CPU twins) over the seeded in-memory
 * network with a ManualClock that never moves (a round that waits for a peer that never comes
 * stalls the test instead of timing out). A worker that adopts the state of sync s sits out
 * s + 1 … s + d (the members had started them), takes each as the swarm's state after it (or a
 * newer one, landing several at once), and contributes a whole window from s + max(F, d + 1):
 * θ_global bit-identical to the others' after every later sync, its first Δ of the founders' order
 * (not the zero a reset θ_local would send), and θ_local as far from θ_global as a member's (each
 * fragment rebased on the right window end). d = 2, and d = 3 with 2 fragments; with and without
 * the trainer thread.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer, type SnapshotState } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec } from '../../../web/src/swarm/train/codec.ts'
import type { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { spawnTrainerThread } from '../../../web/src/swarm/train/trainer-thread-node.ts'
import { DiLoCoWorker, type DiLoCoOptions, type SyncEvent, type WorkerHooks } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const OPTS: Omit<DiLoCoOptions, 'dataSeed'> = { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.5 }, delayOuter: 2 }
const CODEC = { chunk: 64, k: 4, bits: 2, resultBits: 4 }

let train: TextDataset
beforeAll(async () => { train = new TextDataset((await brownCorpus()).slice(0, 300_000)) })

/** `norms`: per round this worker sent, the L2 norm of its Δ (before error feedback: a fresh residual sends less of it). */
interface Node { id: string, ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], landedAt: number[], norms: Map<number, number> }
let nodes: Node[] = []
afterEach(async () => {
  for (const n of nodes) n.ar.stop()
  await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
  nodes = []
})

/** The swarm's record: each sync's state as its first member applied it, and waiters for it. */
class Record {
  readonly states = new Map<number, SnapshotState>()
  private readonly waiters: Array<() => void> = []
  add (s: SnapshotState): void {
    if (!this.states.has(s.round)) this.states.set(s.round, s)
    for (const w of this.waiters.splice(0)) w()
  }

  /** The state of sync `seq`, once some member has applied it. */
  async at (seq: number): Promise<SnapshotState> {
    while (!this.states.has(seq)) await new Promise<void>(resolve => this.waiters.push(resolve))
    return this.states.get(seq)!
  }
}

/**
 * A worker on the network: `expected(seq)` is every peer's directory (who the coordinator waits
 * for), `completed` this peer's own (a round it takes as done without it: it is left out).
 */
function node (net: MemoryNetwork, clock: ManualClock, id: string, seed: number, record: Record, expected: (seq: number) => string[], hooks: WorkerHooks = {}, o: { completed?: (seq: number) => boolean, thread?: boolean, opts?: Partial<DiLoCoOptions> } = {}): Node {
  const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected, ...(o.completed !== undefined ? { completed: o.completed } : {}) }, ...TIMING, clock, codec: topkCodec(CODEC) })
  const n: Node = { id, ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], landedAt: [], norms: new Map() }
  let deltaNorm = -1
  const reduce = ar.reduce.bind(ar)
  ar.reduce = async (round, q, len, into, norm) => {
    n.norms.set(round, deltaNorm) // a launch compresses its Δ, then reduces it
    return await reduce(round, q, len, into, norm)
  }
  n.worker = new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ar, { ...OPTS, dataSeed: seed, ...o.opts, ...(o.thread === true ? { trainerThread: spawnTrainerThread } : {}) }, {
    ...hooks,
    onSync: (e) => {
      n.syncs.push(e)
      n.landedAt.push(n.worker.step)
      if (e.satOut !== true && e.resynced !== true) record.add(n.worker.snapshot()!)
    }
  })
  for (const ef of (n.worker as unknown as { ef: ErrorFeedback[] }).ef) {
    const compress = ef.compress.bind(ef)
    ef.compress = (delta) => {
      let ss = 0
      for (const v of delta) ss += v * v
      deltaNorm = Math.sqrt(ss)
      return compress(delta)
    }
  }
  nodes.push(n)
  return n
}

const bytesEqual = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

/** Every member's hash of each sync `late` applied as a member is late's; θ_global and momentum equal at the end. */
function expectSameReplicas (ns: Node[], late: Node): void {
  const own = late.syncs.filter(e => e.satOut !== true && e.resynced !== true)
  expect(own.length).toBeGreaterThan(0)
  for (const e of own) {
    for (const n of ns) expect(n.syncs.find(x => x.seq === e.seq)?.hash).toBe(e.hash)
  }
  for (const n of ns) {
    expect(n.worker.lastSeq).toBe(late.worker.lastSeq)
    expect(bytesEqual(n.worker.global, late.worker.global)).toBe(true)
    expect(bytesEqual(n.worker.momentum, late.worker.momentum)).toBe(true)
  }
}

/**
 * Per sync a worker lands on its own thread (no trainer thread), per fragment ‖θ_local − θ_global‖
 * right after it: the steps since that fragment's last landed window ended. A landing that does not
 * rebase θ_local (or rebases it on the wrong window end) leaves an outer step or extra windows in it.
 */
function watchLocal (n: Node): Map<number, number[]> {
  const dist = new Map<number, number[]>()
  const w = n.worker as unknown as { land: () => Promise<void> }
  const land = w.land.bind(n.worker)
  w.land = async () => {
    await land()
    const local = await localOf(n.worker)
    dist.set(n.worker.lastSeq, n.worker.fragments.map(f => {
      let ss = 0
      for (let i = f.start; i < f.end; i++) ss += (local[i] - n.worker.global[i]) ** 2
      return Math.sqrt(ss)
    }))
  }
  return dist
}

async function localOf (w: DiLoCoWorker): Promise<Float32Array> {
  return await (w as unknown as { readLocal: () => Promise<Float32Array> }).readLocal()
}

/** `late`'s claimed Δ norm of sync `seq` is of the founders' order (a whole window's progress). */
function expectWholeWindow (founders: Node[], late: Node, seq: number): void {
  const mine = late.norms.get(seq)!
  for (const f of founders) {
    const ratio = mine / f.norms.get(seq)!
    if (process.env.AR_LOG !== undefined) console.log(`Δ norm ratio of sync ${seq}, ${late.id} / ${f.id}: ${ratio.toFixed(3)}`)
    expect(ratio).toBeGreaterThan(0.5)
    expect(ratio).toBeLessThan(2)
  }
}

const FOUNDERS = ['w-a', 'w-b', 'w-c']
const ALL = [...FOUNDERS, 'w-d']

/** Step at which sync `seq` starts (worker.ts syncTime). */
const syncTime = (seq: number, H: number, F: number): number => (seq % F) * Math.floor(H / F) + (Math.floor(seq / F) + 1) * H
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

interface JoinCase {
  label: string
  opts?: Partial<DiLoCoOptions>
  thread?: boolean
  /** observe(ask) answers the state of `to`: the swarm recorded it by the time the joiner asked. */
  ahead?: { ask: number, to: number }
}

const JOINS: JoinCase[] = [
  { label: 'd = 2, observe answers each sync\'s state' },
  { label: 'd = 2, observe answers sync 3 for sync 2: both land at once', ahead: { ask: 2, to: 3 } },
  { label: 'd = 2 on trainer threads', thread: true },
  { label: 'd = 2 on trainer threads, observe answers sync 3 for sync 2', thread: true, ahead: { ask: 2, to: 3 } },
  { label: 'd = 3 with 2 fragments, observe answers each sync\'s state', opts: { delayOuter: 3, fragments: 2, innerSteps: 6 } },
  { label: 'd = 3 with 2 fragments, observe answers sync 4 for sync 2: 2, 3 and 4 land at once, both fragments rebased', opts: { delayOuter: 3, fragments: 2, innerSteps: 6 }, ahead: { ask: 2, to: 4 } }
]

/**
 * Founders run syncs 0 and 1, a joiner starts from the state of sync 1 and all run to `first + 2`;
 * checks what the joiner did. Its sync hashes and every worker's θ_local at the end.
 */
async function join (c: JoinCase, thread: boolean): Promise<{ hashes: string[], local: Float32Array[] }> {
  const d = (c.opts?.delayOuter ?? OPTS.delayOuter) as number
  const F = c.opts?.fragments ?? 1
  const H = c.opts?.innerSteps ?? OPTS.innerSteps
  const first = 1 + Math.max(F, d + 1) // the first sync nobody had started when sync 1 landed
  const last = first + 2
  const net = new MemoryNetwork({ seed: 21 })
  const clock = new ManualClock()
  const record = new Record()
  const expected = (seq: number): string[] => seq >= first ? ALL : FOUNDERS
  const founders = FOUNDERS.map((id, i) => node(net, clock, id, i + 1, record, expected, {}, { thread, opts: c.opts }))
  const founderLocal = thread ? undefined : watchLocal(founders[0])
  for (const f of founders) await f.worker.initFromModel()
  await Promise.all(founders.map(async f => { await f.worker.runSyncs(2) }))
  // sync s lands at sync s + d's start, which starts there too: 2 … 1 + d are in flight on every founder
  expect(founders[0].landedAt).toEqual([syncTime(d, H, F), syncTime(1 + d, H, F)])
  const snap = founders[0].worker.snapshot()!
  expect(snap.round).toBe(1)
  const observed: number[] = []
  const late = node(net, clock, 'w-d', 4, record, expected, {
    observe: async (seq) => { observed.push(seq); return await record.at(seq === c.ahead?.ask ? c.ahead.to : seq) }
  }, { thread, opts: c.opts })
  const lateLocal = thread ? undefined : watchLocal(late)
  await late.worker.initFromSnapshot(snap)
  expect(late.worker.contributesFrom).toBe(first)
  expect(late.worker.step).toBe(syncTime(1, H, F))
  await Promise.all([...founders, late].map(async n => { await n.worker.runSyncs(last - n.worker.lastSeq, undefined, { last: true }) }))

  expect(observed).toEqual(range(2, first - 1))
  const satOut = late.syncs.filter(e => e.satOut === true).map(e => e.seq)
  expect(satOut).toEqual(c.ahead === undefined ? range(2, first - 1) : [c.ahead.to, ...range(c.ahead.to + 1, first - 1)])
  expect(late.syncs.filter(e => e.resynced === true)).toEqual([])
  expect(late.syncs.filter(e => e.satOut !== true).map(e => e.seq)).toEqual(range(first, last))
  for (const e of late.syncs.filter(x => x.satOut !== true)) expect(e.members).toEqual(ALL)
  expect(Math.min(...late.norms.keys())).toBe(first) // nothing sent for the syncs it sat out
  expect(founders[0].syncs.find(e => e.seq === first - 1)!.members).toEqual(FOUNDERS)
  expectSameReplicas(founders, late)
  for (let q = first; q < first + F; q++) expectWholeWindow(founders, late, q)
  // After the last sync it sat out, per fragment θ_local is as far from θ_global as a member's
  // after that sync: the steps since the window end it was rebased on. A newer state lands
  // early (at the fence of the sync asked for), after fewer of those steps than the founder's
  // own landing: d = 2, 4 steps against 8; d = 3, F = 2, 3 against 9 and 6 against 12. Without
  // the rebase of every fragment on its last sync's window end, ≈ 1–1.7 of the founder's.
  const [lo, hi] = c.ahead === undefined ? [0.5, 2] : [0.25, 0.8]
  if (founderLocal !== undefined && lateLocal !== undefined) {
    const mine = lateLocal.get(first - 1)!
    const theirs = founderLocal.get(first - 1)!
    if (process.env.AR_LOG !== undefined) console.log(`‖θ_local − θ_global‖ per fragment after sync ${first - 1}: w-d ${mine.map(x => x.toExponential(2)).join(', ')}; w-a ${theirs.map(x => x.toExponential(2)).join(', ')}`)
    for (let f = 0; f < F; f++) {
      expect(mine[f] / theirs[f]).toBeGreaterThan(lo)
      expect(mine[f] / theirs[f]).toBeLessThan(hi)
    }
  }
  expect(late.landedAt.at(-1)).toBe(founders[0].landedAt.at(-1))
  const out = { hashes: late.syncs.map(e => e.hash), local: await Promise.all([...founders, late].map(async n => await localOf(n.worker))) }
  for (const n of nodes) n.ar.stop()
  await Promise.all(nodes.map(async n => { await n.worker.dispose() }))
  nodes = []
  return out
}

describe('delayOuter d > 1: late joins and resyncs', () => {
  for (const c of JOINS) {
    it(`a late joiner from the state of sync 1 sits out the syncs in flight, contributes from s + max(F, d + 1) and stays bit-identical (${c.label})`, async () => {
      const there = await join(c, c.thread === true)
      if (c.thread !== true) return
      // on trainer threads: the same bytes as stepping on the worker's thread
      const here = await join(c, false)
      expect(there.hashes).toEqual(here.hashes)
      for (let i = 0; i < here.local.length; i++) expect(bytesEqual(there.local[i], here.local[i])).toBe(true)
    })
  }

  it('without an observe hook a joiner contributes from s + 1, to the syncs the members had started: their rounds wait for it (the directory expects it); bit-identical', async () => {
    const net = new MemoryNetwork({ seed: 22 })
    const clock = new ManualClock()
    const record = new Record()
    const expected = (seq: number): string[] => seq >= 2 ? ALL : FOUNDERS
    const founders = FOUNDERS.map((id, i) => node(net, clock, id, i + 1, record, expected))
    for (const f of founders) await f.worker.initFromModel()
    await Promise.all(founders.map(async f => { await f.worker.runSyncs(2) }))
    const late = node(net, clock, 'w-d', 4, record, expected)
    await late.worker.initFromSnapshot(founders[0].worker.snapshot()!)
    expect(late.worker.contributesFrom).toBe(2)
    await Promise.all([...founders, late].map(async n => { await n.worker.runSyncs(5 - n.worker.lastSeq, undefined, { last: true }) }))
    expect(late.syncs.map(e => e.seq)).toEqual([2, 3, 4, 5])
    for (const e of late.syncs) expect(e.members).toEqual(ALL)
    expectSameReplicas(founders, late)
    expectWholeWindow(founders, late, 2)
  })

  for (const thread of [false, true]) {
    it(`a worker left out of sync 2 resyncs from the state of sync 2, sits out 3 and 4, contributes from 5 and stays bit-identical${thread ? ' (trainer threads)' : ''}`, async () => {
      const net = new MemoryNetwork({ seed: 23 })
      const clock = new ManualClock()
      const record = new Record()
      const ids = ['w-a', 'w-b', 'w-c']
      // w-c takes round 2 as done without it (left out: BEHIND at once), is not expected in 2, nor
      // in 4 (it re-enters from 5 after its resync); it is a member of 3, which it started before
      const expected = (seq: number): string[] => seq === 2 || seq === 4 ? ['w-a', 'w-b'] : ids
      const ns = ids.slice(0, 2).map((id, i) => node(net, clock, id, i + 1, record, expected, {}, { thread }))
      let resyncs = 0
      const left = node(net, clock, 'w-c', 3, record, expected, {
        resync: async () => { resyncs++; return await record.at(2) },
        observe: async (seq) => await record.at(seq)
      }, { completed: seq => seq === 2, thread })
      for (const n of [...ns, left]) await n.worker.initFromModel()
      await Promise.all([...ns, left].map(async n => { await n.worker.runSyncs(7, undefined, { last: true }) }))

      expect(resyncs).toBe(1)
      // sync 2 would have landed at step 20: the resync takes the state of 2, back at its step 12
      expect(left.syncs.map(e => [e.seq, e.resynced === true ? 'resynced' : e.satOut === true ? 'satOut' : 'member'])).toEqual([
        [0, 'member'], [1, 'member'], [2, 'resynced'], [3, 'satOut'], [4, 'satOut'], [5, 'member'], [6, 'member']
      ])
      expect(left.worker.contributesFrom).toBe(5)
      expect(ns[0].syncs.find(e => e.seq === 2)!.members).toEqual(['w-a', 'w-b'])
      // its Δ for 3 (sent before the resync) counted; nothing sent for 4
      expect(ns[0].syncs.find(e => e.seq === 3)!.members).toEqual(ids)
      expect([...left.norms.keys()].sort()).toEqual([0, 1, 2, 3, 5, 6])
      for (const e of left.syncs.filter(x => x.seq >= 5)) expect(e.members).toEqual(ids)
      expectSameReplicas(ns, left)
      expectWholeWindow(ns, left, 5)
    })
  }
})
