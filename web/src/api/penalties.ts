/**
 * OpenAI's frequency_penalty, presence_penalty and logit_bias, applied to one completion's logits
 * before its sampler picks a token: logit[j] += bias[j] − count_j · frequency_penalty −
 * [count_j > 0] · presence_penalty, where count_j is how often token j was generated so far in
 * this completion (the prompt does not count, as in OpenAI's API). The counts are per
 * generation, so requests whose logits rows went through one batched head (batched-head.ts)
 * never see each other's tokens.
 */

export interface PenaltyOptions {
  /** Subtracted once per earlier occurrence of the token in this completion. @default 0 */
  frequencyPenalty?: number
  /** Subtracted once from every token generated at least once in this completion. @default 0 */
  presencePenalty?: number
  /** Token id → added to its logit. @default none */
  logitBias?: ReadonlyMap<number, number>
}

/** One completion's penalties and the counts they read. */
export class LogitPenalties {
  private readonly frequency: number
  private readonly presence: number
  private readonly bias: ReadonlyMap<number, number>
  private readonly counts = new Map<number, number>()

  constructor (o: PenaltyOptions) {
    this.frequency = o.frequencyPenalty ?? 0
    this.presence = o.presencePenalty ?? 0
    this.bias = o.logitBias ?? new Map()
  }

  /** Whether anything would change a logit (else `apply` need not copy). */
  get active (): boolean {
    return this.frequency !== 0 || this.presence !== 0 || this.bias.size > 0
  }

  /** `logits` (V) with the penalties and bias applied, as a copy (the caller's row is left alone). */
  apply (logits: Float32Array): Float32Array {
    if (!this.active) return logits
    const out = logits.slice()
    for (const [id, b] of this.bias) if (id < out.length) out[id] += b
    for (const [id, n] of this.counts) out[id] -= n * this.frequency + this.presence
    return out
  }

  /** Counts a generated token. */
  record (id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1)
  }
}
