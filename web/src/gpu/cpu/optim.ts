/** CPU twins of shaders/optim.wgsl and shaders/optim_reduce.wgsl: plain loops. */
import type { Floats } from './elementwise.ts'

export interface AdamWOptions {
  /** Learning rate. */
  lr: number
  beta1: number
  beta2: number
  /** Added to √v̂ in the denominator. */
  eps: number
  /** Decoupled weight decay: p ← p·(1 − lr·weightDecay) before the Adam update. */
  weightDecay: number
  /** 1-based step count, for the bias corrections. */
  step: number
}

/** The step-dependent scalars, computed in f64 as PyTorch does in Python. */
export function adamwScalars (o: AdamWOptions): { decay: number, w1: number, c2: number, stepSize: number, bc2Sqrt: number } {
  return {
    decay: 1 - o.lr * o.weightDecay,
    w1: 1 - o.beta1,
    c2: 1 - o.beta2,
    stepSize: o.lr / (1 - o.beta1 ** o.step),
    bc2Sqrt: Math.sqrt(1 - o.beta2 ** o.step)
  }
}

/**
 * PyTorch AdamW, in place:
 *   p ← p·(1 − lr·wd);  m ← m + (1 − β1)(g − m);  v ← β2·v + (1 − β2)·g²;
 *   p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
 */
export function adamw (param: Floats, grad: Floats, m: Floats, v: Floats, o: AdamWOptions): void {
  const { decay, w1, c2, stepSize, bc2Sqrt } = adamwScalars(o)
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]
    m[i] = m[i] + w1 * (g - m[i])
    v[i] = v[i] * o.beta2 + c2 * g * g
    param[i] = param[i] * decay - stepSize * (m[i] / (Math.sqrt(v[i]) / bc2Sqrt + o.eps))
  }
}

/** Σ x² in f64. */
export function sumSquares (x: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i] * x[i]
  return s
}

/** The factor torch.nn.utils.clip_grad_norm_ scales by: min(1, maxNorm / (norm + 1e-6)). */
export function clipCoefficient (totalNorm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (totalNorm + CLIP_EPS))
}

/** torch.nn.utils.clip_grad_norm_'s guard against division by a zero norm. */
const CLIP_EPS = 1e-6
