import { beforeAll, describe, expect, it } from 'vitest'
import { attention, attentionBackward, decodePlan, decodeSplit, dkdvPlan, kvWrite, MAX_HEAD_DIM, prefillPlan, TOLERANCE, type AttentionOptions } from '../../web/src/gpu/ops/attention.ts'
import * as twin from '../../web/src/gpu/cpu/attention.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

interface Case {
  T: number
  S: number
  Hq: number
  Hkv: number
  D: number
  opts?: AttentionOptions
}

function label (c: Case): string {
  return `T=${c.T} S=${c.S} Hq/Hkv=${c.Hq}/${c.Hkv} D=${c.D}${c.opts !== undefined ? ' ' + JSON.stringify(c.opts) : ''}`
}

function inputs (c: Case, seed: number): { q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array } {
  const rng = new Rng(seed)
  return {
    q: rng.uniform(c.T * c.Hq * c.D),
    k: rng.uniform(c.S * c.Hkv * c.D),
    v: rng.uniform(c.S * c.Hkv * c.D),
    dout: rng.uniform(c.T * c.Hq * c.D)
  }
}

function tensors (be: Backend, c: Case, x: ReturnType<typeof inputs>): { q: Tensor, k: Tensor, v: Tensor, dout: Tensor } {
  return {
    q: be.tensor(x.q, [c.T, c.Hq, c.D]),
    k: be.tensor(x.k, [c.S, c.Hkv, c.D]),
    v: be.tensor(x.v, [c.S, c.Hkv, c.D]),
    dout: be.tensor(x.dout, [c.T, c.Hq, c.D])
  }
}

/** Forward on both GPU kernels vs the CPU twin. */
async function checkForward (c: Case, seed: number): Promise<void> {
  const x = inputs(c, seed)
  const cq = tensors(cpu, c, x)
  const ref = attention(cq.q, cq.k, cq.v, c.opts)
  const gq = tensors(gpu, c, x)
  const variants: AttentionOptions[] = [
    { kernel: 'prefill' },
    { kernel: 'decode', decodeSplits: 1 },
    { kernel: 'decode', decodeSplits: 3 },
    { kernel: 'rows', decodeSplits: 1 },
    { kernel: 'rows', decodeSplits: 3 }
  ]
  for (const variant of variants) {
    const got = attention(gq.q, gq.k, gq.v, { ...c.opts, ...variant })
    const what = `${JSON.stringify(variant)} ${label(c)}`
    assertClose(await got.out.readF32(), ref.out.data as Float32Array, { ...TOLERANCE.attention, what: `out ${what}` })
    assertClose(await got.lse.readF32(), ref.lse.data as Float32Array, { ...TOLERANCE.attention, what: `lse ${what}` })
  }
}

/** Backward on the GPU, tiled and row kernels (from the GPU forward's out and lse), vs the CPU twin. */
async function checkBackward (c: Case, seed: number): Promise<void> {
  const x = inputs(c, seed)
  const cq = tensors(cpu, c, x)
  const cf = attention(cq.q, cq.k, cq.v, c.opts)
  const ref = attentionBackward(cq.q, cq.k, cq.v, cf.out, cf.lse, cq.dout, c.opts)
  const gq = tensors(gpu, c, x)
  const gf = attention(gq.q, gq.k, gq.v, c.opts)
  for (const kernel of ['prefill', 'rows'] as const) {
    const got = attentionBackward(gq.q, gq.k, gq.v, gf.out, gf.lse, gq.dout, { ...c.opts, kernel })
    for (const name of ['dq', 'dk', 'dv'] as const) {
      assertClose(await got[name].readF32(), ref[name].data as Float32Array, { ...TOLERANCE.attentionBackward, what: `${kernel} ${name} ${label(c)}` })
    }
  }
}

const HEADS: Array<[number, number]> = [[1, 1], [4, 2], [4, 1], [6, 3]]
const DIMS = [2, 6, 8, 64, 80]
const LENS = [1, 3, 7, 33, 65]

