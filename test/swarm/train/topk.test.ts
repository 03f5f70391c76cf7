import { describe, expect, it } from 'vitest'
import { Rng } from '../../../web/src/util/rng.ts'
import { checkTopK, decodeTopKInto, encodeTopK, indexMode, levels, sliceTopK, topkBytes, type TopKParams } from '../../../web/src/swarm/train/topk.ts'
import { codecOf, topkCodec } from '../../../web/src/swarm/train/codec.ts'
import { ErrorFeedback } from '../../../web/src/swarm/train/compress.ts'
import { planParts } from '../../../web/src/swarm/train/plan.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'

function randn (n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed)
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = scale * r.normal()
  return a
}

const f32le = (v: number): number[] => Array.from(new Uint8Array(new Float32Array([v]).buffer))

describe('top-k codec: exact bytes', () => {
  it('list mode, signed 2-bit grid: hand-computed bytes, ties to the lower index', () => {
    const p: TopKParams = { chunk: 16, k: 2, bits: 2, zero: false }
    expect(indexMode(p)).toBe('list') // 2 one-byte indices ≤ a 2-byte bitmap
    const x = new Float32Array(20)
    x[3] = 0.5; x[10] = -0.25; x[5] = 0.1 // chunk 0: keeps 3 and 10
    x[17] = 2; x[18] = -2; x[19] = 2 // chunk 1 (4 elements): a three-way tie, the lower two win
    const sent = new Float32Array(20)
    const bytes = encodeTopK(x, p, sent)
    // chunk 0: scale 0.5; indices 3, 10; codes 3 (+1) and 1 (−1/3: −0.5 rounds to −1/3) → 0b0111
    // chunk 1: scale 2; indices 1, 2; codes 3 (+1) and 0 (−1) → 0b0011
    expect(Array.from(bytes)).toEqual([...f32le(0.5), 3, 10, 0b0111, ...f32le(2), 1, 2, 0b0011])
    expect(topkBytes(20, p)).toBe(14)
    const want = new Float32Array(20)
    want[3] = 0.5; want[10] = Math.fround(0.5 * Math.fround(-1 / 3)); want[17] = 2; want[18] = -2
    expect(sent).toEqual(want)
    const back = new Float32Array(22).fill(9)
    decodeTopKInto(bytes, 20, p, back, 1)
    expect(back.subarray(1, 21)).toEqual(want)
    expect(back[0]).toBe(9); expect(back[21]).toBe(9) // nothing written outside [offset, offset + n)
  })

  it('bitmap mode, zero 4-bit grid: hand-computed bytes', () => {
    const p: TopKParams = { chunk: 8, k: 3, bits: 4, zero: true }
    expect(indexMode(p)).toBe('bitmap') // 3 indices > a 1-byte bitmap
    const x = new Float32Array([0, 7, 0, -1, 0, 0, 3.5, 0.1])
    const bytes = encodeTopK(x, p)
    // kept 1, 3, 6 → bitmap 0b01001010; scale 7; M = 7: codes 14 (+1), 6 (−1/7), 11 (3.5/7·7 + 7 = 10.5 → 11)
    expect(Array.from(bytes)).toEqual([...f32le(7), 0b01001010, 14 | (6 << 4), 11])
    const out = new Float32Array(8)
    decodeTopKInto(bytes, 8, p, out)
    expect(Array.from(out)).toEqual([0, 7, 0, -1, 0, 0, Math.fround(7 * Math.fround(4 / 7)), 0])
  })

  it('u16 indices past 256 elements, and a zero chunk decodes to zeros', () => {
    const p: TopKParams = { chunk: 512, k: 2, bits: 3, zero: false }
    const x = new Float32Array(600)
    x[300] = -4; x[511] = 4
    const bytes = encodeTopK(x, p)
    expect(Array.from(bytes.subarray(0, 10))).toEqual([...f32le(4), 300 & 255, 300 >> 8, 511 & 255, 511 >> 8, 0 | (7 << 3), 0])
    const out = new Float32Array(600)
    decodeTopKInto(bytes, 600, p, out)
    expect(out[300]).toBe(-4); expect(out[511]).toBe(4)
    expect(out.subarray(512).every(v => v === 0)).toBe(true) // the second chunk (88 zeros) kept zeros at scale 0
    expect(checkTopK(bytes, 600, p)).toBeUndefined()
  })

  it('levels: signed grids have no zero, zero grids are symmetric around it', () => {
    expect(Array.from(levels(2, false))).toEqual([-1, Math.fround(-1 / 3), Math.fround(1 / 3), 1])
    expect(Array.from(levels(2, true))).toEqual([-1, 0, 1])
    expect(levels(4, true).length).toBe(15)
  })
})

