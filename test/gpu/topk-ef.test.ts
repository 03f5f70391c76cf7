import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import * as twin from '../../web/src/gpu/cpu/topk-ef.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { readTopKEf, topkErrorFeedback, type TopKEfParams, type TopKEfResult } from '../../web/src/gpu/ops/topk-ef.ts'
import { checkTopK, decodeTopKInto, encodeTopK, levels, packTopK } from '../../web/src/swarm/train/topk.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Seeded values over six decades, with exact ties (a few magnitudes repeated with either sign). */
function sample (n: number, seed: number, ties = false): Float32Array {
  const rng = new Rng(seed)
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) x[i] = ties ? [0.5, -0.5, 0.25, 1, -1][rng.int(5)] : rng.normal() * 10 ** (rng.int(6) - 4)
  return x
}

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

async function onGpu (delta: Float32Array, carry: Float32Array, p: TopKEfParams): Promise<TopKEfResult> {
  const d = gpu.tensor(delta, [delta.length])
  const c = gpu.tensor(carry, [carry.length])
  const r = topkErrorFeedback(d, c, p)
  const host = await readTopKEf(r)
  for (const t of [d, c, r.carry, r.sent, r.codes, r.chunks]) t.dispose()
  return host
}

function expectSame (g: TopKEfResult, c: TopKEfResult): void {
  expect(bits(g.scales)).toEqual(bits(c.scales))
  expect(g.codes).toEqual(c.codes)
  expect(bits(g.sent)).toEqual(bits(c.sent))
  expect(bits(g.carry)).toEqual(bits(c.carry))
  expect(g.bad).toEqual(c.bad)
}

// (n, chunk, k, bits, decay): chunks dividing n or not, k = 1, k = chunk, the largest chunk, 8 bits.
const SHAPES: Array<[number, number, number, number, number]> = [
  [1000, 64, 1, 2, 0.95], [37, 16, 3, 2, 1], [257, 256, 4, 2, 0.9], [130, 64, 64, 3, 1],
  [5, 8, 2, 2, 0.5], [3000, 1024, 32, 8, 0.95], [2048, 128, 2, 4, 1]
]

describe('topk_ef kernel vs its CPU twin (cpu/topk-ef.ts)', () => {
  for (const [n, chunk, k, b, decay] of SHAPES) {
    it(`n ${n}, chunk ${chunk}, k ${k}, ${b} bits, β ${decay}: every output bit for bit, two rounds`, async () => {
      const p = { chunk, k, bits: b, decay }
      let carryG = sample(n, n + chunk + 1)
      let carryC = carryG
      for (let round = 0; round < 2; round++) {
        const delta = sample(n, 7 * n + round)
        const g = await onGpu(delta, carryG, p)
        const c = twin.topkErrorFeedback(delta, carryC, p)
        expectSame(g, c)
        carryG = g.carry; carryC = c.carry
      }
    })
  }

  it('ties: the lower indices win, as in the host codec', async () => {
    const p = { chunk: 16, k: 5, bits: 2, decay: 1 }
    const delta = sample(100, 3, true)
    const carry = new Float32Array(100)
    const g = await onGpu(delta, carry, p)
    expectSame(g, twin.topkErrorFeedback(delta, carry, p))
    const sent = new Float32Array(100)
    encodeTopK(delta, { chunk: 16, k: 5, bits: 2, zero: false }, sent)
    for (let i = 0; i < 100; i++) expect(g.codes[i] !== 0, `element ${i}`).toBe(sent[i] !== 0)
  })

  it('an all-zero chunk has scale 0 and keeps its first k; a non-finite value marks its chunk bad', async () => {
    const p = { chunk: 8, k: 2, bits: 2, decay: 1 }
    const delta = sample(24, 5)
    delta.fill(0, 0, 8)
    delta[17] = Infinity
    const carry = new Float32Array(24)
    const g = await onGpu(delta, carry, p)
    expect([...g.bad]).toEqual([0, 0, 1])
    expect(g.scales[0]).toBe(0)
    expect([...g.codes.subarray(0, 8)].map(c => c !== 0)).toEqual([true, true, false, false, false, false, false, false])
    const c = twin.topkErrorFeedback(delta, carry, p)
    expect([...c.bad]).toEqual([0, 0, 1])
    // The finite chunks agree exactly; the bad one's outputs are not defined.
    expect(bits(g.sent.subarray(0, 16))).toEqual(bits(c.sent.subarray(0, 16)))
    expect(g.codes.subarray(0, 16)).toEqual(c.codes.subarray(0, 16))
  })

  it('refuses parameters the kernel cannot run', () => {
    const d = cpu.tensor(new Float32Array(8), [8])
    expect(() => topkErrorFeedback(d, d, { chunk: 2048, k: 1, bits: 2, decay: 1 })).toThrow(ShapeError)
    expect(() => topkErrorFeedback(d, d, { chunk: 8, k: 9, bits: 2, decay: 1 })).toThrow(/k must be/)
    expect(() => topkErrorFeedback(d, d, { chunk: 8, k: 1, bits: 1, decay: 1 })).toThrow(/bits/)
    expect(() => topkErrorFeedback(d, d, { chunk: 8, k: 1, bits: 2, decay: 0 })).toThrow(/decay/)
  })
})

describe('the twin against the host codec (swarm/train/topk.ts)', () => {
  it('the same selection and scales as encodeTopK; packed codes pass checkTopK and decode to sent', () => {
    for (const [n, chunk, k, b] of [[1000, 64, 1, 2], [37, 16, 3, 2], [2048, 128, 2, 4], [300, 256, 40, 3]]) {
      const delta = sample(n, n + k)
      const r = twin.topkErrorFeedback(delta, new Float32Array(n), { chunk, k, bits: b, decay: 1 })
      const tp = { chunk, k, bits: b, zero: false }
      const hostSent = new Float32Array(n)
      const hostBytes = encodeTopK(delta, tp, hostSent)
      for (let i = 0; i < n; i++) expect(r.codes[i] !== 0, `n ${n} element ${i}`).toBe(hostSent[i] !== 0)
      const bytes = packTopK(r.codes, r.scales, tp)
      expect(bytes.byteLength).toBe(hostBytes.byteLength)
      expect(checkTopK(bytes, n, tp)).toBeUndefined()
      const back = new Float32Array(n)
      decodeTopKInto(bytes, n, tp, back)
      expect(bits(back)).toEqual(bits(r.sent))
      // carry' = t − sent exactly where β = 1
      for (let i = 0; i < n; i++) expect(r.carry[i]).toBe(Math.fround(delta[i] - r.sent[i]))
    }
  })

  it('the grid table holds topk.ts\'s levels', () => {
    for (const b of [2, 3, 8]) expect(twin.topkEfGrid(b).subarray(0, 2 ** b)).toEqual(levels(b, false))
  })

  it('packTopK refuses a chunk with the wrong count or an off-grid code', () => {
    const tp = { chunk: 8, k: 2, bits: 2, zero: false }
    const codes = new Uint32Array(8); codes[1] = 1
    expect(() => packTopK(codes, new Float32Array([1]), tp)).toThrow(/keeps 1 elements, expected 2/)
    codes[2] = 9
    expect(() => packTopK(codes, new Float32Array([1]), tp)).toThrow(/past the 2-bit grid/)
    expect(() => packTopK(new Uint32Array(8), new Float32Array([1, 2]), tp)).toThrow(/2 scales for 1 chunks/)
  })
})
