/**
 * The outer optimizer and θ_global hashing. Runs on the host in plain f32 arithmetic (every
 * result rounded with Math.fround, no fused multiply-add), so every peer — any browser, any GPU —
 * computes bit-identical θ_global from the same inputs. P elements per round is cheap on a CPU.
 */
import { sha256 } from 'multiformats/hashes/sha2'
import { DEFAULT_OUTER_LR, DEFAULT_OUTER_MOMENTUM } from './constants.ts'
import { TrainArgumentError } from './errors.ts'

export interface OuterOptions {
  /** Outer learning rate. @default 0.7 (DiLoCo) */
  lr?: number
  /** Nesterov momentum. @default 0.9 (DiLoCo) */
  momentum?: number
  /**
   * Syncs over which the outer lr moves linearly from `lr` (sync 0) to `finalLr` (sync
   * `decaySyncs` and after; syncs counted by seq, every fragment's). @default 0 (constant lr)
   */
  decaySyncs?: number
  /** The outer lr at and after sync `decaySyncs`. @default lr */
  finalLr?: number
}

export function resolveOuter (o: OuterOptions = {}): Required<OuterOptions> {
  const lr = o.lr ?? DEFAULT_OUTER_LR
  const r = { lr, momentum: o.momentum ?? DEFAULT_OUTER_MOMENTUM, decaySyncs: o.decaySyncs ?? 0, finalLr: o.finalLr ?? lr }
  if (!(r.lr > 0 && Number.isFinite(r.lr))) throw new TrainArgumentError(`outer lr must be positive and finite, got ${r.lr}`)
  if (!(r.momentum >= 0 && r.momentum < 1)) throw new TrainArgumentError(`outer momentum must be in [0, 1), got ${r.momentum}`)
  if (!(Number.isInteger(r.decaySyncs) && r.decaySyncs >= 0)) throw new TrainArgumentError(`outer decaySyncs must be a non-negative integer, got ${r.decaySyncs}`)
  if (!(r.finalLr > 0 && Number.isFinite(r.finalLr))) throw new TrainArgumentError(`outer finalLr must be positive and finite, got ${r.finalLr}`)
  return r
}

/**
 * The outer lr of sync `seq`: `lr`, or with `decaySyncs` a linear move to `finalLr`. Plain double
 * arithmetic only (no Math.cos, whose last bit engines may differ in), so every member computes
 * the same lr and θ_global stays bit-identical.
 */
export function outerLrAt (o: Required<OuterOptions>, seq: number): number {
  if (o.decaySyncs === 0) return o.lr
  return o.lr + (o.finalLr - o.lr) * (Math.min(seq, o.decaySyncs) / o.decaySyncs)
}

/**
 * One Nesterov SGD step in place, as torch.optim.SGD(nesterov=True) with g = mean Δ:
 *   buf ← μ·buf + g;   θ ← θ − lr·(g + μ·buf)
 * theta (n), momentum (n), g (n); all f32.
 */
export function nesterovStep (theta: Float32Array, momentum: Float32Array, g: Float32Array, o: { lr: number, momentum: number }): void {
  const n = theta.length
  if (momentum.length !== n || g.length !== n) throw new TrainArgumentError(`nesterovStep: theta ${n}, momentum ${momentum.length}, g ${g.length} elements differ`)
  const f = Math.fround
  const mu = f(o.momentum)
  const lr = f(o.lr)
  for (let i = 0; i < n; i++) {
    const b = f(f(mu * momentum[i]) + g[i])
    momentum[i] = b
    const d = f(g[i] + f(mu * b))
    theta[i] = f(theta[i] - f(lr * d))
  }
}

/** Δ = θ_global − θ_local (n), f32. */
export function pseudoGradient (global: Float32Array, local: Float32Array): Float32Array {
  if (global.length !== local.length) throw new TrainArgumentError(`pseudoGradient: θ_global ${global.length} and θ_local ${local.length} elements differ`)
  const out = new Float32Array(global.length)
  for (let i = 0; i < out.length; i++) out[i] = global[i] - local[i]
  return out
}

/** Lowercase hex sha256 of an array's bytes (little-endian f32 on every platform we run). */
export async function hashBytes (a: ArrayBufferView): Promise<string> {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
  const d = await sha256.digest(bytes)
  let s = ''
  for (const b of d.digest) s += b.toString(16).padStart(2, '0')
  return s
}
