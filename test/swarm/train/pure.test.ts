import { describe, expect, it } from 'vitest'
import { dequantizeQ8, q8Bytes, quantizeQ8 } from '../../../web/src/gpu/cpu/quant.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { fragmentsOf, layoutOf } from '../../../web/src/swarm/train/flat.ts'
import { hashBytes, nesterovStep, outerLrAt, resolveOuter } from '../../../web/src/swarm/train/outer.ts'
import { planParts, sliceQ8 } from '../../../web/src/swarm/train/plan.ts'
import { reducePart } from '../../../web/src/swarm/train/reduce.ts'
import { normQ8 } from '../../../web/src/swarm/train/q8fast.ts'
import { MsgType, decodeMsg, encodeMsg, type AllReduceMsg, type ReduceMsg } from '../../../web/src/swarm/train/wire.ts'
import type { TensorMessage } from '../../../web/src/net/stream/index.ts'
import { AllReduceProtocolError } from '../../../web/src/swarm/train/errors.ts'

const B = 64

function randn (n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed)
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = scale * r.normal()
  return a
}

describe('planParts', () => {
  it('covers every element once, block-aligned, owners interleaved in one order', () => {
    for (const [n, m, part] of [[1000, 3, 128], [64, 4, 64], [7, 2, 64], [100_003, 5, 4096]] as const) {
      const members = Array.from({ length: m }, (_, i) => `p${i}`)
      const plan = planParts(n, members, B, part)
      const seen = new Uint8Array(n)
      plan.forEach((p, i) => {
        expect(p.id).toBe(i)
        expect(p.start % B).toBe(0)
        expect(p.end - p.start).toBeLessThanOrEqual(part)
        for (let k = p.start; k < p.end; k++) seen[k]++
      })
      expect(seen.every(v => v === 1)).toBe(true)
      // q8 slices of parts concatenate back to the whole vector's q8
      const x = randn(n, n)
      const q = quantizeQ8(x, B)
      const total = plan.reduce((s, p) => s + sliceQ8(q, p.start, p.end, B).byteLength, 0)
      expect(total).toBe(q8Bytes(n, B))
    }
  })
})

