/**
 * CPU twin of shaders/topk_ef.wgsl: top-k selection per chunk, b-bit codes on the signed grid and
 * the error-feedback update in one pass, bit for bit as the kernel computes it.
 *
 * Per chunk j of elements [j·C, min(n, (j + 1)·C)), length L, kc = min(k, L):
 *   t      = f32(carry + Δ)                 what the codec sees (carry = β·e of the last round)
 *   s      = max |t| over the chunk          (the largest is always kept)
 *   kept   rank(i) < kc, rank(i) = #{m : |t_m| > |t_i|} + #{m < i : |t_m| = |t_i|} (ties: lower index)
 *   q      = #{m in 1..top : t ≥ f32(s · T_m)}, T_m = f32((2m − 1 − top) / top), top = 2^b − 1
 *            (round to the nearest level, halves up; 0 when s = 0)
 *   sent   = kept ? f32(s · LEVEL[q]) : 0,   LEVEL[q] = f32((2q − top) / top)
 *   carry' = f32(β · f32(t − sent))          next round's carry (β = 1: the plain residual)
 * Only single multiplies, adds and comparisons touch floats: no division, and no product feeds an
 * add the compiler could fuse (the kernel stages sent through workgroup memory). The selection and
 * levels are those of swarm/train/topk.ts; its encoder rounds v/s in f64, which can differ from the
 * thresholds here by one code at an exact midpoint, so the GPU path packs its own codes
 * (`packTopK`) and the bytes always decode to `sent`.
 */

/** Largest chunk the kernel holds in workgroup memory (the host codec takes any chunk). */
export const TOPK_EF_MAX_CHUNK = 1024

export interface TopKEfParams {
  /** Elements per chunk (1…TOPK_EF_MAX_CHUNK). */
  chunk: number
  /** Values kept per chunk (1…chunk). */
  k: number
  /** Bits per code (2…8). */
  bits: number
  /** β of carry' = β·e (0, 1]. */
  decay: number
}

export interface TopKEfResult {
  /** (n) β·(t − sent): the next round's carry. */
  carry: Float32Array
  /** (n) what the kept codes decode to, 0 elsewhere. */
  sent: Float32Array
  /** (n) q + 1 for a kept element, 0 for a dropped one. */
  codes: Uint32Array
  /** (chunks) the chunk's scale s. */
  scales: Float32Array
  /** (chunks) 1 where the chunk holds a non-finite t (its other outputs are then meaningless). */
  bad: Uint32Array
}

/** Why the parameters are not the kernel's, or undefined. */
export function topkEfProblem (n: number, p: TopKEfParams): string | undefined {
  if (!Number.isInteger(n) || n < 0) return `n must be a non-negative integer, got ${n}`
  if (!Number.isInteger(p.chunk) || p.chunk < 1 || p.chunk > TOPK_EF_MAX_CHUNK) return `chunk must be an integer in [1, ${TOPK_EF_MAX_CHUNK}], got ${p.chunk}`
  if (!Number.isInteger(p.k) || p.k < 1 || p.k > p.chunk) return `k must be an integer in [1, chunk = ${p.chunk}], got ${p.k}`
  if (!Number.isInteger(p.bits) || p.bits < 2 || p.bits > 8) return `bits must be an integer in [2, 8], got ${p.bits}`
  if (!(p.decay > 0 && p.decay <= 1)) return `decay must be in (0, 1], got ${p.decay}`
  return undefined
}

/**
 * The kernel's grid table for b bits: LEVEL[0..top] then T[1..top] (2^(b+1) − 1 f32). LEVEL is
 * swarm/train/topk.ts's signed grid (the same expression, so the same f32).
 */
export function topkEfGrid (bits: number): Float32Array {
  const top = 2 ** bits - 1
  const g = new Float32Array(2 * top + 1)
  for (let q = 0; q <= top; q++) g[q] = (2 * q - top) / top
  for (let m = 1; m <= top; m++) g[top + m] = (2 * m - 1 - top) / top
  return g
}

/** One compression round on the host, as the kernel computes it (file comment). */
export function topkErrorFeedback (delta: Float32Array, carry: Float32Array, p: TopKEfParams): TopKEfResult {
  const n = delta.length
  const why = topkEfProblem(n, p)
  if (why !== undefined) throw new RangeError(`topkErrorFeedback: ${why}`)
  if (carry.length !== n) throw new RangeError(`topkErrorFeedback: carry holds ${carry.length} elements, delta ${n}`)
  const f = Math.fround
  const top = 2 ** p.bits - 1
  const grid = topkEfGrid(p.bits)
  const beta = f(p.decay)
  const chunks = Math.ceil(n / p.chunk)
  const out: TopKEfResult = { carry: new Float32Array(n), sent: new Float32Array(n), codes: new Uint32Array(n), scales: new Float32Array(chunks), bad: new Uint32Array(chunks) }
  const t = new Float32Array(p.chunk)
  const a = new Float32Array(p.chunk)
  for (let j = 0; j < chunks; j++) {
    const lo = j * p.chunk
    const len = Math.min(p.chunk, n - lo)
    const kc = Math.min(p.k, len)
    let s = 0
    for (let i = 0; i < len; i++) {
      t[i] = carry[lo + i] + delta[lo + i]
      a[i] = Math.abs(t[i])
      if (!Number.isFinite(t[i])) out.bad[j] = 1
      s = Math.max(s, a[i])
    }
    out.scales[j] = s
    for (let i = 0; i < len; i++) {
      let rank = 0
      for (let m = 0; m < len; m++) if (a[m] > a[i] || (a[m] === a[i] && m < i)) rank++
      let sent = 0
      if (rank < kc) {
        let q = 0
        if (s > 0) for (let m = 1; m <= top; m++) if (t[i] >= f(s * grid[top + m])) q++
        sent = f(s * grid[q])
        out.codes[lo + i] = q + 1
      }
      out.sent[lo + i] = sent
      out.carry[lo + i] = f(beta * f(t[i] - sent))
    }
  }
  return out
}
