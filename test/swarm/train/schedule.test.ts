/**
 * The DiLoCo worker's inner lr over the whole run (warm-up + cosine decay on the run's clock, the
 * late joiner's own warm-up), per-worker batches, and Trainer's per-step lr override.
 */
import { describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, type Window } from '../../../web/src/model/data.ts'
import { ModelArgumentError } from '../../../web/src/model/errors.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { learningRate } from '../../../web/src/model/schedule.ts'
import { Trainer } from '../../../web/src/model/train.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'
import { DiLoCoWorker, type DiLoCoOptions, type StepEvent } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { CLOCKED_TIMING } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 })
/** No timeout may decide anything here: the all-reduce's timers run on a clock that never moves (quiet-clock.ts). */
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }
const TEXT = 'The quick brown fox jumps over the lazy dog, again and again, while the river runs by. '.repeat(40)

function worker (net: MemoryNetwork, ids: string[], id: string, opts: Partial<DiLoCoOptions>, steps: StepEvent[] = []): DiLoCoWorker {
  const ar = new AllReducePeer(net.endpoint(id), { run: 'sched', directory: { expected: () => ids }, ...TIMING, clock: new ManualClock() })
  return new DiLoCoWorker(initModel(CONFIG, cpu, 3), new TextDataset(TEXT), ar, { innerSteps: 3, seqLen: 8, innerLr: 1e-2, dataSeed: ids.indexOf(id) + 1, ...opts }, { onStep: e => { steps.push(e) } })
}

describe('DiLoCo inner lr schedule and batch', () => {
  it('2 workers with warm-up + cosine over the run: every step uses the single-peer schedule\'s lr, replicas stay identical', async () => {
    const net = new MemoryNetwork({ seed: 1 })
    const ids = ['a', 'b']
    const opts = { warmupSteps: 2, totalSteps: 9, minInnerLr: 1e-3, batchSize: 2 }
    const steps: StepEvent[][] = [[], []]
    const ws = ids.map((id, i) => worker(net, ids, id, opts, steps[i]))
    try {
      for (const w of ws) await w.initFromModel()
      await Promise.all(ws.map(async w => { await w.runSyncs(3) }))
      expect(ws[0].lastHash).toBe(ws[1].lastHash)
      const want = Array.from({ length: 9 }, (_, i) => learningRate({ lr: 1e-2, warmupSteps: 2, totalSteps: 9, minLr: 1e-3 }, i + 1))
      for (const s of steps) {
        expect(s.map(e => e.lr)).toEqual(want)
        expect(s.every(e => e.tokens === 2 * 8)).toBe(true) // batchSize sequences of seqLen tokens
      }
      expect(want[1]).toBe(1e-2) // warm-up ends at the peak
      expect(want[8]).toBeCloseTo(1e-3, 12) // and the decay at the floor
      expect(want[5]).toBeLessThan(want[3])
    } finally {
      for (const w of ws) { w.allreduce.stop(); w.dispose() }
    }
  })

  it('a late joiner follows the run\'s decay, warmed up over its own first steps; without totalSteps the lr stays constant', () => {
    const net = new MemoryNetwork({ seed: 2 })
    const w = worker(net, ['a'], 'a', { warmupSteps: 4, totalSteps: 100, minInnerLr: 0 })
    const c = worker(net, ['c'], 'c', { warmupSteps: 4 })
    try {
      const decayed = learningRate({ lr: 1e-2, warmupSteps: 4, totalSteps: 100, minLr: 0 }, 60)
      expect(w.innerLrAt(60, 1)).toBeCloseTo(decayed / 4, 15)
      expect(w.innerLrAt(60, 4)).toBe(decayed)
      expect(w.innerLrAt(100, 100)).toBeCloseTo(0, 15)
      expect(c.innerLrAt(2, 2)).toBe(5e-3)
      expect(c.innerLrAt(1000, 1000)).toBe(1e-2)
    } finally {
      w.allreduce.stop(); w.dispose(); c.allreduce.stop(); c.dispose()
    }
  })

  it('bad schedule options are refused with a clear error', () => {
    const net = new MemoryNetwork({ seed: 3 })
    const bad: Array<[Partial<DiLoCoOptions>, RegExp]> = [
      [{ innerLr: 0 }, /innerLr must be positive/],
      [{ batchSize: 0 }, /batchSize must be a positive integer/],
      [{ warmupSteps: 1.5 }, /warmupSteps must be an integer/],
      [{ warmupSteps: 10, totalSteps: 10 }, /totalSteps must be an integer above warmupSteps/],
      [{ minInnerLr: 1e-3 }, /minInnerLr needs totalSteps/],
      [{ totalSteps: 50, minInnerLr: 1 }, /minInnerLr must be in \[0, innerLr/]
    ]
    for (const [o, msg] of bad) {
      let err: unknown
      try { worker(net, ['x'], 'x', o) } catch (e) { err = e }
      expect(err, JSON.stringify(o)).toBeInstanceOf(TrainArgumentError)
      expect((err as Error).message).toMatch(msg)
      net.kill('x')
    }
  })

  it('Trainer.trainStep(batch, lr) takes exactly that lr instead of the schedule\'s, and refuses a bad one', async () => {
    const it = new TextDataset(TEXT).windows(8, 5)
    const batch = [it.next().value as Window, it.next().value as Window]
    const a = new Trainer(initModel(CONFIG, cpu, 4), { lr: 2e-3, totalSteps: 10 })
    const b = new Trainer(initModel(CONFIG, cpu, 4), { lr: 9e-1, totalSteps: 10 })
    try {
      const ra = await a.trainStep(batch)
      const rb = await b.trainStep(batch, ra.lr)
      expect(rb.lr).toBe(ra.lr)
      for (const [name, t] of a.model.params) expect(await b.model.params.get(name)!.readF32()).toEqual(await t.readF32())
      await expect(b.trainStep(batch, Number.NaN)).rejects.toThrow(ModelArgumentError)
    } finally {
      a.dispose(); b.dispose(); a.model.dispose(); b.model.dispose()
    }
  })
})