describe('reducePart (bad-input rules)', () => {
  const n = 300
  const honest = [1, 2, 3].map(s => quantizeQ8(randn(n, s, 0.01), B))
  const peers = ['a', 'b', 'c']
  const ref = (qs: Uint8Array[]): Float32Array => {
    const out = new Float32Array(n)
    const sum = new Float64Array(n)
    for (const q of qs) {
      const v = new DataView(q.buffer, q.byteOffset, q.byteLength)
      for (let i = 0; i < n; i++) { const j = Math.floor(i / B); sum[i] += v.getInt8(j * (4 + B) + 4 + i % B) * v.getFloat32(j * (4 + B), true) }
    }
    for (let i = 0; i < n; i++) out[i] = sum[i] / qs.length
    return out
  }

  it('means honest contributions in f64, identical bytes for identical input', () => {
    const r1 = reducePart(peers.map((peer, i) => ({ peer, q: honest[i] })), n, B)
    const r2 = reducePart(peers.map((peer, i) => ({ peer, q: honest[i].slice() })), n, B)
    expect(r1.mean).toEqual(ref(honest))
    expect(r1.q).toEqual(r2.q)
    expect(r1.report.rejected).toEqual([])
    expect(r1.report.clipped).toEqual([])
  })

  it('rejects a wrong size, a NaN or Inf scale, a negative scale, and a missing contribution', () => {
    const nanScale = honest[2].slice(); new DataView(nanScale.buffer).setFloat32(0, NaN, true)
    const infScale = honest[2].slice(); new DataView(infScale.buffer).setFloat32(4 + B, Infinity, true)
    const negScale = honest[2].slice(); new DataView(negScale.buffer).setFloat32(0, -1, true)
    for (const bad of [honest[2].subarray(1), nanScale, infScale, negScale, undefined]) {
      const r = reducePart([{ peer: 'a', q: honest[0] }, { peer: 'b', q: honest[1] }, { peer: 'c', q: bad }], n, B)
      expect(r.report.rejected.map(x => x.peer)).toEqual(['c'])
      expect(r.mean).toEqual(ref(honest.slice(0, 2)))
    }
  })

  it('clips a norm far beyond the others to 4× the lower median', () => {
    const huge = quantizeQ8(randn(n, 9, 1e3), B)
    const r = reducePart([{ peer: 'a', q: honest[0] }, { peer: 'b', q: honest[1] }, { peer: 'c', q: huge }], n, B)
    expect(r.report.clipped.map(x => x.peer)).toEqual(['c'])
    const norms = honest.slice(0, 2).map(q => Math.hypot(...dequantizeQ8(q, n, B))).sort((x, y) => x - y)
    // lower median of the three accepted norms = the larger honest one
    expect(r.report.clipped[0].cap).toBeCloseTo(4 * norms[1], 6)
    let meanNorm = 0
    for (const v of r.mean) meanNorm += v * v
    // |mean| ≤ (|a| + |b| + cap) / 3: the corrupted peer moves it at most as much as 4 honest ones
    expect(Math.sqrt(meanNorm)).toBeLessThanOrEqual((norms[0] + norms[1] + 4 * norms[1]) / 3 + 1e-6)
    // bit for bit the two-pass rule: every contribution summed in member order in f64 with its factor
    const sum = new Float64Array(n)
    const factors = [1, 1, r.report.clipped[0].cap / r.report.clipped[0].norm]
    ;[honest[0], honest[1], huge].forEach((q, k) => {
      const v = new DataView(q.buffer, q.byteOffset, q.byteLength)
      for (let i = 0; i < n; i++) { const j = Math.floor(i / B); sum[i] += v.getInt8(j * (4 + B) + 4 + i % B) * (v.getFloat32(j * (4 + B), true) * factors[k]) }
    })
    expect(r.mean).toEqual(Float32Array.from(sum, x => x / 3))
  })

  it('floors the reference at the part\'s share of the claimed whole norms: a sparse part (one peer\'s embedding rows) is not clipped', () => {
    // A part of n elements of a 100·n vector in which only c's data moved the parameters (tokens
    // the others never drew): c's part norm is ~1000× theirs, while the three whole norms are
    // alike — each about √100 × c's part norm, c's part holding its uniform share.
    const tiny = [quantizeQ8(randn(n, 21, 1e-5), B), quantizeQ8(randn(n, 22, 1e-5), B)]
    const touched = quantizeQ8(randn(n, 23, 1e-2), B)
    const share = Math.hypot(...dequantizeQ8(touched, n, B))
    const contribs = [{ peer: 'a', q: tiny[0], norm: 12 * share }, { peer: 'b', q: tiny[1], norm: 9 * share }, { peer: 'c', q: touched, norm: 10 * share }]
    expect(reducePart(contribs, n, B).report.clipped.map(x => x.peer)).toEqual(['c']) // part norms alone (no whole given)
    const r = reducePart(contribs, n, B, 100 * n)
    expect(r.report.clipped).toEqual([])
    expect(r.mean).toEqual(ref([tiny[0], tiny[1], touched]))
  })

  it('one peer\'s claim cannot lift the floor: a huge part claiming a huge whole norm is still clipped to 4× the honest reference', () => {
    const huge = quantizeQ8(randn(n, 9, 1e3), B)
    const h = honest.map(q => Math.hypot(...dequantizeQ8(q, n, B)))
    const whole = 16 * n // honest whole norms: ≈ 4 × the part's (dense, uniform)
    for (const claim of [1e-9, 4 * h[2], 1e12]) {
      const r = reducePart([{ peer: 'a', q: honest[0], norm: 4 * h[0] }, { peer: 'b', q: honest[1], norm: 4 * h[1] }, { peer: 'c', q: huge, norm: claim }], n, B, whole)
      expect(r.report.clipped.map(x => x.peer)).toEqual(['c'])
      // reference: max(lower median of part norms, lower median of claims × √(1/16)) = the larger honest part norm
      expect(r.report.clipped[0].cap).toBeCloseTo(4 * Math.max(h[0], h[1]), 6)
    }
  })
})

