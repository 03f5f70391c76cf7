/**
 * Inference semantics on configurations beyond the fixtures: against an independent naive
 * reference (CPU), CPU vs WebGPU, KV-cache decode vs full forward, spans of blocks chained,
 * and MoE experts run apart from the router.
 */
import { describe, expect, it, beforeAll } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { tidy } from '../../web/src/gpu/tensor.ts'
import { BlockSpan, uploadParams } from '../../web/src/model/model.ts'
import { InferenceSession } from '../../web/src/model/generate.ts'
import { partParams } from '../../web/src/model/params.ts'
import { runOneExpert } from '../../web/src/model/moe.ts'
import { SessionError, TokenizerError } from '../../web/src/model/errors.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { referenceLogits } from './reference.ts'
import { CONFIGS, config, modelOn, randomIds, randomWeights } from './helpers.ts'

/** Logits: CPU vs the naive f64 reference, and WebGPU vs CPU (f32 reassociation over tiny dims). */
const REF_ATOL = 1e-4
const GPU_ATOL = 1e-3
const T = 7

let gpu: Backend
beforeAll(async () => { gpu = await testGpu() })

for (const name of Object.keys(CONFIGS)) {
  describe(`${name}`, () => {
    const c = config(name)
    const host = randomWeights(c, 17)
    const ids = randomIds(T, c.vocabSize, 5)

    it('CPU logits match the naive reference', async () => {
      const m = modelOn(cpu, c, host)
      const got = await m.logits(ids).readF32()
      assertClose(got, referenceLogits(c, host, ids).flatMap(r => Array.from(r)), { atol: REF_ATOL, rtol: REF_ATOL, what: `${name} logits vs reference` })
    })

    it('WebGPU logits match the CPU twins', async () => {
      const want = await modelOn(cpu, c, host).logits(ids).readF32()
      const m = modelOn(gpu, c, host)
      assertClose(await m.logits(ids).readF32(), want, { atol: GPU_ATOL, rtol: 0, what: `${name} WebGPU logits` })
      m.dispose()
    })

    for (const dev of ['cpu', 'webgpu'] as const) {
      it(`decoding with the KV cache equals the full forward (${dev})`, async () => {
        const be = dev === 'cpu' ? cpu : gpu
        const m = modelOn(be, c, host)
        const full = await m.logits(ids).readF32()
        const s = new InferenceSession(m, T)
        const rows = [await s.feed(ids.slice(0, 3))]
        for (let t = 3; t < T; t++) rows.push(await s.feed([ids[t]]))
        const V = c.vocabSize
        rows.forEach((row, i) => assertClose(row, full.subarray((i + 2) * V, (i + 3) * V), { atol: GPU_ATOL, rtol: 0, what: `${name} step ${i + 2}` }))
        await expect(s.feed([ids[0]])).rejects.toThrow(SessionError) // capacity reached
        s.dispose()
        m.dispose()
      })
    }

    it('chained spans with their own caches equal the whole model', async () => {
      const m = modelOn(cpu, c, host)
      const full = await m.logits(ids).readF32()
      const cut = 1
      // Each span loads only its own blocks' weights (as a peer serving it would).
      const a = new BlockSpan(c, { start: 0, end: cut }, uploadParams(cpu, new Map(partParams(c, { blocks: { start: 0, end: cut }, embedding: false, head: false }).map(p => [p.name, host.get(p.name) ?? { shape: [], data: new Float32Array() }]))), cpu)
      const b = new BlockSpan(c, { start: cut, end: c.numLayers }, uploadParams(cpu, new Map(partParams(c, { blocks: { start: cut, end: c.numLayers }, embedding: false, head: false }).map(p => [p.name, host.get(p.name) ?? { shape: [], data: new Float32Array() }]))), cpu)
      expect([...a.params.keys()].every(k => k.startsWith('model.layers.0.'))).toBe(true)
      const ca = a.newCache(T)
      const cb = b.newCache(T)
      const V = c.vocabSize
      for (const [from, to] of [[0, 4], [4, 5], [5, T]]) {
        const logits = tidy(() => m.head.forward(b.forward(a.forward(m.embedding.forward(ids.slice(from, to)), ca), cb)))
        assertClose(await logits.readF32(), full.subarray(from * V, to * V), { atol: REF_ATOL, rtol: 0, what: `${name} spans [${from}, ${to})` })
      }
      expect(ca.length).toBe(T)
    })
  })
}

describe('MoE experts apart from the router', () => {
  for (const dev of ['cpu', 'webgpu'] as const) {
    it(`routing, per-expert runs and combine equal the layer (${dev})`, async () => {
      const be = dev === 'cpu' ? cpu : gpu
      const c = config('mixtral5x3')
      const host = randomWeights(c, 3)
      const m = modelOn(be, c, host)
      const moe = m.span.blocks[0].moe
      if (moe === undefined) throw new Error('no MoE layer')
      const x = be.tensor(new Float32Array(T * c.hiddenSize).map((_, i) => Math.sin(i)), [T, c.hiddenSize])
      const want = await moe.forward(x, false).y.readF32()
      const r = moe.route(x)
      const xs = await moe.gather(x, r).readF32()
      const offsets = await r.offsets.read()
      const ys = new Float32Array(xs.length)
      const C = c.hiddenSize
      const I = c.intermediateSize
      const w = moe.experts
      const [w1, w3, w2] = await Promise.all([w.w1.readF32(), w.w3.readF32(), w.w2.readF32()])
      for (let e = 0; e < c.numExperts; e++) {
        const n = offsets[e + 1] - offsets[e]
        if (n === 0) continue
        // As a peer hosting only expert e would: its weights and its rows.
        const one = { w1: be.tensor(w1.subarray(e * I * C, (e + 1) * I * C), [1, I, C]), w3: be.tensor(w3.subarray(e * I * C, (e + 1) * I * C), [1, I, C]), w2: be.tensor(w2.subarray(e * C * I, (e + 1) * C * I), [1, C, I]) }
        const y = runOneExpert(one, be.tensor(xs.subarray(offsets[e] * C, offsets[e + 1] * C), [n, C]))
        ys.set(await y.readF32(), offsets[e] * C)
      }
      const got = await moe.combine(be.tensor(ys, [ys.length / C, C]), r).readF32()
      assertClose(got, want, { atol: 1e-5, rtol: 1e-5, what: 'MoE split' })
      m.dispose()
    })
  }
})

describe('bad input', () => {
  it('names out-of-vocabulary ids', () => {
    const c = config('qwen2Odd')
    const m = modelOn(cpu, c, randomWeights(c, 1))
    expect(() => m.logits([1, 61])).toThrow(TokenizerError)
    expect(() => m.logits([1, 61])).toThrow(/token id 61 is outside the vocabulary \[0, 61\)/)
  })
})