describe('attention forward (shaders/attention.wgsl, attention_decode.wgsl, attention_rows.wgsl, attention_combine.wgsl)', () => {
  // Self-attention prefill: T = S = kvLen, qOffset 0, every head layout and odd D.
  for (const T of LENS) {
    for (const D of DIMS) {
      for (const [Hq, Hkv] of HEADS) {
        it(`every forward kernel matches the twin at ${label({ T, S: T, Hq, Hkv, D })}`, async () => {
          await checkForward({ T, S: T, Hq, Hkv, D }, T * 7919 + D * 31 + Hq * 5 + Hkv)
        })
      }
    }
  }

  // Decode and chunked prefill against a KV cache of capacity S holding kvLen rows (qOffset > 0).
  const cacheCases: Case[] = []
  for (const S of LENS) {
    for (const T of [1, 3, 7]) {
      for (const kvLen of [...new Set([T, Math.ceil((S + T) / 2), S])]) {
        if (kvLen < T || kvLen > S) continue
        cacheCases.push({ T, S, Hq: 4, Hkv: 2, D: 6, opts: { kvLen, qOffset: kvLen - T } })
      }
    }
  }
  cacheCases.push(
    { T: 1, S: 65, Hq: 6, Hkv: 3, D: 80, opts: { kvLen: 40 } },
    { T: 3, S: 65, Hq: 4, Hkv: 1, D: 64, opts: { kvLen: 65, qOffset: 62 } },
    { T: 7, S: 65, Hq: 4, Hkv: 2, D: 8, opts: { kvLen: 33, qOffset: 26 } }, // chunk in the middle of a cache
    { T: 33, S: 65, Hq: 6, Hkv: 3, D: 6, opts: { kvLen: 65, qOffset: 32 } },
    { T: 5, S: 7, Hq: 4, Hkv: 2, D: 8, opts: { kvLen: 7, qOffset: 1 } }, // qOffset + T < kvLen: later rows are not seen
    { T: 3, S: 33, Hq: 4, Hkv: 2, D: 64, opts: { causal: false, kvLen: 20 } },
    { T: 7, S: 3, Hq: 4, Hkv: 2, D: 6, opts: { causal: false } }, // more queries than keys (cross-attention)
    { T: 7, S: 7, Hq: 1, Hkv: 1, D: 6, opts: { scale: 0.7 } },
    { T: 65, S: 65, Hq: 4, Hkv: 1, D: 2, opts: { scale: 3 } } // peaked softmax
  )
  for (const c of cacheCases) {
    it(`every forward kernel matches the twin with a KV cache: ${label(c)}`, async () => {
      await checkForward(c, c.T * 131 + c.S * 17 + c.D)
    })
  }

  for (const c of [
    { T: 1, S: 1100, Hq: 4, Hkv: 2, D: 8, opts: { kvLen: 1030 } },
    { T: 3, S: 700, Hq: 6, Hkv: 3, D: 6, opts: { kvLen: 700, qOffset: 697 } },
    { T: 2, S: 600, Hq: 2, Hkv: 1, D: 64, opts: { kvLen: 600, causal: false } }
  ]) {
    it(`splits a long cache over workgroups by default (flash-decoding): ${label(c)}`, async () => {
      expect(decodeSplit(c.opts.kvLen, c.Hkv).splits).toBeGreaterThan(1) // every row's keys end at kvLen here
      await checkForward(c, c.S)
      const x = inputs(c, c.S)
      const g = tensors(gpu, c, x)
      const ref = attention(cpu.tensor(x.q, [c.T, c.Hq, c.D]), cpu.tensor(x.k, [c.S, c.Hkv, c.D]), cpu.tensor(x.v, [c.S, c.Hkv, c.D]), c.opts)
      const got = attention(g.q, g.k, g.v, c.opts) // kernel 'auto' with the default split
      assertClose(await got.out.readF32(), ref.out.data as Float32Array, { ...TOLERANCE.attention, what: 'auto split out' })
      assertClose(await got.lse.readF32(), ref.lse.data as Float32Array, { ...TOLERANCE.attention, what: 'auto split lse' })
    })
  }

  it('decodeSplit: keys per split and split counts', () => {
    expect(decodeSplit(100, 8)).toEqual({ splits: 1, chunk: 128 }) // too short to split
    expect(decodeSplit(4096, 2)).toEqual({ splits: 16, chunk: 256 }) // ≥ 256 keys per split
    expect(decodeSplit(4096, 64)).toEqual({ splits: 2, chunk: 2048 }) // enough workgroups already
    expect(decodeSplit(65, 1, 3)).toEqual({ splits: 3, chunk: 22 })
    expect(decodeSplit(2, 1, 5)).toEqual({ splits: 2, chunk: 1 })
  })

  for (const D of [1, 128, 256]) {
    it(`handles head dim ${D}`, async () => {
      await checkForward({ T: 9, S: 12, Hq: 2, Hkv: 1, D, opts: { kvLen: 11 } }, D)
    })
  }

  it('returns empty outputs for T = 0', async () => {
    const q = gpu.tensor(new Float32Array(0), [0, 4, 8])
    const k = gpu.tensor(new Float32Array(3 * 2 * 8), [3, 2, 8])
    const { out, lse } = attention(q, k, k)
    expect(out.shape).toEqual([0, 4, 8])
    expect(lse.shape).toEqual([4, 0])
  })

  it('outputs convex combinations of v (Σ softmax = 1) with the default kernel', async () => {
    // With v = all ones, every output is exactly a convex combination of ones.
    const c: Case = { T: 2, S: 50, Hq: 4, Hkv: 2, D: 8 }
    const x = inputs(c, 3)
    const g = tensors(gpu, c, x)
    const ones = gpu.tensor(new Float32Array(c.S * c.Hkv * c.D).fill(1), [c.S, c.Hkv, c.D])
    const out = await attention(g.q, g.k, ones).out.readF32()
    assertClose(out, new Float32Array(out.length).fill(1), { atol: 1e-6, rtol: 0, what: 'Σ softmax = 1' })
  })

  it('tile plans fit 16 KiB of workgroup memory for every head dim up to 256', () => {
    for (let D = 1; D <= MAX_HEAD_DIM; D++) {
      for (const k of ['attn_prefill', 'attn_bwd_dq'] as const) {
        const p = prefillPlan(D, k)
        expect(p.BK, `${k} D=${D}`).toBeGreaterThanOrEqual(1)
      }
      for (const rows of [1, 3, 8, 64]) expect(decodePlan(D, rows).ROWS).toBeLessThanOrEqual(8)
      expect(dkdvPlan(D).BQB, `dkdv D=${D}`).toBeGreaterThanOrEqual(1)
    }
  })
})

