/**
 * The PyTorch fixtures (test/fixtures/*, made with HF Llama/Mixtral semantics) on both devices:
 * logits within 2e-3 absolute at every prompt position, greedy tokens identical, loss within
 * 1e-4 relative, each gradient within 1e-3 relative L2, loss after one AdamW step within 1e-3.
 */
import { describe, expect, it, beforeAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { loadModel } from '../../web/src/model/model.ts'
import { generate } from '../../web/src/model/generate.ts'
import { lossAndGradients, evaluateLoss } from '../../web/src/model/train.ts'
import { AdamW } from '../../web/src/model/optimizer.ts'
import { decodeSafetensors } from '../../web/src/model/safetensors.ts'
import { toHfTensors } from '../../web/src/model/weights.ts'
import { assertClose, relL2 } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

interface Reference {
  prompt: number[]
  logits: number[][]
  greedy: number[]
  train: { inputs: number[], targets: number[], loss: number, adamw: { lr: number, beta1: number, beta2: number, eps: number, weight_decay: number }, loss_after_one_step: number }
}

const LOGITS_ATOL = 2e-3
const LOSS_RTOL = 1e-4
const GRAD_REL_L2 = 1e-3
const STEP_LOSS_RTOL = 1e-3

let gpu: Backend
beforeAll(async () => { gpu = await testGpu() })

for (const fixture of ['tiny-llama', 'tiny-mixtral']) {
  const dir = `test/fixtures/${fixture}`
  const ref = JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as Reference
  const refGrads = decodeSafetensors(new Uint8Array(readFileSync(`${dir}/grads.safetensors`))).tensors

  for (const dev of ['cpu', 'webgpu'] as const) {
    describe(`${fixture} on ${dev}`, () => {
      const be = (): Backend => dev === 'cpu' ? cpu : gpu

      it('matches the logits at every prompt position', async () => {
        const m = await loadModel(dir, be())
        const l = m.logits(ref.prompt)
        const got = await l.readF32()
        expect(l.shape).toEqual([ref.prompt.length, m.config.vocabSize])
        assertClose(got, ref.logits.flat(), { atol: LOGITS_ATOL, rtol: 0, what: `${fixture} logits` })
        m.dispose()
      })

      it('generates the greedy tokens with the KV cache', async () => {
        const m = await loadModel(dir, be())
        const streamed: number[] = []
        const out = await generate(m, ref.prompt, { maxNewTokens: ref.greedy.length, stopTokens: [], onToken: id => streamed.push(id) })
        expect(out).toEqual(ref.greedy)
        expect(streamed).toEqual(ref.greedy)
        m.dispose()
      })

      it('matches loss, every gradient, and the loss after one AdamW step', async () => {
        const m = await loadModel(dir, be())
        const { loss, grads } = await lossAndGradients(m, ref.train.inputs, ref.train.targets)
        expect(Math.abs(loss - ref.train.loss) / ref.train.loss).toBeLessThan(LOSS_RTOL)
        const specs = m.paramSpecs()
        const values = new Map<string, Float32Array>()
        for (const s of specs) {
          const g = grads.get(s.name)
          if (g === undefined) throw new Error(`no gradient for ${s.name}`)
          values.set(s.name, await g.readF32())
        }
        const hf = toHfTensors(specs, values)
        expect(hf.map(t => t.name).sort()).toEqual([...refGrads.keys()].sort())
        for (const t of hf) {
          const r = refGrads.get(t.name)?.data ?? new Float32Array()
          const e = relL2(t.data, r)
          expect(e, `${fixture} grad ${t.name}: relative L2 ${e}`).toBeLessThan(GRAD_REL_L2)
        }
        const a = ref.train.adamw
        const opt = new AdamW(m.params, { lr: a.lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay })
        opt.update(grads)
        const after = await evaluateLoss(m, [{ inputs: ref.train.inputs, targets: ref.train.targets }])
        expect(Math.abs(after - ref.train.loss_after_one_step) / ref.train.loss_after_one_step).toBeLessThan(STEP_LOSS_RTOL)
        for (const g of grads.values()) g.dispose()
        opt.dispose()
        m.dispose()
      })
    })
  }
}