describe('top-k codec: random and odd shapes', () => {
  const shapes: Array<[number, TopKParams]> = [
    [1, { chunk: 8, k: 1, bits: 2, zero: false }],
    [7, { chunk: 8, k: 3, bits: 3, zero: true }],
    [257, { chunk: 64, k: 5, bits: 2, zero: false }],
    [1000, { chunk: 256, k: 4, bits: 2, zero: false }],
    [1000, { chunk: 256, k: 64, bits: 4, zero: true }], // bitmap
    [4099, { chunk: 512, k: 20, bits: 8, zero: false }], // u16
    [333, { chunk: 16, k: 16, bits: 5, zero: true }] // k = chunk: everything kept
  ]
  it('keeps the k largest per chunk, decodes to what it reports as sent, within half a level', () => {
    for (const [n, p] of shapes) {
      const x = randn(n, n + p.chunk + p.k)
      const sent = new Float32Array(n)
      const bytes = encodeTopK(x, p, sent)
      expect(bytes.byteLength).toBe(topkBytes(n, p))
      expect(checkTopK(bytes, n, p)).toBeUndefined()
      const out = new Float32Array(n)
      decodeTopKInto(bytes, n, p, out)
      expect(out).toEqual(sent)
      const top = p.zero ? 2 ** (p.bits - 1) - 1 : 2 ** p.bits - 1
      for (let lo = 0; lo < n; lo += p.chunk) {
        const len = Math.min(p.chunk, n - lo)
        const kc = Math.min(p.k, len)
        const order = Array.from({ length: len }, (_, i) => i).sort((a, b) => Math.abs(x[lo + b]) - Math.abs(x[lo + a]) || a - b)
        const kept = new Set(order.slice(0, kc))
        const s = Math.abs(x[lo + order[0]])
        for (let i = 0; i < len; i++) {
          if (!kept.has(i)) { expect(out[lo + i]).toBe(0); continue }
          expect(Math.abs(out[lo + i] - x[lo + i])).toBeLessThanOrEqual(s / top * (p.zero ? 0.5 : 1) + 1e-6 * s)
        }
      }
    }
  })

  it('with many ties keeps the kc largest, the lower index first, on both selection paths (k ≤ 32: one pass; larger: a sort)', () => {
    const r = new Rng(77)
    for (const [n, chunk, k] of [[1000, 256, 4], [515, 64, 5], [300, 8, 8], [999, 256, 32], [1000, 256, 33], [700, 128, 100]]) {
      const p: TopKParams = { chunk, k, bits: 2, zero: false }
      // |x| in {0, 1, 2, 3}: every chunk is full of ties; the first element is never 0 (scale > 0).
      const x = Float32Array.from({ length: n }, (_, i) => i % chunk === 0 ? 3 : Math.floor(r.next() * 7) - 3)
      const sent = new Float32Array(n)
      encodeTopK(x, p, sent)
      for (let lo = 0; lo < n; lo += chunk) {
        const len = Math.min(chunk, n - lo)
        const order = Array.from({ length: len }, (_, i) => i).sort((a, b) => Math.abs(x[lo + b]) - Math.abs(x[lo + a]) || a - b)
        const want = order.slice(0, Math.min(k, len)).sort((a, b) => a - b)
        // The signed grid has no zero: exactly the kept elements decode to non-zero values.
        const got = Array.from({ length: len }, (_, i) => i).filter(i => sent[lo + i] !== 0)
        expect(got, `n ${n}, chunk ${chunk}, k ${k}, chunk at ${lo}`).toEqual(want)
      }
    }
  })

  it('slices at chunk boundaries concatenate to the whole (what parts send)', () => {
    const p: TopKParams = { chunk: 64, k: 3, bits: 2, zero: false }
    const n = 1000
    const x = randn(n, 9)
    const bytes = encodeTopK(x, p)
    const plan = planParts(n, ['a', 'b', 'c'], p.chunk, 128)
    let total = 0
    for (const part of plan) {
      const s = sliceTopK(bytes, part.start, part.end, p)
      expect(s).toEqual(encodeTopK(x.subarray(part.start, part.end), p))
      total += s.byteLength
    }
    expect(total).toBe(bytes.byteLength)
    expect(() => sliceTopK(bytes, 10, 64, p)).toThrow(/multiple of the chunk/)
  })

  it('refuses non-finite input and bad parameters with a typed error', () => {
    const x = randn(20, 1); x[7] = NaN
    expect(() => encodeTopK(x, { chunk: 8, k: 2, bits: 2, zero: false })).toThrow(TrainArgumentError)
    expect(() => encodeTopK(randn(8, 1), { chunk: 12, k: 2, bits: 2, zero: false })).toThrow(/multiple of 8/)
    expect(() => encodeTopK(randn(8, 1), { chunk: 8, k: 9, bits: 2, zero: false })).toThrow(/k must be/)
    expect(() => encodeTopK(randn(8, 1), { chunk: 8, k: 2, bits: 1, zero: false })).toThrow(/bits must be/)
  })
})

