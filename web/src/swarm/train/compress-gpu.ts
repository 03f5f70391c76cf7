/**
 * Error feedback over the top-k codec on the GPU (shaders/topk_ef.wgsl): the selection, the codes
 * and the residual update run where the model trains, and the residual (kept as its carry β·e)
 * stays on the device between rounds. The host receives the codes and scales, packs the wire bytes
 * (topk.ts `packTopK`) and the decoded `sent`. Same contract as compress.ts's ErrorFeedback
 * (compress → commit | discard), same math bit for bit (gpu/cpu/topk-ef.ts; compress.ts adds
 * β·e + Δ with the same f32 roundings); only a code at an exact midpoint of the grid may differ
 * from the host encoder's, and the bytes always decode to `sent`.
 *
 * Δ = θ_global − θ_local is still formed on the host (θ_global is the host's, bit-identical
 * state) and uploaded: n floats up, 4n bytes of codes back, the ranking (O(chunk) a value) on the
 * device.
 *
 * Rounds may overlap (worker.ts `delayOuter` > 1), as on the host: a compress() before the last
 * one's commit() starts from that one's pending carry, commits come in the same order, and each
 * pending round holds one n-float carry on the device until it is committed or discarded.
 */
import type { GpuBackend } from '../../gpu/gpu-backend.ts'
import { readTopKEf, TOPK_EF_MAX_CHUNK, topkErrorFeedback } from '../../gpu/ops/topk-ef.ts'
import type { Tensor } from '../../gpu/tensor.ts'
import { TrainArgumentError } from './errors.ts'
import { packTopK, type TopKParams } from './topk.ts'

/** Whether a top-k codec of this chunk runs on the kernel (else compress.ts on the host). */
export function gpuTopKFits (chunk: number): boolean {
  return chunk <= TOPK_EF_MAX_CHUNK
}

export class GpuTopKFeedback {
  private carry: Tensor
  /** Carries of compressed rounds not committed yet, oldest first. */
  private pending: Tensor[] = []
  private readonly send: TopKParams

  constructor (private readonly gpu: GpuBackend, readonly n: number, codec: { chunk: number, k: number, bits: number }, readonly decay = 1) {
    if (!Number.isInteger(n) || n < 1) throw new TrainArgumentError(`GpuTopKFeedback: n must be a positive integer, got ${n}`)
    if (!gpuTopKFits(codec.chunk)) throw new TrainArgumentError(`GpuTopKFeedback: chunk ${codec.chunk} is above the kernel's ${TOPK_EF_MAX_CHUNK}`)
    if (!(decay > 0 && decay <= 1)) throw new TrainArgumentError(`GpuTopKFeedback: decay must be in (0, 1], got ${decay}`)
    this.send = { chunk: codec.chunk, k: codec.k, bits: codec.bits, zero: false }
    this.carry = gpu.tensor(new Float32Array(n), [n])
  }

  /** delta (n) → the codec's bytes of β·e + Δ, what they decode to and its L2 norm; e' waits for commit(). */
  async compress (delta: Float32Array): Promise<{ q: Uint8Array, sent: Float32Array, norm: number }> {
    if (delta.length !== this.n) throw new TrainArgumentError(`GpuTopKFeedback: delta has ${delta.length} elements, expected ${this.n}`)
    const d = this.gpu.tensor(delta, [this.n])
    const r = topkErrorFeedback(d, this.pending.at(-1) ?? this.carry, { ...this.send, decay: this.decay })
    d.dispose()
    let host
    try {
      host = await readTopKEf(r)
    } finally {
      r.sent.dispose(); r.codes.dispose(); r.chunks.dispose()
    }
    const bad = host.bad.indexOf(1)
    if (bad >= 0) { r.carry.dispose(); throw new TrainArgumentError(`GpuTopKFeedback: cannot encode Δ + residual: chunk ${bad} holds a non-finite value`) }
    this.pending.push(r.carry)
    let ss = 0
    for (let i = 0; i < this.n; i++) { const v = host.sent[i]; ss += v * v }
    return { q: packTopK(host.codes, host.scales, this.send), sent: host.sent, norm: Math.sqrt(ss) }
  }

  /** The round counted the oldest compressed contribution: its carry becomes the residual. */
  commit (): void {
    const next = this.pending.shift()
    if (next === undefined) return
    this.carry.dispose()
    this.carry = next
  }

  /**
   * The round went on without the oldest contribution: keep the old residual, and forget the
   * later ones too (their carries were built on it), as compress.ts does.
   */
  discard (): void {
    for (const p of this.pending) p.dispose()
    this.pending = []
  }

  /** A new state was adopted (snapshot, resync): nothing is owed from before it, nor pending. */
  reset (): void {
    this.discard()
    this.gpu.write(this.carry, new Float32Array(this.n))
  }

  /** β·e on the host (tests). */
  async carried (): Promise<Float32Array> {
    return await this.carry.readF32()
  }

  dispose (): void {
    this.discard()
    this.carry.dispose()
  }
}
