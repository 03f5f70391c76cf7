/**
 * CPU twins of the Mixture-of-Experts kernels (shaders/moe_*.wgsl): plain loops, the definition
 * of each op and the `--device cpu` path. Accumulation is in JS numbers (f64), results are stored
 * as f32. Index inputs are assumed validated by the caller (web/src/gpu/ops/moe.ts).
 *
 * Layout (HF Mixtral, MixtralSparseMoeBlock): T tokens, E experts, k choices per token; the T·k
 * "slots" are numbered s = t·k + j; the dispatch sorts slots by expert into N = T·k "rows".
 */
import type { WeightDType } from '../dtype.ts'
import { dequantize } from './dequant.ts'
import { sigmoid } from './elementwise.ts'

export interface RouterOut {
  weights: Float32Array // (T, k)
  experts: Int32Array // (T, k)
}

/**
 * Softmax over experts, top-k, optional renormalisation of the k weights to sum 1.
 * Selection compares the logits (softmax is monotone, so this is top-k of the exact
 * probabilities); ties go to the lower expert index; NaN logits are never chosen before a
 * number. `renormalize` = true is Mixtral; false is Qwen2-MoE's norm_topk_prob=false.
 */
export function routerTopK (logits: Float32Array, T: number, E: number, k: number, renormalize: boolean): RouterOut {
  const weights = new Float32Array(T * k)
  const experts = new Int32Array(T * k)
  for (let t = 0; t < T; t++) {
    const row = t * E
    let m = logits[row]
    for (let e = 1; e < E; e++) m = Math.max(m, logits[row + e])
    let s = 0
    for (let e = 0; e < E; e++) s += Math.exp(logits[row + e] - m)
    // Pick j-th: the largest (logit, −index) strictly below the (j−1)-th pick in that order.
    let pv = 0
    let pi = -1
    let sel = 0
    for (let j = 0; j < k; j++) {
      let best = -1
      let bv = 0
      for (let e = 0; e < E; e++) {
        const l = logits[row + e]
        const admissible = j === 0 || l < pv || (l === pv && e > pi)
        if (admissible && (best < 0 || l > bv)) { best = e; bv = l }
      }
      if (best < 0) best = firstUnpicked(experts, t * k, j, E) // only NaN rows get here
      pv = bv
      pi = best
      experts[t * k + j] = best
      const p = Math.exp(logits[row + best] - m) / s
      weights[t * k + j] = p
      sel += p
    }
    if (renormalize) for (let j = 0; j < k; j++) weights[t * k + j] = weights[t * k + j] / sel
  }
  return { weights, experts }
}

/** Lowest expert not yet in experts[base .. base+j): keeps k distinct choices for NaN rows. */
function firstUnpicked (experts: Int32Array, base: number, j: number, E: number): number {
  for (let e = 0; e < E; e++) {
    let used = false
    for (let i = 0; i < j; i++) if (experts[base + i] === e) used = true
    if (!used) return e
  }
  return 0
}

/**
 * d logits of L = Σ_j dWeights[t,j]·weights[t,j] (selection not differentiated).
 * With p = softmax(l), Z = Σ_j p[e_j] (renormalised) or 1, gw = Σ_j g_j·p[e_j]/Z,
 * G_m = Σ_{j: e_j = m} g_j and c_m = #{j: e_j = m} (renormalised) or 1:
 *   dl_m = p_m / Z · (G_m − c_m·gw).
 */
export function routerTopKBackward (logits: Float32Array, experts: Int32Array, dWeights: Float32Array, T: number, E: number, k: number, renormalize: boolean): Float32Array {
  const dl = new Float32Array(T * E)
  const p = new Float64Array(E)
  for (let t = 0; t < T; t++) {
    const row = t * E
    let m = logits[row]
    for (let e = 1; e < E; e++) m = Math.max(m, logits[row + e])
    let s = 0
    for (let e = 0; e < E; e++) s += Math.exp(logits[row + e] - m)
    for (let e = 0; e < E; e++) p[e] = Math.exp(logits[row + e] - m) / s
    let z = 1
    if (renormalize) {
      z = 0
      for (let j = 0; j < k; j++) z += p[experts[t * k + j]]
    }
    let gw = 0
    for (let j = 0; j < k; j++) gw += dWeights[t * k + j] * p[experts[t * k + j]] / z
    for (let e = 0; e < E; e++) {
      let g = 0
      let c = renormalize ? 0 : 1
      for (let j = 0; j < k; j++) {
        if (experts[t * k + j] === e) { g += dWeights[t * k + j]; if (renormalize) c++ }
      }
      dl[row + e] = p[e] / z * (g - c * gw)
    }
  }
  return dl
}

