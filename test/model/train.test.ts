/**
 * Backward on configurations beyond the fixtures: directional finite differences of the loss
 * for every parameter tensor (CPU, tiny shapes), WebGPU gradients vs CPU, gradient
 * accumulation, and checkpoint save → load → resume equal to an uninterrupted run.
 */
import { describe, expect, it, beforeAll } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { loadModel, type CausalLM, type ParamStore } from '../../web/src/model/model.ts'
import { lossAndGradients, evaluateLoss, Trainer, accumulateGradients } from '../../web/src/model/train.ts'
import { directoryStore, loadOptimizerState, saveCheckpoint } from '../../web/src/model/checkpoint.ts'
import { ByteTokenizer } from '../../web/src/model/tokenizer.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { relL2 } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { CONFIGS, config, modelOn, randomIds, randomWeights } from './helpers.ts'

const T = 6
/** Central-difference step along a unit-norm random direction (f32 loss ≈ 3: ~1e-6 rounding). */
const FD_EPS = 1e-2
/** Directional derivative vs ⟨grad, direction⟩, relative. */
const FD_RTOL = 2e-2
/** WebGPU vs CPU gradients, relative L2 (same bar as the fixtures). */
const GPU_GRAD_REL_L2 = 1e-3

let gpu: Backend
beforeAll(async () => { gpu = await testGpu() })

async function lossAt (m: CausalLM, ids: number[], tgt: number[]): Promise<number> {
  return await evaluateLoss(m, [{ inputs: ids, targets: tgt }])
}

for (const name of Object.keys(CONFIGS)) {
  describe(`${name} backward`, () => {
    const c = config(name)
    const host = randomWeights(c, 23, 0.2)
    const ids = randomIds(T, c.vocabSize, 9)
    const tgt = randomIds(T, c.vocabSize, 10)

    it('every parameter gradient matches finite differences (CPU)', async () => {
      const m = modelOn(cpu, c, host)
      const { grads } = await lossAndGradients(m, ids, tgt)
      const rng = new Rng(4)
      for (const [pname, p] of m.params) {
        const g = await grads.get(pname)?.readF32()
        if (g === undefined) throw new Error(`no gradient for ${pname}`)
        const base = (p.data as Float32Array).slice()
        const dir = new Float32Array(base.length).map(() => rng.normal())
        const norm = Math.hypot(...dir)
        dir.forEach((v, i) => { dir[i] = v / norm }) // unit L2 norm: a small step, even for big tensors
        let predicted = 0
        for (let i = 0; i < dir.length; i++) predicted += g[i] * dir[i]
        const at = async (s: number): Promise<number> => {
          cpu.write(p, base.map((v, i) => v + s * dir[i]))
          return await lossAt(m, ids, tgt)
        }
        const fd = (await at(FD_EPS) - await at(-FD_EPS)) / (2 * FD_EPS)
        cpu.write(p, base)
        const err = Math.abs(fd - predicted) / Math.max(Math.abs(fd), Math.abs(predicted), 1e-3)
        expect(err, `${name} ${pname}: finite difference ${fd} vs gradient ${predicted}`).toBeLessThan(FD_RTOL)
      }
    })

    it('WebGPU gradients match the CPU twins', async () => {
      const a = await lossAndGradients(modelOn(cpu, c, host), ids, tgt)
      const mg = modelOn(gpu, c, host)
      const b = await lossAndGradients(mg, ids, tgt)
      expect(Math.abs(b.loss - a.loss) / a.loss).toBeLessThan(1e-5)
      for (const [pname, g] of a.grads) {
        const e = relL2(await (b.grads.get(pname) ?? g).readF32(), await g.readF32())
        expect(e, `${name} ${pname}`).toBeLessThan(GPU_GRAD_REL_L2)
      }
      for (const g of b.grads.values()) g.dispose()
      mg.dispose()
    })
  })
}

describe('training loop', () => {
  const c = config('llamaTiedMqa')
  const host = randomWeights(c, 5, 0.2)
  const seqs = [0, 1, 2].map(i => ({ inputs: randomIds(T, c.vocabSize, 50 + i), targets: randomIds(T, c.vocabSize, 60 + i) }))

  it('accumulated gradients are the mean of per-sequence gradients', async () => {
    const m = modelOn(cpu, c, host)
    const acc: ParamStore = new Map()
    for (const s of seqs) accumulateGradients(m, s.inputs, s.targets, acc, 1 / seqs.length)
    const each = await Promise.all(seqs.map(async s => (await lossAndGradients(m, s.inputs, s.targets)).grads))
    for (const [pname, g] of acc) {
      const got = await g.readF32()
      const want = new Float32Array(got.length)
      for (const e of each) {
        const ge = e.get(pname)
        if (ge === undefined) throw new Error(`no gradient for ${pname}`)
        ;(await ge.readF32()).forEach((v, i) => { want[i] += v / seqs.length })
      }
      expect(relL2(got, want), pname).toBeLessThan(1e-5)
    }
  })

  it('loss falls, and save → load → resume equals an uninterrupted run', async () => {
    const dir = mkdtempSync(`${tmpdir()}/ws-ckpt-`)
    try {
      const schedule = { lr: 1e-2, warmupSteps: 1, totalSteps: 4 }
      const straight = new Trainer(modelOn(cpu, c, host), schedule, { weightDecay: 0.1 })
      const first = await straight.trainStep(seqs)
      for (let i = 0; i < 3; i++) await straight.trainStep(seqs)
      const finalStraight = await evaluateLoss(straight.model, seqs)
      expect(finalStraight).toBeLessThan(first.loss)

      const a = new Trainer(modelOn(cpu, c, host), schedule, { weightDecay: 0.1 })
      await a.trainStep(seqs)
      await a.trainStep(seqs)
      const store = directoryStore(dir)
      await saveCheckpoint(store, a.model, a.optimizer, { note: 'test' })
      const loaded = await loadModel(dir, cpu)
      expect(loaded.config).toEqual({ ...c })
      const b = new Trainer(loaded, schedule, { weightDecay: 0.1 })
      await loadOptimizerState(store, b.optimizer, loaded.paramSpecs())
      expect(b.step).toBe(2)
      await b.trainStep(seqs)
      await b.trainStep(seqs)
      const finalResumed = await evaluateLoss(b.model, seqs)
      expect(Math.abs(finalResumed - finalStraight)).toBeLessThan(1e-6)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a byte-level model trains from scratch on text (loss falls below uniform)', async () => {
    const m = modelOn(cpu, { ...config('mistralDeep'), vocabSize: 256 }, randomWeights({ ...config('mistralDeep'), vocabSize: 256 }, 8, 0.02))
    const tok = new ByteTokenizer()
    const text = tok.encode('the cat sat on the mat. '.repeat(4))
    const seq = { inputs: text.slice(0, 24), targets: text.slice(1, 25) }
    const t = new Trainer(m, { lr: 1e-2, warmupSteps: 0, totalSteps: 30 })
    let last = Infinity
    for (let i = 0; i < 30; i++) last = (await t.trainStep([seq])).loss
    expect(last).toBeLessThan(Math.log(256) / 2)
  })
})