describe('attention backward (shaders/attention_bwd_dq.wgsl, attention_bwd_dkdv.wgsl, attention_bwd_rows_*.wgsl)', () => {
  const cases: Case[] = []
  for (const T of [1, 3, 7, 33]) {
    for (const D of DIMS) {
      const [Hq, Hkv] = HEADS[(T + D) % HEADS.length]
      cases.push({ T, S: T, Hq, Hkv, D })
    }
  }
  for (const [Hq, Hkv] of HEADS) cases.push({ T: 65, S: 65, Hq, Hkv, D: 6 })
  cases.push(
    { T: 7, S: 65, Hq: 4, Hkv: 2, D: 8, opts: { kvLen: 33, qOffset: 26 } }, // cache rows past kvLen get zero gradient
    { T: 1, S: 33, Hq: 6, Hkv: 3, D: 64, opts: { kvLen: 20 } },
    { T: 3, S: 7, Hq: 4, Hkv: 1, D: 80, opts: { kvLen: 7, qOffset: 2 } },
    { T: 5, S: 9, Hq: 4, Hkv: 2, D: 6, opts: { causal: false, kvLen: 8 } },
    { T: 9, S: 12, Hq: 2, Hkv: 1, D: 256, opts: { kvLen: 11 } },
    { T: 9, S: 9, Hq: 2, Hkv: 2, D: 128 },
    { T: 33, S: 33, Hq: 4, Hkv: 4, D: 2, opts: { scale: 3 } }
  )
  for (const c of cases) {
    it(`matches the twin at ${label(c)}`, async () => {
      await checkBackward(c, c.T * 977 + c.D * 13 + c.Hq)
    })
  }

  it('is deterministic: two runs give bitwise equal gradients (tiled and row kernels)', async () => {
    const c: Case = { T: 33, S: 33, Hq: 6, Hkv: 3, D: 64 }
    const g = tensors(gpu, c, inputs(c, 99))
    const f = attention(g.q, g.k, g.v)
    for (const kernel of ['prefill', 'rows'] as const) {
      const a = attentionBackward(g.q, g.k, g.v, f.out, f.lse, g.dout, { kernel })
      const b = attentionBackward(g.q, g.k, g.v, f.out, f.lse, g.dout, { kernel })
      for (const name of ['dq', 'dk', 'dv'] as const) expect(await a[name].readF32()).toEqual(await b[name].readF32())
    }
  })

  it('gives zero key gradients when T = 0', async () => {
    const q = gpu.tensor(new Float32Array(0), [0, 2, 4])
    const k = gpu.tensor(new Float32Array(5 * 2 * 4).fill(1), [5, 2, 4])
    const lse = gpu.tensor(new Float32Array(0), [2, 0])
    const g = attentionBackward(q, k, k, q, lse, q)
    expect(Array.from(await g.dk.readF32())).toEqual(new Array(40).fill(0))
  })
})