describe('ErrorFeedback', () => {
  it('loses nothing over rounds: Σ sent = Σ delta − residual', () => {
    const n = 500
    const ef = new ErrorFeedback(n, B)
    const sumDelta = new Float64Array(n)
    const sumSent = new Float64Array(n)
    for (let r = 0; r < 20; r++) {
      const d = randn(n, 100 + r, 1e-3)
      d[r] = 0.5 // an outlier in each block crushes the small values: error feedback carries them
      const { q, sent, norm } = ef.compress(d)
      // the norm the all-reduce sends is what is sent: normQ8 of the bytes, up to f64 rounding
      expect(Math.abs(norm - normQ8(q, n, B))).toBeLessThanOrEqual(1e-6 * norm)
      ef.commit()
      for (let i = 0; i < n; i++) { sumDelta[i] += d[i]; sumSent[i] += sent[i] }
    }
    let worst = 0
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(sumDelta[i] - sumSent[i] - ef.residual[i]))
    expect(worst).toBeLessThan(1e-5)
    // the residual stays bounded by one quantisation step (not growing with rounds)
    expect(Math.max(...ef.residual.map(Math.abs))).toBeLessThan(0.5 / 127 + 1e-3)
  })

  it('discard keeps the old residual', () => {
    const ef = new ErrorFeedback(64, B)
    ef.compress(randn(64, 1)); ef.commit()
    const before = ef.residual.slice()
    ef.compress(randn(64, 2)); ef.discard()
    expect(ef.residual).toEqual(before)
  })
})

describe('outer Nesterov step', () => {
  it('matches torch SGD(nesterov) in f32 and is bit-reproducible', async () => {
    const n = 257
    const theta = randn(n, 1); const mom = new Float32Array(n)
    const t2 = theta.slice(); const m2 = mom.slice()
    const o = resolveOuter()
    for (let s = 0; s < 3; s++) {
      const g = randn(n, 10 + s, 0.1)
      nesterovStep(theta, mom, g, o)
      nesterovStep(t2, m2, g, o)
    }
    expect(await hashBytes(theta)).toBe(await hashBytes(t2))
    // one step from zero momentum: θ − lr·(1 + μ)·g
    const th = new Float32Array([1, -2]); const mm = new Float32Array(2)
    nesterovStep(th, mm, new Float32Array([0.5, 0.25]), o)
    expect(th[0]).toBeCloseTo(1 - 0.7 * 1.9 * 0.5, 6)
    expect(mm[1]).toBeCloseTo(0.25, 7)
  })
})

describe('outer lr schedule', () => {
  it('constant by default; with decaySyncs a linear move from lr to finalLr, then finalLr', () => {
    const c = resolveOuter({ lr: 2, momentum: 0 })
    expect([0, 5, 1e6].map(s => outerLrAt(c, s))).toEqual([2, 2, 2])
    const d = resolveOuter({ lr: 2, momentum: 0, decaySyncs: 4, finalLr: 1 })
    expect([0, 1, 2, 3, 4, 5, 99].map(s => outerLrAt(d, s))).toEqual([2, 1.75, 1.5, 1.25, 1, 1, 1])
    const up = resolveOuter({ lr: 1, momentum: 0, decaySyncs: 2, finalLr: 3 })
    expect([0, 1, 2, 3].map(s => outerLrAt(up, s))).toEqual([1, 2, 3, 3])
  })

  it.each([
    [{ decaySyncs: 1.5, finalLr: 1 }, /decaySyncs must be a non-negative integer/],
    [{ decaySyncs: -1, finalLr: 1 }, /decaySyncs must be a non-negative integer/],
    [{ decaySyncs: 3, finalLr: 0 }, /finalLr must be positive and finite/],
    [{ decaySyncs: 3, finalLr: Infinity }, /finalLr must be positive and finite/]
  ])('refuses %j', (o, why) => {
    expect(() => resolveOuter({ lr: 1, momentum: 0, ...o })).toThrow(why)
  })
})

describe('fragments', () => {
  it('cut at tensor boundaries, contiguous, covering everything', () => {
    const layout = layoutOf([{ name: 'a', shape: [10, 4] }, { name: 'b', shape: [3] }, { name: 'c', shape: [20, 2] }, { name: 'd', shape: [40] }])
    for (const k of [1, 2, 3, 4]) {
      const f = fragmentsOf(layout, k)
      expect(f.length).toBe(k)
      expect(f[0].start).toBe(0)
      expect(f[k - 1].end).toBe(layout.total)
      for (let i = 1; i < k; i++) expect(f[i].start).toBe(f[i - 1].end)
      for (const x of f) {
        expect(x.end).toBeGreaterThan(x.start)
        expect(layout.slots.some(s => s.offset === x.start)).toBe(true)
      }
    }
    expect(() => fragmentsOf(layout, 5)).toThrow(/only 4 parameter tensors/)
  })
})