describe('top-k codec: bad input', () => {
  const p: TopKParams = { chunk: 16, k: 2, bits: 2, zero: false }
  const good = (): Uint8Array => { const x = new Float32Array(20); x[3] = 0.5; x[10] = -0.25; x[17] = 2; x[18] = -2; return encodeTopK(x, p) }
  it('names each malformation', () => {
    expect(checkTopK(good(), 20, p)).toBeUndefined()
    expect(checkTopK(good().subarray(1), 20, p)).toMatch(/wrong size/)
    const setScale = (v: number): Uint8Array => { const b = good(); new DataView(b.buffer).setFloat32(0, v, true); return b }
    expect(checkTopK(setScale(NaN), 20, p)).toMatch(/non-finite scale/)
    expect(checkTopK(setScale(Infinity), 20, p)).toMatch(/non-finite scale/)
    expect(checkTopK(setScale(-1), 20, p)).toMatch(/negative scale/)
    const b1 = good(); b1[4] = 10; b1[5] = 3
    expect(checkTopK(b1, 20, p)).toMatch(/out of order/)
    const b2 = good(); b2[5] = b2[4]
    expect(checkTopK(b2, 20, p)).toMatch(/out of order/)
    const b3 = good(); b3[12] = 4 // chunk 1 has 4 elements: index 4 is past it
    expect(checkTopK(b3, 20, p)).toMatch(/past the chunk/)
    const z: TopKParams = { chunk: 8, k: 3, bits: 4, zero: true }
    const zb = (): Uint8Array => encodeTopK(new Float32Array([0, 7, 0, -1, 0, 0, 3.5, 0.1]), z)
    const c1 = zb(); c1[4] = 0b01001011
    expect(checkTopK(c1, 8, z)).toMatch(/marks 4 elements, expected 3/)
    const c2 = zb(); c2[5] = 15
    expect(checkTopK(c2, 8, z)).toMatch(/outside the 15-level grid/)
    const short = encodeTopK(new Float32Array([1, 2, 3, 4, 5]), z) // one chunk of 5
    short[4] |= 0b10000000
    expect(checkTopK(short, 5, z)).toMatch(/past the chunk's 5/)
  })

  it('random garbage is refused or decodes inside its chunk (never out of range)', () => {
    const rng = new Rng(11)
    let refused = 0
    for (let t = 0; t < 300; t++) {
      const b = good()
      for (let j = 0; j < 3; j++) b[Math.floor(rng.next() * b.length)] = Math.floor(rng.next() * 256)
      if (checkTopK(b, 20, p) !== undefined) { refused++; continue }
      const out = new Float32Array(22).fill(7)
      decodeTopKInto(b, 20, p, out, 1)
      expect(out[0]).toBe(7); expect(out[21]).toBe(7)
      expect(out.every(Number.isFinite)).toBe(true)
    }
    expect(refused).toBeGreaterThan(0)
  })
})

describe('ErrorFeedback with top-k', () => {
  it('loses nothing over rounds: Σ sent + residual = Σ delta', () => {
    const n = 700
    const codec = topkCodec({ chunk: 64, k: 2, bits: 2, resultBits: 4 })
    const ef = new ErrorFeedback(n, codec)
    const sumDelta = new Float64Array(n)
    const sumSent = new Float64Array(n)
    for (let r = 0; r < 30; r++) {
      const d = randn(n, 200 + r, 1e-3)
      const { q, sent, norm } = ef.compress(d)
      expect(q.byteLength).toBe(codec.bytes(n))
      expect(Math.abs(norm - codec.norm(q, n))).toBeLessThanOrEqual(1e-6 * norm)
      ef.commit()
      for (let i = 0; i < n; i++) { sumDelta[i] += d[i]; sumSent[i] += sent[i] }
    }
    let worst = 0
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(sumDelta[i] - sumSent[i] - ef.residual[i]))
    expect(worst).toBeLessThan(1e-5)
    // what is not sent waits its turn: the residual stays bounded (≈ a few rounds' Δ), not growing with rounds
    expect(Math.max(...ef.residual.map(Math.abs))).toBeLessThan(0.05)
  })

  it('discard keeps the old residual', () => {
    const ef = new ErrorFeedback(64, topkCodec({ chunk: 16, k: 1, bits: 2, resultBits: 4 }))
    ef.compress(randn(64, 1)); ef.commit()
    const before = ef.residual.slice()
    ef.compress(randn(64, 2)); ef.discard()
    expect(ef.residual).toEqual(before)
  })

  it('SparseLoCo\'s decay: the codec sees f32(β·e) + Δ, and e forgets what it never sends', () => {
    const n = 64
    const codec = topkCodec({ chunk: 16, k: 1, bits: 2, resultBits: 4 })
    const ef = new ErrorFeedback(n, codec, false, 0.5)
    ef.compress(randn(n, 3)); ef.commit()
    const e = ef.residual.slice()
    const d = randn(n, 4)
    const { sent } = ef.compress(d)
    ef.commit()
    const target = Float32Array.from(d, (v, i) => Math.fround(0.5 * e[i]) + v)
    for (let i = 0; i < n; i++) expect(ef.residual[i]).toBe(Math.fround(target[i] - sent[i]))
    // Δ = 0 from now on: an element never sent halves every round instead of waiting forever
    const zero = new Float32Array(n)
    for (let r = 0; r < 40; r++) { ef.compress(zero); ef.commit() }
    expect(Math.max(...ef.residual.map(Math.abs))).toBeLessThan(1e-9)
    expect(() => new ErrorFeedback(n, codec, false, 0)).toThrow(/decay must be in \(0, 1\]/)
    expect(() => new ErrorFeedback(n, codec, true, 0.9)).toThrow(/cannot decay/)
  })
})