describe('attention backward twin vs finite differences of the forward twin', () => {
  const fdCases: Array<[string, twin.AttnDims]> = [
    ['causal GQA with a cache offset', { T: 3, S: 6, Hq: 4, Hkv: 2, D: 3, kvLen: 5, qOffset: 2, scale: 0.9, causal: true }],
    ['non-causal, Hkv = 1', { T: 2, S: 4, Hq: 3, Hkv: 1, D: 2, kvLen: 4, qOffset: 0, scale: 1.3, causal: false }]
  ]
  for (const [name, dims] of fdCases) {
    it(name, () => {
      const rng = new Rng(5)
      const { T, S, Hq, Hkv, D } = dims
      const q = Float64Array.from(rng.uniform(T * Hq * D))
      const k = Float64Array.from(rng.uniform(S * Hkv * D))
      const v = Float64Array.from(rng.uniform(S * Hkv * D))
      const w = Float64Array.from(rng.uniform(T * Hq * D)) // dL/dout for L = Σ out ⊙ w
      const loss = (): number => {
        const { out } = twin.attention(q, k, v, dims)
        let s = 0
        for (let i = 0; i < out.length; i++) s += out[i] * w[i]
        return s
      }
      const grads = twin.attentionBackward(q, k, v, w, dims)
      const EPS = 1e-6 // central differences in f64: truncation ~1e-12, rounding ~1e-10
      for (const [xname, x, g] of [['q', q, grads.dq], ['k', k, grads.dk], ['v', v, grads.dv]] as const) {
        const fd = new Float64Array(x.length)
        for (let i = 0; i < x.length; i++) {
          const x0 = x[i]
          x[i] = x0 + EPS
          const up = loss()
          x[i] = x0 - EPS
          const down = loss()
          x[i] = x0
          fd[i] = (up - down) / (2 * EPS)
        }
        assertClose(g, fd, { atol: 1e-8, rtol: 1e-6, what: `d${xname} vs finite differences` })
      }
      // Rows past kvLen are never read: their gradient is exactly zero.
      for (let j = dims.kvLen; j < S; j++) for (let e = 0; e < Hkv * D; e++) expect(grads.dk[j * Hkv * D + e]).toBe(0)
    })
  }
})

describe('kvWrite', () => {
  it('writes rows [pos, pos + T) in place on GPU and CPU, leaving other rows', async () => {
    const [S, Hkv, D, T, pos] = [9, 2, 6, 3, 4]
    const rng = new Rng(8)
    const base = rng.uniform(S * Hkv * D)
    const x = rng.uniform(T * Hkv * D)
    const expected = base.slice()
    expected.set(x, pos * Hkv * D)
    for (const be of [cpu, gpu] as Backend[]) {
      const cache = be.tensor(base, [S, Hkv, D])
      kvWrite(cache, be.tensor(x, [T, Hkv, D]), pos)
      assertClose(await cache.readF32(), expected, { ...TOLERANCE.kvWrite, what: `kvWrite on ${be.kind}` })
    }
  })

  it('feeds attention: decode against a cache filled row by row equals prefill', async () => {
    const c: Case = { T: 5, S: 8, Hq: 4, Hkv: 2, D: 8 }
    const x = inputs(c, 21)
    const g = tensors(gpu, c, x)
    const kc = gpu.zeros([c.S, c.Hkv, c.D])
    const vc = gpu.zeros([c.S, c.Hkv, c.D])
    const full = await attention(g.q, g.k, g.v, { kvLen: c.S, qOffset: c.S - c.T }).out.readF32()
    const row = c.Hkv * c.D
    for (let p = 0; p < c.S; p++) {
      kvWrite(kc, gpu.tensor(x.k.subarray(p * row, (p + 1) * row), [1, c.Hkv, c.D]), p)
      kvWrite(vc, gpu.tensor(x.v.subarray(p * row, (p + 1) * row), [1, c.Hkv, c.D]), p)
    }
    // The last T positions, one query at a time.
    for (let t = 0; t < c.T; t++) {
      const qt = gpu.tensor(x.q.subarray(t * c.Hq * c.D, (t + 1) * c.Hq * c.D), [1, c.Hq, c.D])
      const pos = c.S - c.T + t
      const o = await attention(qt, kc, vc, { kvLen: pos + 1, qOffset: pos }).out.readF32()
      assertClose(o, full.subarray(t * c.Hq * c.D, (t + 1) * c.Hq * c.D), { atol: 1e-6, rtol: 1e-5, what: `decode step ${t}` })
    }
  })

  it('throws ShapeError when the rows do not fit', () => {
    const cache = gpu.zeros([4, 2, 8])
    expect(() => kvWrite(cache, gpu.zeros([2, 2, 8]), 3)).toThrow(ShapeError)
    expect(() => kvWrite(cache, gpu.zeros([2, 2, 8]), 3)).toThrow(/kvWrite: rows \[3, 5\) do not fit cache \(4, 2, 8\)/)
    expect(() => kvWrite(cache, gpu.zeros([1, 1, 8]), 0)).toThrow(/kvWrite: x \(1, 1, 8\) must match/)
    expect(() => kvWrite(cache, gpu.zeros([2, 16]), 0)).toThrow(/kvWrite: x \(T, Hkv, D\) must have rank 3/)
  })
})

