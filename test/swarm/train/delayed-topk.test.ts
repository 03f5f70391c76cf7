/**
 * DiLoCo workers with top-k pseudo-gradients and the one-step-delayed outer update, on a real tiny
 * Llama (CPU twins) over the seeded in-memory network: replicas stay bit-identical after every
 * sync, the loss falls, inner steps go on while a sync is in flight, and the steps taken while
 * it was in flight are kept (rebased), not replaced; with localResidual, what error feedback holds
 * back stays in each worker's model.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec, type SparseMean } from '../../../web/src/swarm/train/codec.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'
import { DiLoCoWorker, type DiLoCoOptions, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
/** Timers on a ManualClock that never moves: no window or timeout can decide anything here. */
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const OPTS: Omit<DiLoCoOptions, 'dataSeed'> = { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.5 } }

let train: TextDataset
beforeAll(async () => { train = new TextDataset((await brownCorpus()).slice(0, 300_000)) })

interface Node { ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], losses: number[] }
let nodes: Node[] = []
afterEach(() => { for (const n of nodes) { n.ar.stop(); n.worker.dispose() } nodes = [] })

function swarm (n: number, seed: number, opts: Partial<DiLoCoOptions>, codec = true, mean: SparseMean = 'members'): Node[] {
  const net = new MemoryNetwork({ seed })
  const ids = Array.from({ length: n }, (_, i) => `w-${String.fromCharCode(97 + i)}`)
  const clock = new ManualClock()
  nodes = ids.map((id, i) => {
    const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected: () => ids }, ...TIMING, clock, ...(codec ? { codec: topkCodec({ chunk: 64, k: 4, bits: 2, resultBits: 4, mean }) } : {}) })
    const node: Node = { ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], losses: [] }
    node.worker = new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ar, { ...OPTS, dataSeed: i + 1, ...opts }, {
      onSync: (e) => { node.syncs.push(e) },
      onStep: (e) => { node.losses.push(e.loss) }
    })
    return node
  })
  return nodes
}

function expectIdentical (ns: Node[]): number {
  const count = ns[0].syncs.length
  for (const n of ns) expect(n.syncs.map(s => s.hash)).toEqual(ns[0].syncs.map(s => s.hash))
  for (const n of ns) expect(n.worker.global).toEqual(ns[0].worker.global)
  return count
}