describe('allreduce wire', () => {
  it('round-trips every message type', () => {
    const msgs: AllReduceMsg[] = [
      { type: MsgType.READY, run: 'r', round: 3, failedAttempt: -1, suspects: ['x'] },
      { type: MsgType.START, run: 'r', round: 3, attempt: 1, key: 'a:3:1', members: ['a', 'b'] },
      { type: MsgType.BEHIND, run: 'r', round: 3, completed: 4 },
      { type: MsgType.REDUCE, run: 'r', round: 3, key: 'k', members: ['a', 'b'], part: 2, n: 100, partElements: 4096, norm: 0.125, payload: new Uint8Array([1, 2, 3]) },
      { type: MsgType.RESULT, part: 2, n: 64, accepted: 2, rejected: ['c'], clipped: [], payload: new Uint8Array(68) },
      { type: MsgType.FAIL, reason: 'x', suspects: ['b'] },
      { type: MsgType.FETCH, run: 'r', key: 'k', part: 1 },
      { type: MsgType.NONE },
      { type: MsgType.DONE, run: 'r', round: 1, key: 'k' },
      { type: MsgType.ACK },
      { type: MsgType.SNAPSHOT, run: 'r', offset: 0, length: 10 },
      { type: MsgType.STATE, run: 'r', round: 2, hash: 'h', momentumHash: 'm', total: 3, offset: 0, meta: '{}', payload: new Uint8Array([9]) }
    ]
    for (const m of msgs) expect(decodeMsg(encodeMsg(m))).toEqual(m)
  })

  it('carries every payload as its own u8 tensor, 4-byte aligned (q8 scales readable in place), whatever the header length', () => {
    for (let len = 1; len <= 12; len++) {
      const run = 'r'.repeat(len) + 'é' // a 2-byte UTF-8 character in the header
      const payload = new Uint8Array(68).map((_, i) => i)
      const body = encodeMsg({ type: MsgType.REDUCE, run, round: 0, key: 'k', members: ['a'], part: 0, n: 64, partElements: 64, norm: 1, payload })
      const m = decodeMsg(body) as ReduceMsg
      expect(m.run).toBe(run)
      expect(m.payload.byteOffset % 4).toBe(0)
      expect(m.payload.buffer).toBe(body.tensors[0].data.buffer) // a view of the received tensor, not a copy
      expect([...m.payload]).toEqual([...payload])
    }
  })

  it('refuses a REDUCE without a valid part size or norm, and version-3 messages', () => {
    const good = encodeMsg({ type: MsgType.REDUCE, run: 'r', round: 0, key: 'k', members: ['a'], part: 0, n: 64, partElements: 64, norm: 1, payload: new Uint8Array(68) })
    const withMeta = (change: Record<string, unknown>, drop?: string): TensorMessage => {
      const meta: Record<string, unknown> = { ...good.meta, ...change }
      if (drop !== undefined) delete meta[drop]
      return { meta: meta as TensorMessage['meta'], tensors: good.tensors }
    }
    for (const bad of [withMeta({ partElements: 0 }), withMeta({}, 'partElements')]) expect(() => decodeMsg(bad)).toThrow(/missing partElements|partElements must be ≥ 1/)
    for (const bad of [withMeta({ norm: -1 }), withMeta({ norm: '1' }), withMeta({ norm: null }), withMeta({}, 'norm')]) expect(() => decodeMsg(bad)).toThrow(/missing norm|norm must be a finite number ≥ 0/)
    expect(() => decodeMsg(withMeta({ v: 3 }))).toThrow(/unsupported version 3 \(expected 4\)/)
    expect(() => decodeMsg(withMeta({ extra: 1 }))).toThrow(/unknown field extra/)
    expect(() => decodeMsg({ meta: good.meta, tensors: [] })).toThrow(/missing tensor payload/)
    expect(() => decodeMsg({ meta: good.meta, tensors: [{ ...good.tensors[0], dtype: 'f32', shape: [17] }] })).toThrow(/payload must be u8/)
  })

  it('refuses garbage with a typed error, never a partial message', () => {
    const rng = new Rng(5)
    const good = encodeMsg({ type: MsgType.START, run: 'r', round: 3, attempt: 1, key: 'k', members: ['a', 'b'] })
    const values: unknown[] = [null, -1, 0, 1.5, 2 ** 60, '', 'x', [], ['b', 'a'], {}, true]
    let refused = 0
    for (let i = 0; i < 2000; i++) {
      const meta: Record<string, unknown> = { ...good.meta }
      const keys = [...Object.keys(meta), 'other']
      const flips = 1 + rng.int(4)
      for (let k = 0; k < flips; k++) meta[keys[rng.int(keys.length)]] = values[rng.int(values.length)]
      const tensors = rng.next() < 0.2 ? [{ name: 'payload', dtype: 'u8' as const, shape: [1], data: new Uint8Array(1) }] : []
      try { decodeMsg({ meta: meta as TensorMessage['meta'], tensors }) } catch (e) { expect(e).toBeInstanceOf(AllReduceProtocolError); refused++ }
    }
    expect(refused).toBeGreaterThan(1000)
    expect(() => decodeMsg(encodeMsg({ type: MsgType.START, run: 'r', round: 1, attempt: 0, key: 'k', members: ['b', 'a'] }))).toThrow(/sorted/)
    expect(() => decodeMsg({ meta: { ...good.meta, t: 99 }, tensors: [] })).toThrow(/unknown message type 99/)
  })
})