export interface DispatchOut {
  order: Int32Array // (N): order[r] = slot of row r
  slotRow: Int32Array // (N): row of slot s (inverse of order)
  offsets: Int32Array // (E + 1): rows of expert e are [offsets[e], offsets[e+1])
}

/** Stable counting sort of the N = T·k slots by expert: histogram, exclusive scan, scatter. */
export function moeDispatch (experts: Int32Array, E: number): DispatchOut {
  const n = experts.length
  const offsets = new Int32Array(E + 1)
  for (let s = 0; s < n; s++) offsets[experts[s] + 1]++
  for (let e = 0; e < E; e++) offsets[e + 1] += offsets[e]
  const next = offsets.slice(0, E)
  const order = new Int32Array(n)
  const slotRow = new Int32Array(n)
  for (let s = 0; s < n; s++) {
    const r = next[experts[s]]++
    order[r] = s
    slotRow[s] = r
  }
  return { order, slotRow, offsets }
}

/** xs[r, :] = x[⌊order[r] / k⌋, :]     x: (T, C), xs: (N, C) */
export function moeGather (x: Float32Array, order: Int32Array, C: number, k: number): Float32Array {
  const n = order.length
  const xs = new Float32Array(n * C)
  for (let r = 0; r < n; r++) {
    const t = Math.floor(order[r] / k)
    for (let c = 0; c < C; c++) xs[r * C + c] = x[t * C + c]
  }
  return xs
}

/** dx[t, :] = Σ_j dxs[slotRow[t·k + j], :]     dxs: (N, C), dx: (T, C) */
export function moeGatherBackward (dxs: Float32Array, slotRow: Int32Array, T: number, C: number, k: number): Float32Array {
  const dx = new Float32Array(T * C)
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let acc = 0
      for (let j = 0; j < k; j++) acc += dxs[slotRow[t * k + j] * C + c]
      dx[t * C + c] = acc
    }
  }
  return dx
}

/**
 * Grouped SwiGLU expert MLP: for each expert e and row r in [offsets[e], offsets[e+1]),
 *   y[r] = w2[e]·(silu(w1[e]·x[r]) ⊙ (w3[e]·x[r])).
 * xs: (N, C), offsets: (E + 1), w1, w3: (E, I, C), w2: (E, C, I) → ys (N, C).
 * Rows outside [offsets[0], offsets[E]) belong to no local expert and get 0.
 */
export function expertFFN (xs: Float32Array, offsets: Int32Array, w1: Float32Array, w3: Float32Array, w2: Float32Array, N: number, C: number, I: number, E: number): Float32Array {
  const ys = new Float32Array(N * C)
  const h = new Float64Array(I)
  for (let e = 0; e < E; e++) {
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      for (let i = 0; i < I; i++) {
        let a = 0
        let b = 0
        for (let c = 0; c < C; c++) {
          a += w1[(e * I + i) * C + c] * xs[r * C + c]
          b += w3[(e * I + i) * C + c] * xs[r * C + c]
        }
        h[i] = a * sigmoid(a) * b
      }
      for (let c = 0; c < C; c++) {
        let y = 0
        for (let i = 0; i < I; i++) y += w2[(e * C + c) * I + i] * h[i]
        ys[r * C + c] = y
      }
    }
  }
  return ys
}

/** Expert weights in their file encoding: the bytes of an (E, rows, K) stack and its dtype. */
export interface PackedWeights {
  dtype: WeightDType
  bytes: Uint8Array
}

/**
 * expertFFN with each weight stack in a weight dtype (f32, f16, bf16, GGUF blocks): the stacks
 * decoded to f32 (cpu/dequant.ts), then the f32 definition above.
 */