describe('top-k pseudo-gradients with the one-step-delayed outer update', () => {
  it('3 workers, 5 syncs: identical θ_global after every sync, each sync lands at the next one, loss falls', async () => {
    const ns = swarm(3, 3, { delayOuter: true })
    for (const n of ns) await n.worker.initFromModel()
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(5, undefined, { last: true }) }))
    expect(expectIdentical(ns)).toBe(5)
    expect(ns.every(n => n.worker.nextSeq === 5)).toBe(true)
    expect(ns[0].syncs.map(s => s.seq)).toEqual([0, 1, 2, 3, 4])
    // sync s starts at step 4(s + 1) and lands 4 steps later: the last (s = 4) at step 24
    expect(ns[0].worker.step).toBe(24)
    expect(ns[0].syncs.every(s => s.members.length === 3)).toBe(true)
    const first = ns[0].losses.slice(0, 4).reduce((a, b) => a + b) / 4
    const last = ns[0].losses.slice(-4).reduce((a, b) => a + b) / 4
    expect(last).toBeLessThan(first)
    expect(ns[0].worker.global.every(Number.isFinite)).toBe(true)
  })

  it('2 fragments (streaming) with the delay: identical replicas; the steps trained while a sync was in flight are kept', async () => {
    const ns = swarm(2, 5, { delayOuter: true, fragments: 2 })
    for (const n of ns) await n.worker.initFromModel()
    // θ_local right before and after one landing: the rebase adds θ_global's move to the fragment
    const w = ns[0].worker
    const readLocal = async (): Promise<Float32Array> => await (w as unknown as { readLocal: () => Promise<Float32Array> }).readLocal()
    let checked = false
    const land = (w as unknown as { land: () => Promise<void> }).land.bind(w)
    ;(w as unknown as { land: () => Promise<void> }).land = async () => {
      const before = await readLocal()
      const base = (w as unknown as { base: Float32Array }).base.slice()
      await land()
      if (checked || w.lastSeq !== 1) return
      const after = await readLocal()
      const frag = w.fragments[1]
      for (let i = frag.start; i < frag.end; i += 97) {
        // after = g_new + (before − base): base is θ_local when this sync started (its Δ went out then)
        expect(after[i]).toBe(Math.fround(w.global[i] + Math.fround(before[i] - base[i])))
        expect((w as unknown as { base: Float32Array }).base[i]).toBe(w.global[i])
      }
      // the other fragment is untouched
      const other = w.fragments[0]
      expect(after.subarray(other.start, other.end)).toEqual(before.subarray(other.start, other.end))
      checked = true
    }
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(4) }))
    expect(checked).toBe(true)
    expect(expectIdentical(ns)).toBe(4)
    expect(ns[0].syncs.map(s => s.fragment)).toEqual([0, 1, 0, 1])
  })

  it('localResidual: after each sync θ_local = θ_global − residual (what error feedback holds back stays in the model); replicas identical', async () => {
    const ns = swarm(3, 9, { localResidual: true })
    for (const n of ns) await n.worker.initFromModel()
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(3, undefined, { last: true }) }))
    expect(expectIdentical(ns)).toBe(3)
    for (const n of ns) {
      const w = n.worker
      const local = await (w as unknown as { readLocal: () => Promise<Float32Array> }).readLocal()
      const e = (w as unknown as { ef: Array<{ residual: Float32Array }> }).ef[0].residual
      expect(e.some(v => v !== 0)).toBe(true) // top-k held something back
      for (let i = 0; i < local.length; i++) expect(local[i]).toBe(Math.fround(w.global[i] - e[i]))
    }
    expect(() => new DiLoCoWorker(initModel(CONFIG, cpu, 7), train, ns[0].ar, { ...OPTS, dataSeed: 1, localResidual: true, delayOuter: true })).toThrow(/localResidual needs/)
  })

  it('an outer lr decay (outer.decaySyncs, finalLr), and the mean over senders: replicas identical; sync 0 uses lr, later syncs the decayed lr', async () => {
    const run = async (outer: DiLoCoOptions['outer'], mean: SparseMean = 'members'): Promise<string[]> => {
      const ns = swarm(3, 5, { outer, delayOuter: true }, true, mean)
      for (const n of ns) await n.worker.initFromModel()
      await Promise.all(ns.map(async n => { await n.worker.runSyncs(3, undefined, { last: true }) }))
      expect(expectIdentical(ns)).toBe(3)
      const hashes = ns[0].syncs.map(s => s.hash)
      for (const n of ns) { n.ar.stop(); n.worker.dispose() }
      nodes = []
      return hashes
    }
    const constant = await run({ lr: 2, momentum: 0 })
    const decayed = await run({ lr: 2, momentum: 0, decaySyncs: 2, finalLr: 0.5 })
    // explicit finalLr equal to lr is the constant run, bit for bit
    expect(await run({ lr: 2, momentum: 0, decaySyncs: 2, finalLr: 2 })).toEqual(constant)
    expect(decayed[0]).toBe(constant[0])
    expect(decayed[1]).not.toBe(constant[1])
    expect(decayed[2]).not.toBe(constant[2])
    // the mean over senders: replicas identical too, and another θ_global from the first sync on
    const senders = await run({ lr: 2, momentum: 0 }, 'senders')
    expect(senders[0]).not.toBe(constant[0])
  })

  it('refuses delayOuter with overlapSteps or mixAlpha', () => {
    const ar = new AllReducePeer(new MemoryNetwork({ seed: 1 }).endpoint('x'), { run: 'r1', directory: { expected: () => ['x'] } })
    const model = initModel(CONFIG, cpu, 7)
    expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: true, overlapSteps: 1 })).toThrow(TrainArgumentError)
    expect(() => new DiLoCoWorker(model, train, ar, { ...OPTS, dataSeed: 1, delayOuter: true, mixAlpha: 0.5 })).toThrow(/delayOuter replaces/)
    ar.stop()
  })
})
