/**
 * CPU twin of shaders/attention*.wgsl: causal grouped-query attention as its textbook definition
 * (scores, explicit mask, softmax, weighted sum), not the online algorithm the kernels use.
 * Plain loops in double precision; the op layer rounds to f32. The finite-difference test uses
 * these f64 results directly.
 */

/** Sizes and options, all resolved (see ops/attention.ts for the defaults). */
export interface AttnDims {
  T: number //       query rows
  S: number //       k/v capacity rows
  Hq: number //      query heads
  Hkv: number //     key/value heads (divides Hq)
  D: number //       head dim
  kvLen: number //   valid k/v rows (≤ S)
  qOffset: number // absolute position of query row 0 (causal only)
  scale: number //   multiplies q·k
  causal: boolean
}

/** Query row t may attend to key row j. */
function visible (dims: AttnDims, t: number, j: number): boolean {
  return j < dims.kvLen && (!dims.causal || j <= dims.qOffset + t)
}

/** Head h reads kv head ⌊h·Hkv/Hq⌋ (HF repeat_kv). */
function kvHead (dims: AttnDims, h: number): number {
  return Math.floor((h * dims.Hkv) / dims.Hq)
}

/** P[j] = softmax over visible keys of scale·q_t·k_j for one (t, h); returns the log-sum-exp too. */
function probs (q: ArrayLike<number>, k: ArrayLike<number>, dims: AttnDims, t: number, h: number): { p: Float64Array, lse: number } {
  const { Hq, Hkv, D, kvLen, scale } = dims
  const kh = kvHead(dims, h)
  const s = new Float64Array(kvLen)
  let max = -Infinity
  for (let j = 0; j < kvLen; j++) {
    if (!visible(dims, t, j)) { s[j] = -Infinity; continue }
    let dot = 0
    for (let d = 0; d < D; d++) dot += q[(t * Hq + h) * D + d] * k[(j * Hkv + kh) * D + d]
    s[j] = scale * dot
    if (s[j] > max) max = s[j]
  }
  let sum = 0
  const p = new Float64Array(kvLen)
  for (let j = 0; j < kvLen; j++) {
    p[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - max)
    sum += p[j]
  }
  for (let j = 0; j < kvLen; j++) p[j] /= sum
  return { p, lse: max + Math.log(sum) }
}

/**
 * q (T, Hq, D), k/v (S, Hkv, D) → out (T, Hq, D), lse (Hq, T). The arithmetic of `probs` and the
 * weighted sum, in the same order, so the results are bit-equal to the textbook form
 * (test/gpu/attention-twin.test.ts); only the keys a row sees are visited (a masked key adds an
 * exact 0 to the softmax's sum and is skipped in the weighted sum), and the probabilities live in
 * one scratch row. It runs for every token of every session on a CPU block server
 * (BENCHMARKS.md § API: the per-(t, h) allocations and per-key mask calls were a fifth of a batched
 * decode step), and for every window a verifier recomputes (BENCHMARKS.md § Trust).
 *
 * Four keys go together, as in cpu/matmul-blocked.ts: four scores' dot products share each load
 * of q, and the weighted sum adds four keys' terms to an element per load and store of `out`.
 * Each score is still one sum over d in order, and each output element still adds its terms in
 * key order (a key whose probability is 0 falls back to the one-key step, which skips it), so
 * the results stay bit-equal; a dot product of D multiply-adds is one chain of dependent adds,
 * and four in flight instead of one are what made a 64-row window's attention ≈ 2× cheaper.
 */