export function expertFFNWeights (xs: Float32Array, offsets: Int32Array, w1: PackedWeights, w3: PackedWeights, w2: PackedWeights, N: number, C: number, I: number, E: number): Float32Array {
  const n = E * I * C
  return expertFFN(xs, offsets, dequantize(w1.dtype, w1.bytes, n), dequantize(w3.dtype, w3.bytes, n), dequantize(w2.dtype, w2.bytes, n), N, C, I, E)
}

export interface ExpertFFNGrads {
  dxs: Float32Array // (N, C)
  dw1: Float32Array // (E, I, C)
  dw3: Float32Array // (E, I, C)
  dw2: Float32Array // (E, C, I)
}

/** Gradients of L = Σ dys ⊙ expertFFN(xs, …), recomputing the hidden activations. */
export function expertFFNBackward (xs: Float32Array, offsets: Int32Array, w1: Float32Array, w3: Float32Array, w2: Float32Array, dys: Float32Array, N: number, C: number, I: number, E: number): ExpertFFNGrads {
  const dxs = new Float32Array(N * C)
  const dw1 = new Float64Array(E * I * C)
  const dw3 = new Float64Array(E * I * C)
  const dw2 = new Float64Array(E * C * I)
  const da = new Float64Array(I)
  const db = new Float64Array(I)
  for (let e = 0; e < E; e++) {
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      for (let i = 0; i < I; i++) {
        let a = 0
        let b = 0
        for (let c = 0; c < C; c++) {
          a += w1[(e * I + i) * C + c] * xs[r * C + c]
          b += w3[(e * I + i) * C + c] * xs[r * C + c]
        }
        let dh = 0
        for (let c = 0; c < C; c++) dh += dys[r * C + c] * w2[(e * C + c) * I + i]
        const s = sigmoid(a)
        const h = a * s * b
        for (let c = 0; c < C; c++) dw2[(e * C + c) * I + i] += dys[r * C + c] * h
        da[i] = dh * b * s * (1 + a * (1 - s)) // silu'(a) = s·(1 + a·(1 − s))
        db[i] = dh * a * s
      }
      for (let c = 0; c < C; c++) {
        let dx = 0
        for (let i = 0; i < I; i++) {
          dx += da[i] * w1[(e * I + i) * C + c] + db[i] * w3[(e * I + i) * C + c]
          dw1[(e * I + i) * C + c] += da[i] * xs[r * C + c]
          dw3[(e * I + i) * C + c] += db[i] * xs[r * C + c]
        }
        dxs[r * C + c] = dx
      }
    }
  }
  return { dxs, dw1: Float32Array.from(dw1), dw3: Float32Array.from(dw3), dw2: Float32Array.from(dw2) }
}

/** out[t, :] = Σ_j weights[t, j]·ys[slotRow[t·k + j], :]     ys: (N, C), out: (T, C) */
export function moeCombine (ys: Float32Array, slotRow: Int32Array, weights: Float32Array, T: number, C: number, k: number): Float32Array {
  const out = new Float32Array(T * C)
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let acc = 0
      for (let j = 0; j < k; j++) acc += weights[t * k + j] * ys[slotRow[t * k + j] * C + c]
      out[t * C + c] = acc
    }
  }
  return out
}

export interface CombineGrads {
  dys: Float32Array // (N, C)
  dWeights: Float32Array // (T, k)
}

/** dys[slotRow[s], :] = weights[s]·dout[t, :];  dWeights[s] = dout[t, :]·ys[slotRow[s], :]  (s = t·k + j) */
export function moeCombineBackward (ys: Float32Array, slotRow: Int32Array, weights: Float32Array, dout: Float32Array, T: number, C: number, k: number): CombineGrads {
  const dys = new Float32Array(T * k * C)
  const dWeights = new Float32Array(T * k)
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const s = t * k + j
      const r = slotRow[s]
      let dot = 0
      for (let c = 0; c < C; c++) {
        dys[r * C + c] = weights[s] * dout[t * C + c]
        dot += dout[t * C + c] * ys[r * C + c]
      }
      dWeights[s] = dot
    }
  }
  return { dys, dWeights }
}
