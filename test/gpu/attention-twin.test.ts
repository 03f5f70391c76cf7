/**
 * The CPU attention twin (web/src/gpu/cpu/attention.ts) visits only the keys a row sees and keeps
 * its probabilities in one scratch row; its results must stay bit-equal to the textbook form
 * below (explicit mask, softmax, weighted sum), which the block server's batched and unbatched
 * runs both rely on (greedy tokens must not depend on batching).
 */
import { describe, expect, it } from 'vitest'
import { attention, type AttnDims } from '../../web/src/gpu/cpu/attention.ts'

/** The definition, written out as plainly as possible. */
function textbook (q: Float32Array, k: Float32Array, v: Float32Array, dims: AttnDims): { out: Float64Array, lse: Float64Array } {
  const { T, Hq, Hkv, D, kvLen, qOffset, scale, causal } = dims
  const out = new Float64Array(T * Hq * D)
  const lse = new Float64Array(Hq * T)
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor((h * Hkv) / Hq)
      const s = new Float64Array(kvLen)
      let max = -Infinity
      for (let j = 0; j < kvLen; j++) {
        if (causal && j > qOffset + t) { s[j] = -Infinity; continue }
        let dot = 0
        for (let d = 0; d < D; d++) dot += q[(t * Hq + h) * D + d] * k[(j * Hkv + kh) * D + d]
        s[j] = scale * dot
        if (s[j] > max) max = s[j]
      }
      const p = new Float64Array(kvLen)
      let sum = 0
      for (let j = 0; j < kvLen; j++) {
        p[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - max)
        sum += p[j]
      }
      for (let j = 0; j < kvLen; j++) p[j] /= sum
      lse[h * T + t] = max + Math.log(sum)
      for (let j = 0; j < kvLen; j++) {
        if (p[j] === 0) continue
        for (let d = 0; d < D; d++) out[(t * Hq + h) * D + d] += p[j] * v[(j * Hkv + kh) * D + d]
      }
    }
  }
  return { out, lse }
}

/** Deterministic values in [-a, a). */
function random (n: number, seed: number, a = 1): Float32Array {
  let x = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    return (x / 2 ** 32 * 2 - 1) * a
  })
}

describe('CPU attention twin', () => {
  const cases: Array<Omit<AttnDims, 'scale'> & { scale?: number, a?: number }> = [
    { T: 1, S: 40, Hq: 4, Hkv: 2, D: 24, kvLen: 17, qOffset: 16, causal: true }, // one decode row over a cache
    { T: 5, S: 9, Hq: 3, Hkv: 1, D: 7, kvLen: 8, qOffset: 3, causal: true }, // odd sizes, part of the cache unused
    { T: 6, S: 6, Hq: 2, Hkv: 2, D: 5, kvLen: 6, qOffset: 0, causal: true }, // prefill: keys hidden from earlier rows
    { T: 7, S: 3, Hq: 4, Hkv: 2, D: 6, kvLen: 3, qOffset: 0, causal: false }, // more queries than keys
    { T: 3, S: 33, Hq: 6, Hkv: 3, D: 13, kvLen: 33, qOffset: 30, causal: true, a: 40 }, // large scores: some probabilities underflow to 0
    { T: 2, S: 4, Hq: 1, Hkv: 1, D: 1, kvLen: 0, qOffset: 0, causal: false }, // nothing to attend to
    // A verifier's 64-position window (BENCHMARKS.md § Trust) on byte-llama's heads: the four-key groups and their tails.
    { T: 64, S: 150, Hq: 4, Hkv: 2, D: 24, kvLen: 144, qOffset: 80, causal: true },
    // Large scores over many keys: four-key groups with some probabilities 0 take the one-key step.
    { T: 9, S: 40, Hq: 2, Hkv: 1, D: 8, kvLen: 37, qOffset: 28, causal: true, a: 40 }
  ]
  cases.forEach((c, i) => {
    it(`equals the textbook form bit for bit: T ${c.T}, S ${c.S}, heads ${c.Hq}/${c.Hkv}, D ${c.D}, kvLen ${c.kvLen}, qOffset ${c.qOffset}${c.causal ? ', causal' : ''}`, () => {
      const dims: AttnDims = { ...c, scale: c.scale ?? 1 / Math.sqrt(c.D) }
      const q = random(c.T * c.Hq * c.D, 3 * i + 1, c.a)
      const k = random(c.S * c.Hkv * c.D, 3 * i + 2, c.a)
      const v = random(c.S * c.Hkv * c.D, 3 * i + 3)
      const want = textbook(q, k, v, dims)
      const got = attention(q, k, v, dims)
      expect(Array.from(got.out)).toEqual(Array.from(want.out))
      expect(Array.from(got.lse)).toEqual(Array.from(want.lse))
    })
  })
})
