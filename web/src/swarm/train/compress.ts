/**
 * Compression of pseudo-gradients with error feedback (Seide et al. 2014; Karimireddy et al.
 * 2019): what the codec drops this round is added to the next round's Δ, so over rounds nothing
 * is lost. The codec is the run's (codec.ts): q8 (per block: f32 scale, int8 values,
 * web/src/gpu/cpu/quant.ts) or top-k with low-bit values (topk.ts); both bit-identical on every
 * device.
 *
 * With a decay β < 1 (SparseLoCo, Sarfi et al. 2025) the residual is an error-feedback
 * *momentum*: e ← β·e + Δ, send codec(e), e ← e − sent. What is not sent decays instead of
 * waiting forever, and what is sent carries the recent rounds' direction, so the run applies the
 * mean with the outer lr and no Nesterov buffer of its own (RunSpec outer.momentum 0).
 *
 *   const ef = new ErrorFeedback(n, 64)             // q8 of block 64; or new ErrorFeedback(n, codec)
 *   const { q } = ef.compress(delta)    // bytes to send; residual held as pending
 *   ef.commit()                         // the round counted this contribution
 *   // or ef.discard(): the round went on without us, keep the old residual
 *
 * Rounds may overlap (worker.ts `delayOuter` > 1): a compress() before the last one's commit()
 * starts from that one's pending residual, and commits come in the same order.
 */
import { isValidQ8Block } from '../../gpu/cpu/quant.ts'
import { q8Codec, type PartCodec } from './codec.ts'
import { TrainArgumentError } from './errors.ts'

export class ErrorFeedback {
  /** (n) what earlier rounds' quantisation dropped. */
  residual: Float32Array
  /** Residuals of compressed rounds not committed yet, oldest first. */
  private pending: Float32Array[] = []

  readonly codec: PartCodec

  /**
   * `codec`: a q8 block (the baseline) or any run codec. `inModel`: the residual already lives in
   * the caller's local model (θ_local ← θ_global − residual after a sync: worker.ts
   * `localResidual`), so Δ includes it and compress() must not add it again. `decay`: β of
   * e ← β·e + Δ (1: classic error feedback; file comment).
   */
  constructor (readonly n: number, codec: number | PartCodec, readonly inModel = false, readonly decay = 1) {
    if (!Number.isInteger(n) || n < 1) throw new TrainArgumentError(`ErrorFeedback: n must be a positive integer, got ${n}`)
    if (!(decay > 0 && decay <= 1)) throw new TrainArgumentError(`ErrorFeedback: decay must be in (0, 1], got ${decay}`)
    if (inModel && decay !== 1) throw new TrainArgumentError('ErrorFeedback: a residual kept in the model cannot decay (decay must be 1)')
    if (typeof codec === 'number' && !isValidQ8Block(codec)) throw new TrainArgumentError(`ErrorFeedback: q8 block ${codec} is not a multiple of 4 in [32, 256]`)
    this.codec = typeof codec === 'number' ? q8Codec(codec) : codec
    this.residual = new Float32Array(n)
  }

  /**
   * delta (n) → the codec's bytes of (delta + residual); the new residual (what the codec
   * dropped) waits for commit(). `norm`: L2 norm of what is sent (decoded, summed in f64), taken in the
   * residual's pass instead of another pass over the bytes (the all-reduce sends it, reduce.ts).
   * Throws on non-finite input: a diverged worker must not send.
   */
  compress (delta: Float32Array): { q: Uint8Array, sent: Float32Array, norm: number } {
    if (delta.length !== this.n) throw new TrainArgumentError(`ErrorFeedback: delta has ${delta.length} elements, expected ${this.n}`)
    const target = new Float32Array(this.n)
    const residual = this.pending.at(-1) ?? this.residual
    if (this.inModel) target.set(delta)
    else if (this.decay === 1) for (let i = 0; i < this.n; i++) target[i] = delta[i] + residual[i]
    else {
      // f32 rounding after each operation, as the GPU kernel computes it (gpu/cpu/topk-ef.ts).
      const f = Math.fround
      const b = f(this.decay)
      for (let i = 0; i < this.n; i++) target[i] = f(b * residual[i]) + delta[i]
    }
    let enc: { bytes: Uint8Array, sent: Float32Array }
    try {
      enc = this.codec.encode(target)
    } catch (e) {
      throw new TrainArgumentError(`ErrorFeedback: cannot encode Δ + residual: ${(e as Error).message}`)
    }
    const q = enc.bytes
    const sent = enc.sent
    const next = new Float32Array(this.n)
    let ss = 0
    for (let i = 0; i < this.n; i++) { const v = sent[i]; next[i] = target[i] - v; ss += v * v }
    this.pending.push(next)
    return { q, sent, norm: Math.sqrt(ss) }
  }

  /** The round counted the oldest compressed contribution: keep what it dropped for next time. */
  commit (): void {
    const next = this.pending.shift()
    if (next !== undefined) this.residual = next
  }

  /** A new state was adopted (snapshot, resync): nothing is owed from before it, nor pending. */
  reset (): void {
    this.residual.fill(0)
    this.pending = []
  }

  /**
   * The round went on without the oldest contribution: forget it (its work is dropped, as in
   * DiLoCo), and the later ones, whose residuals were built on it.
   */
  discard (): void {
    this.pending = []
  }
}