describe('top-k owner reduction', () => {
  const codec = topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 8 })
  const n = 200
  const member = (seed: number, scale = 1): Uint8Array => codec.encode(randn(n, seed, scale)).bytes
  const decode = (q: Uint8Array): Float32Array => { const x = new Float32Array(n); decodeTopKInto(q, n, { chunk: 32, k: 3, bits: 2, zero: false }, x); return x }

  it('means the decoded parts in member order on their union, bit-identical whoever reduces', () => {
    const qs = [member(1), member(2), member(3)]
    const contribs = qs.map((q, i) => ({ peer: `p${i}`, q }))
    const a = codec.reduce(contribs, n)
    const bytesA = a.bytes.slice()
    const b = topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 8 }).reduce(contribs, n)
    expect(b.bytes).toEqual(bytesA)
    expect(a.report.accepted).toEqual(['p0', 'p1', 'p2'])
    expect(bytesA.byteLength).toBe(codec.resultBytes(n, 3))
    expect(codec.checkResult(bytesA, n, 3)).toBeUndefined()
    const xs = qs.map(decode)
    const want = new Float32Array(n)
    for (let i = 0; i < n; i++) want[i] = (xs[0][i] + xs[1][i] + xs[2][i]) / 3
    const got = new Float32Array(n)
    codec.decodeResultInto(bytesA, n, 3, got, 0)
    for (let lo = 0; lo < n; lo += 32) {
      let s = 0
      for (let i = lo; i < Math.min(n, lo + 32); i++) s = Math.max(s, Math.abs(want[i]))
      for (let i = lo; i < Math.min(n, lo + 32); i++) {
        if (want[i] === 0) expect(got[i]).toBe(0) // nothing outside the union
        expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(s / 127 / 2 + 1e-7)
      }
    }
  })

  it('refuses malformed parts, counts missing ones as refused, clips an outsized norm', () => {
    const bad = member(4); new DataView(bad.buffer).setFloat32(0, NaN, true)
    const huge = member(5, 1000)
    const r = codec.reduce([{ peer: 'a', q: member(1) }, { peer: 'b', q: bad }, { peer: 'c', q: undefined }, { peer: 'd', q: member(2) }, { peer: 'e', q: huge }, { peer: 'f', q: member(3) }], n)
    expect(r.report.accepted).toEqual(['a', 'd', 'e', 'f'])
    expect(r.report.rejected.map(x => [x.peer, x.reason.split(' ')[0]])).toEqual([['b', 'chunk'], ['c', 'no']])
    expect(r.report.clipped.map(x => x.peer)).toEqual(['e'])
    const none = codec.reduce([{ peer: 'a', q: undefined }], n)
    expect(none.report.accepted).toEqual([])
    const out = new Float32Array(n).fill(1)
    codec.decodeResultInto(none.bytes, n, 0, out, 0)
    expect(out.every(v => v === 0)).toBe(true)
  })

  it('resultBits 0: the owner all-gathers the accepted parts with their factors; members compute the exact mean', () => {
    const g = topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 0 })
    const send = { chunk: 32, k: 3, bits: 2, zero: false }
    const parts = [1, 2, 3].map(seed => g.encode(randn(n, seed)).bytes)
    const huge = g.encode(randn(n, 9, 1000)).bytes
    const bad = parts[0].slice(); new DataView(bad.buffer).setFloat32(0, -1, true)
    const r = g.reduce([{ peer: 'a', q: parts[0] }, { peer: 'b', q: bad }, { peer: 'c', q: parts[1] }, { peer: 'd', q: huge }, { peer: 'e', q: parts[2] }], n)
    expect(r.report.accepted).toEqual(['a', 'c', 'd', 'e'])
    expect(r.report.rejected.map(x => x.peer)).toEqual(['b'])
    expect(r.report.clipped.map(x => x.peer)).toEqual(['d'])
    expect(r.bytes.byteLength).toBe(g.resultBytes(n, 4))
    expect(g.checkResult(r.bytes, n, 4)).toBeUndefined()
    const view = new DataView(r.bytes.buffer)
    const factors = [0, 1, 2, 3].map(i => view.getFloat32(4 * i, true))
    expect(factors[0]).toBe(1); expect(factors[3]).toBe(1)
    expect(factors[2]).toBeLessThan(0.01)
    // the payload after the factors is the accepted parts, byte for byte
    expect(r.bytes.subarray(16, 16 + parts[0].byteLength)).toEqual(parts[0])
    const got = new Float32Array(n + 2).fill(5)
    g.decodeResultInto(r.bytes, n, 4, got, 1)
    expect(got[0]).toBe(5); expect(got[n + 1]).toBe(5)
    const xs = [parts[0], parts[1], huge, parts[2]].map(q => { const x = new Float32Array(n); decodeTopKInto(q, n, send, x); return x })
    for (let i = 0; i < n; i++) {
      let acc = 0
      xs.forEach((x, c) => { if (x[i] !== 0) acc += factors[c] * x[i] })
      expect(got[1 + i]).toBe(Math.fround(acc / 4))
    }
    // malformed gathered results are refused by name
    const r2 = r.bytes.slice(); new DataView(r2.buffer).setFloat32(4, 2, true)
    expect(g.checkResult(r2, n, 4)).toMatch(/factor 1 is 2/)
    const r3 = r.bytes.slice(); r3[16 + 4] = 250
    expect(g.checkResult(r3, n, 4)).toMatch(/gathered part 0: chunk 0: index 250/)
    expect(g.checkResult(r.bytes.subarray(1), n, 4)).toMatch(/wrong size/)
    expect(g.id).toBe('topk/32/3/2/gather')
  })

  it('mean "senders": each element divides by the members that sent it (hand-computed), union and all-gather alike', () => {
    // chunk 8, top-1 at 2 bits, exact result values: member a sends 0.6 at 1, b sends −0.3 at 1, c sends 0.9 at 5
    const params = { chunk: 8, k: 1, bits: 2 }
    const x = (i: number, v: number): Float32Array => { const a = new Float32Array(8); a[i] = v; return a }
    for (const resultBits of [8, 0]) {
      const s = topkCodec({ ...params, resultBits, mean: 'senders' })
      const m = topkCodec({ ...params, resultBits })
      expect(s.id).toBe(`${m.id}/senders`)
      const contribs = [x(1, 0.6), x(1, -0.3), x(5, 0.9)].map((v, i) => ({ peer: `p${i}`, q: s.encode(v).bytes }))
      const got = new Float32Array(8); const plain = new Float32Array(8)
      s.decodeResultInto(s.reduce(contribs, 8).bytes, 8, 3, got, 0)
      m.decodeResultInto(m.reduce(contribs, 8).bytes, 8, 3, plain, 0)
      const f = Math.fround
      // element 1: (0.6 − 0.3) / 2 senders; element 5: 0.9 / 1; the members' mean divides both by 3
      const want = resultBits === 0 ? [f((f(0.6) + f(-0.3)) / 2), f(0.9)] : [f(0.15), f(0.9)]
      const tol = resultBits === 0 ? 0 : 0.9 / 127 / 2 + 1e-7 // the union mean is rounded once more (8 bits)
      expect(Math.abs(got[1] - want[0])).toBeLessThanOrEqual(tol)
      expect(Math.abs(got[5] - want[1])).toBeLessThanOrEqual(tol)
      expect(Math.abs(plain[5] - f(f(0.9) / 3))).toBeLessThanOrEqual(tol)
      expect([0, 2, 3, 4, 6, 7].every(i => got[i] === 0)).toBe(true)
    }
  })

  it('mean "senders" on random parts: exact f64 per-element sums over the senders, clipped factors included, bit-identical whoever reduces', () => {
    const send = { chunk: 32, k: 3, bits: 2, zero: false }
    const g = topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 0, mean: 'senders' })
    const parts = [1, 2, 3, 4].map(seed => g.encode(randn(n, seed)).bytes)
    const huge = g.encode(randn(n, 9, 1000)).bytes
    const contribs = [...parts, huge].map((q, i) => ({ peer: `p${i}`, q }))
    const r = g.reduce(contribs, n)
    expect(r.report.clipped.map(c => c.peer)).toEqual(['p4'])
    const view = new DataView(r.bytes.buffer)
    const factors = [0, 1, 2, 3, 4].map(i => view.getFloat32(4 * i, true))
    const xs = [...parts, huge].map(q => { const x = new Float32Array(n); decodeTopKInto(q, n, send, x); return x })
    const got = new Float32Array(n)
    g.decodeResultInto(r.bytes, n, 5, got, 0)
    let shared = 0
    for (let i = 0; i < n; i++) {
      let acc = 0; let c = 0
      xs.forEach((x, j) => { if (x[i] !== 0) { acc += factors[j] * x[i]; c++ } })
      if (c > 1) shared++
      expect(got[i]).toBe(c === 0 ? 0 : Math.fround(acc / c))
    }
    expect(shared).toBeGreaterThan(0) // some elements were sent by several members
    // the union path: the same per-element means, rounded once more, equal from two owners
    const u = topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 8, mean: 'senders' })
    const a = u.reduce(contribs, n).bytes.slice()
    expect(topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 8, mean: 'senders' }).reduce(contribs, n).bytes).toEqual(a)
    const ug = new Float32Array(n)
    u.decodeResultInto(a, n, 5, ug, 0)
    for (let lo = 0; lo < n; lo += 32) {
      let s = 0
      for (let i = lo; i < Math.min(n, lo + 32); i++) s = Math.max(s, Math.abs(got[i]))
      for (let i = lo; i < Math.min(n, lo + 32); i++) expect(Math.abs(ug[i] - got[i])).toBeLessThanOrEqual(s / 127 / 2 + 1e-6)
    }
    expect(() => topkCodec({ chunk: 32, k: 3, bits: 2, resultBits: 8, mean: 'most' as 'senders' })).toThrow(/mean must be members or senders/)
  })

  it('codecOf builds both kinds; the q8 codec keeps the baseline bytes', () => {
    expect(codecOf({ kind: 'q8', block: 64 }).id).toBe('q8/64')
    expect(codecOf({ kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 }).id).toBe('topk/256/4/2/4')
    expect(() => codecOf({ kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 9 })).toThrow(/bits must be/)
    // 1,000 elements: 4 chunks of 256 (the last 232), 4 + 4 + 1 bytes each
    expect(codecOf({ kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 }).bytes(1000)).toBe(36)
  })
})