export function attention (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dims: AttnDims): { out: Float64Array, lse: Float64Array } {
  const { T, Hq, Hkv, D, kvLen, qOffset, scale, causal } = dims
  const out = new Float64Array(T * Hq * D)
  const lse = new Float64Array(Hq * T)
  const p = new Float64Array(kvLen)
  const kvRow = Hkv * D
  for (let t = 0; t < T; t++) {
    // Keys [0, end) are visible to row t (see `visible`).
    const end = causal ? Math.min(kvLen, qOffset + t + 1) : kvLen
    for (let h = 0; h < Hq; h++) {
      const kv0 = kvHead(dims, h) * D
      const q0 = (t * Hq + h) * D
      let max = -Infinity
      let j = 0
      for (; j + 4 <= end; j += 4) {
        const k0 = j * kvRow + kv0
        const k1 = k0 + kvRow
        const k2 = k1 + kvRow
        const k3 = k2 + kvRow
        let dot0 = 0
        let dot1 = 0
        let dot2 = 0
        let dot3 = 0
        for (let d = 0; d < D; d++) {
          const qd = q[q0 + d]
          dot0 += qd * k[k0 + d]
          dot1 += qd * k[k1 + d]
          dot2 += qd * k[k2 + d]
          dot3 += qd * k[k3 + d]
        }
        const s0 = scale * dot0
        const s1 = scale * dot1
        const s2 = scale * dot2
        const s3 = scale * dot3
        p[j] = s0
        p[j + 1] = s1
        p[j + 2] = s2
        p[j + 3] = s3
        // In key order, as the one-key loop: the max of the same values either way.
        if (s0 > max) max = s0
        if (s1 > max) max = s1
        if (s2 > max) max = s2
        if (s3 > max) max = s3
      }
      for (; j < end; j++) {
        const k0 = j * kvRow + kv0
        let dot = 0
        for (let d = 0; d < D; d++) dot += q[q0 + d] * k[k0 + d]
        const s = scale * dot
        p[j] = s
        if (s > max) max = s
      }
      let sum = 0
      for (let i = 0; i < end; i++) {
        const e = p[i] === -Infinity ? 0 : Math.exp(p[i] - max)
        p[i] = e
        sum += e
      }
      for (let i = 0; i < end; i++) p[i] /= sum
      lse[h * T + t] = max + Math.log(sum)
      j = 0
      for (; j + 4 <= end; j += 4) {
        const p0 = p[j]
        const p1 = p[j + 1]
        const p2 = p[j + 2]
        const p3 = p[j + 3]
        const v0 = j * kvRow + kv0
        if (p0 === 0 || p1 === 0 || p2 === 0 || p3 === 0) {
          for (let i = 0; i < 4; i++) {
            const pi = p[j + i]
            if (pi === 0) continue
            const vi = v0 + i * kvRow
            for (let d = 0; d < D; d++) out[q0 + d] += pi * v[vi + d]
          }
          continue
        }
        const v1 = v0 + kvRow
        const v2 = v1 + kvRow
        const v3 = v2 + kvRow
        for (let d = 0; d < D; d++) {
          let o = out[q0 + d]
          o += p0 * v[v0 + d]
          o += p1 * v[v1 + d]
          o += p2 * v[v2 + d]
          o += p3 * v[v3 + d]
          out[q0 + d] = o
        }
      }
      for (; j < end; j++) {
        const pj = p[j]
        if (pj === 0) continue
        const v0 = j * kvRow + kv0
        for (let d = 0; d < D; d++) out[q0 + d] += pj * v[v0 + d]
      }
    }
  }
  return { out, lse }
}

/**
 * Gradients of sum(out ⊙ dout) by the softmax chain rule:
 * dV_j += P_tj·dO_t; dP_tj = dO_t·V_j; dS_tj = P_tj·(dP_tj − Σ_j' P_tj'·dP_tj');
 * dQ_t = scale·Σ_j dS_tj·K_j; dK_j += scale·dS_tj·Q_t (summed over the query heads sharing a kv head).
 * Rows of dk/dv at or past kvLen are zero.
 */
export function attentionBackward (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dout: ArrayLike<number>, dims: AttnDims): { dq: Float64Array, dk: Float64Array, dv: Float64Array } {
  const { T, S, Hq, Hkv, D, kvLen, scale } = dims
  const dq = new Float64Array(T * Hq * D)
  const dk = new Float64Array(S * Hkv * D)
  const dv = new Float64Array(S * Hkv * D)
  const dp = new Float64Array(kvLen)
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kh = kvHead(dims, h)
      const { p } = probs(q, k, dims, t, h)
      const row = (t * Hq + h) * D
      let pdp = 0
      for (let j = 0; j < kvLen; j++) {
        let dot = 0
        for (let d = 0; d < D; d++) dot += dout[row + d] * v[(j * Hkv + kh) * D + d]
        dp[j] = dot
        pdp += p[j] * dot
      }
      for (let j = 0; j < kvLen; j++) {
        if (p[j] === 0) continue
        const ds = p[j] * (dp[j] - pdp)
        const kv = (j * Hkv + kh) * D
        for (let d = 0; d < D; d++) {
          dv[kv + d] += p[j] * dout[row + d]
          dq[row + d] += scale * ds * k[kv + d]
          dk[kv + d] += scale * ds * q[row + d]
        }
      }
    }
  }
  return { dq, dk, dv }
}

/** cache (S, Hkv, D) rows [pos, pos + T) ← x (T, Hkv, D), in place; rowElems = Hkv·D. */
export function kvWrite (cache: Float32Array, x: Float32Array, pos: number, rowElems: number): void {
  cache.set(x, pos * rowElems)
}

/** kvWrite into an f16 cache (IEEE half bits): each value rounded to the nearest half, ties to even. */
export function kvWriteF16 (cache: Uint16Array, x: Float32Array, pos: number, rowElems: number): void {
  for (let i = 0; i < x.length; i++) cache[pos * rowElems + i] = f32ToF16(x[i])
}

/** Rounds half-way cases to the even neighbour (x ≥ 0). */
function roundHalfEven (x: number): number {
  const f = Math.floor(x)
  const r = x - f
  return r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f
}

/** number → IEEE half bits, round to nearest even; past the largest half (65504) → ±Infinity. */
export function f32ToF16 (v: number): number {
  if (Number.isNaN(v)) return 0x7e00
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0
  const a = Math.abs(v)
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24) // subnormal (0x400 = the smallest normal)
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e-- // log2 rounding near powers of two
  else if (2 ** (e + 1) <= a) e++
  let m = roundHalfEven((a / 2 ** e - 1) * 1024)
  if (m === 1024) { m = 0; e++ }
  if (e > 15) return sign | 0x7c00
  return sign | ((e + 15) << 10) | m
}
