/**
 * int8 block compression of pseudo-gradients with error feedback (Seide et al. 2014; Karimireddy
 * et al. 2019): what quantisation drops this round is added to the next round's Δ, so over rounds
 * nothing is lost. The q8 format is web/src/gpu/cpu/quant.ts's (per block: f32 scale, int8 values),
 * bit-identical on every device.
 *
 *   const ef = new ErrorFeedback(n, 64)
 *   const { q } = ef.compress(delta)    // q8 bytes to send; residual held as pending
 *   ef.commit()                         // the round counted this contribution
 *   // or ef.discard(): the round went on without us, keep the old residual
 */
import { isValidQ8Block, quantizeQ8 } from '../../gpu/cpu/quant.ts'
import { dequantizeQ8Into } from './q8fast.ts'
import { TrainArgumentError } from './errors.ts'

export class ErrorFeedback {
  /** (n) what earlier rounds' quantisation dropped. */
  residual: Float32Array
  private pending: Float32Array | undefined

  constructor (readonly n: number, readonly block: number) {
    if (!Number.isInteger(n) || n < 1) throw new TrainArgumentError(`ErrorFeedback: n must be a positive integer, got ${n}`)
    if (!isValidQ8Block(block)) throw new TrainArgumentError(`ErrorFeedback: q8 block ${block} is not a multiple of 4 in [32, 256]`)
    this.residual = new Float32Array(n)
  }

  /**
   * delta (n) → q8 bytes of (delta + residual); the new residual (what q8 dropped) waits for
   * commit(). `norm`: L2 norm of what is sent (the dequantized q8, summed in f64), taken in the
   * residual's pass instead of another pass over the bytes (the all-reduce sends it, reduce.ts).
   * Throws on non-finite input: a diverged worker must not send.
   */
  compress (delta: Float32Array): { q: Uint8Array, sent: Float32Array, norm: number } {
    if (delta.length !== this.n) throw new TrainArgumentError(`ErrorFeedback: delta has ${delta.length} elements, expected ${this.n}`)
    const target = new Float32Array(this.n)
    for (let i = 0; i < this.n; i++) target[i] = delta[i] + this.residual[i]
    const q = quantizeQ8(target, this.block)
    const sent = new Float32Array(this.n)
    dequantizeQ8Into(q, this.n, this.block, sent)
    const next = new Float32Array(this.n)
    let ss = 0
    for (let i = 0; i < this.n; i++) { const v = sent[i]; next[i] = target[i] - v; ss += v * v }
    this.pending = next
    return { q, sent, norm: Math.sqrt(ss) }
  }

  /** The round counted the last compressed contribution: keep what it dropped for next time. */
  commit (): void {
    if (this.pending === undefined) return
    this.residual = this.pending
    this.pending = undefined
  }

  /** The round went on without this contribution: forget it (its work is dropped, as in DiLoCo). */
  discard (): void {
    this.pending = undefined
  }
}