describe('attention input checks', () => {
  const q = (): Tensor => gpu.zeros([3, 4, 8])
  const kv = (): Tensor => gpu.zeros([5, 2, 8])
  it('throws ShapeError naming the op and shapes', () => {
    expect(() => attention(gpu.zeros([3, 3, 8]), kv(), kv())).toThrow(ShapeError)
    expect(() => attention(gpu.zeros([3, 3, 8]), kv(), kv())).toThrow(/attention: query heads Hq must be a multiple of kv heads Hkv: q \(3, 3, 8\), k \(5, 2, 8\)/)
    expect(() => attention(q(), kv(), kv(), { kvLen: 6 })).toThrow(/attention: kvLen 6 must be an integer in \[0, S = 5\]/)
    expect(() => attention(q(), kv(), kv(), { kvLen: 4, qOffset: 2 })).toThrow(/attention: qOffset 2 with T = 3 must satisfy/)
    expect(() => attention(q(), kv(), kv(), { kvLen: 2 })).toThrow(/attention: qOffset -1/)
    expect(() => attention(gpu.zeros([3, 32]), kv(), kv())).toThrow(/attention: q \(T, Hq, D\) must have rank 3, got \(3, 32\)/)
    expect(() => attention(q(), gpu.zeros([5, 2, 6]), kv())).toThrow(/attention: k and v must be \(S, Hkv, D\) with q's D/)
    expect(() => attention(q(), kv(), gpu.zeros([4, 2, 8]))).toThrow(/attention: k and v must be/)
    expect(() => attention(gpu.zeros([1, 1, 300]), gpu.zeros([1, 1, 300]), gpu.zeros([1, 1, 300]))).toThrow(/attention: head dim D must be in \[1, 256\]/)
    expect(() => attention(q(), kv(), kv(), { kvLen: 0 })).toThrow(/attention: kvLen must be ≥ 1/)
    expect(() => attention(q(), kv(), kv(), { decodeSplits: 0 })).toThrow(/attention: decodeSplits must be a positive integer/)
  })

  it('backward checks out, lse and dout shapes', () => {
    const lse = gpu.zeros([4, 3])
    expect(() => attentionBackward(q(), kv(), kv(), q(), gpu.zeros([3, 4]), q())).toThrow(/attentionBackward: lse \(Hq, T\) must have shape \(4, 3\), got \(3, 4\)/)
    expect(() => attentionBackward(q(), kv(), kv(), gpu.zeros([3, 4, 4]), lse, q())).toThrow(/attentionBackward: out must have shape \(3, 4, 8\)/)
    expect(() => attentionBackward(q(), kv(), kv(), q(), lse, gpu.zeros([2, 4, 8]))).toThrow(/attentionBackward: dout must have shape/)
    expect(() => attentionBackward(gpu.zeros([3, 3, 8]), kv(), kv(), q(), lse, q())).toThrow(/attentionBackward: query heads Hq must be a multiple/)
  })
})