describe('q8fast (the all-reduce hot path) equals the reference twins bit for bit', () => {
  it('quantize, dequantize, norm on random, tiny, huge, tied and odd-length inputs', async () => {
    const { quantizeQ8Fast, dequantizeQ8Into, normQ8 } = await import('../../../web/src/swarm/train/q8fast.ts')
    const rng = new Rng(3)
    for (const n of [1, 63, 64, 65, 1000, 4097]) {
      for (const kind of ['normal', 'tiny', 'huge', 'ties', 'zeros']) {
        const x = new Float32Array(n)
        for (let i = 0; i < n; i++) {
          if (kind === 'normal') x[i] = rng.normal()
          if (kind === 'tiny') x[i] = 1e-30 * rng.normal()
          if (kind === 'huge') x[i] = 1e30 * rng.normal()
          if (kind === 'ties') x[i] = (rng.int(255) - 127) / 2 // exact half steps of scale 1
        }
        if (kind === 'ties' && n > 1) x[0] = 127
        for (const block of [32, 64, 256]) {
          const ref = quantizeQ8(x, block)
          const fast = quantizeQ8Fast(x, n, block)
          expect(Buffer.from(fast).equals(Buffer.from(ref)), `${kind} n=${n} block=${block}`).toBe(true)
          const back = new Float32Array(n)
          dequantizeQ8Into(fast.subarray(0), n, block, back)
          expect(back).toEqual(dequantizeQ8(ref, n, block))
          let s = 0
          for (const v of dequantizeQ8(ref, n, block)) s += v * v
          expect(Math.abs(normQ8(fast, n, block) - Math.sqrt(s))).toBeLessThanOrEqual(1e-6 * Math.sqrt(s) + 1e-300)
        }
      }
    }
  })
})

describe('the owner\'s fused reduction (meanQ8Into via reducePartInto) equals the two-pass rule bit for bit', () => {
  /** The rule written plainly: Σ in member order in f64 with each factor, / count, f32, then the reference quantizer. */
  function twoPass (qs: Uint8Array[], factors: number[], n: number, block: number): { mean: Float32Array, q: Uint8Array } {
    const sum = new Float64Array(n)
    qs.forEach((q, k) => {
      const v = new DataView(q.buffer, q.byteOffset, q.byteLength)
      for (let i = 0; i < n; i++) { const j = Math.floor(i / block); sum[i] += v.getInt8(j * (4 + block) + 4 + i % block) * (v.getFloat32(j * (4 + block), true) * factors[k]) }
    })
    const mean = Float32Array.from(sum, x => qs.length === 0 ? 0 : x / qs.length)
    return { mean, q: quantizeQ8(mean, block) }
  }

  it('1 to 5 members, clipped or not, odd lengths, every block size, unaligned inputs, a reused output buffer', async () => {
    const { reducePartInto } = await import('../../../web/src/swarm/train/reduce.ts')
    const { normQ8 } = await import('../../../web/src/swarm/train/q8fast.ts')
    const rng = new Rng(17)
    for (const block of [32, 64, 256]) {
      for (const n of [1, block - 1, block, 3 * block + 5, 2000]) {
        const out = new Uint8Array(q8Bytes(n, block)).fill(0xa5) // stale bytes must all be overwritten
        for (let m = 0; m <= 5; m++) {
          const qs = Array.from({ length: m }, (_, c) => {
            const q = quantizeQ8(randn(n, rng.int(1e6), c === 0 && m >= 3 ? 100 : 0.01), block) // member 0 gets clipped when m ≥ 3
            if (c % 2 === 0) return q
            const un = new Uint8Array(q.byteLength + 1).subarray(1) // a view at an odd offset
            un.set(q)
            return un
          })
          const meanOut = new Float32Array(n)
          const rep = reducePartInto(qs.map((q, c) => ({ peer: `p${c}`, q })), n, block, out, meanOut)
          const factors = qs.map((_, c) => { const k = rep.clipped.find(x => x.peer === `p${c}`); return k === undefined ? 1 : k.cap / k.norm })
          const want = twoPass(qs, factors, n, block)
          expect(Buffer.from(out).equals(Buffer.from(want.q)), `block ${block} n ${n} m ${m}`).toBe(true)
          expect(meanOut).toEqual(want.mean)
          if (m >= 3) {
            // the norms taken during the pass are normQ8's, bit for bit, and so is the cap
            expect(rep.clipped.map(x => x.peer)).toEqual(['p0'])
            const norms = qs.map(q => normQ8(q, n, block))
            expect(rep.clipped[0].norm).toBe(norms[0])
            expect(rep.clipped[0].cap).toBe(4 * [...norms].sort((x, y) => x - y)[Math.floor((m - 1) / 2)])
          }
        }
      }
    }
  })

  it('refuses an output buffer of the wrong size or at an unaligned offset', async () => {
    const { reducePartInto } = await import('../../../web/src/swarm/train/reduce.ts')
    const q = quantizeQ8(randn(100, 1), B)
    expect(() => reducePartInto([{ peer: 'a', q }], 100, B, new Uint8Array(q.byteLength - 1))).toThrow(/holds/)
    expect(() => reducePartInto([{ peer: 'a', q }], 100, B, new Uint8Array(q.byteLength + 1).subarray(1))).toThrow(/multiple of 4/)
  })
})

describe('quantizeQ8Fast at the rounding thresholds', () => {
  it('values on, just above and just below every half step f32((k ± ½)·s) quantize as the reference does', async () => {
    const { quantizeQ8Fast, quantizeQ8Into } = await import('../../../web/src/swarm/train/q8fast.ts')
    const f32 = new Float32Array(1)
    const u32 = new Uint32Array(f32.buffer)
    const nextTo = (x: number, d: number): number => { f32[0] = x; u32[0] += d; return f32[0] } // ±1 ulp (x > 0)
    for (const absmax of [1, 0.0123, 3.7e-20, 6.1e25]) {
      const s = Math.fround(absmax * Math.fround(1 / 127))
      const x: number[] = []
      for (let k = 0; k < 127; k++) {
        const t = Math.fround((k + 0.5) * s)
        for (const v of [t, nextTo(t, 1), nextTo(t, -1)]) x.push(v, -v)
      }
      // one block per 63 values with absmax first, so every block has the same scale s
      const blocks: number[] = []
      for (let i = 0; i < x.length; i += 63) blocks.push(absmax, ...x.slice(i, i + 63), ...new Array(Math.max(0, 63 - x.slice(i, i + 63).length)).fill(0))
      const xs = Float32Array.from(blocks)
      const ref = quantizeQ8(xs, B)
      expect(Buffer.from(quantizeQ8Fast(xs, xs.length, B)).equals(Buffer.from(ref)), `absmax ${absmax}`).toBe(true)
      const into = new Uint8Array(ref.byteLength + 1).subarray(1) // unaligned: quantized aside, then copied
      quantizeQ8Into(xs, xs.length, B, into)
      expect(Buffer.from(into).equals(Buffer.from(ref))).toBe(true)
    }
  })
})

describe('allocMsg', () => {
  it('builds a message with its payload in place, 4-byte aligned, that decodes like encodeMsg\'s', async () => {
    const { allocMsg } = await import('../../../web/src/swarm/train/wire.ts')
    for (const rejected of [[], ['a'], ['ab', 'cde']]) {
      const head: AllReduceMsg = { type: MsgType.RESULT, part: 3, n: 128, accepted: 2, rejected, clipped: [], payload: new Uint8Array(0) }
      const { body, payload } = allocMsg(head, q8Bytes(128, B))
      expect(payload.byteOffset % 4).toBe(0)
      payload.set(quantizeQ8(randn(128, 4), B))
      const m = decodeMsg(body)
      expect(m).toEqual({ ...head, payload })
      expect(encodeMsg(m)).toEqual(body)
    }
    expect(() => allocMsg({ type: MsgType.NONE }, 2 * 1024 * 1024)).toThrow(AllReduceProtocolError)
  })
})
