import { Rng } from '../util/rng.ts'
import { ModelArgumentError } from './errors.ts'

export interface SamplingOptions {
  /** 0 = greedy (argmax, ties → lower id). @default 0 */
  temperature?: number
  /** Keep the k most likely tokens (0 = all). @default 0 */
  topK?: number
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). @default 1 */
  topP?: number
  /** Seed of the sampling RNG (same seed, same logits → same tokens). @default 0 */
  seed?: number
}

/** Index of the largest value; ties go to the lowest index (as torch.argmax on CPU). */
export function argmax (logits: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i
  return best
}

/** Picks next tokens from logits rows: greedy, or temperature with top-k / top-p, seeded. */
export class Sampler {
  readonly temperature: number
  readonly topK: number
  readonly topP: number
  private readonly rng: Rng

  constructor (opts: SamplingOptions = {}) {
    this.temperature = opts.temperature ?? 0
    this.topK = opts.topK ?? 0
    this.topP = opts.topP ?? 1
    if (!(this.temperature >= 0) || !Number.isFinite(this.temperature)) throw new ModelArgumentError(`temperature must be ≥ 0, got ${opts.temperature}`)
    if (!Number.isInteger(this.topK) || this.topK < 0) throw new ModelArgumentError(`top-k must be an integer ≥ 0, got ${opts.topK}`)
    if (!(this.topP > 0 && this.topP <= 1)) throw new ModelArgumentError(`top-p must be in (0, 1], got ${opts.topP}`)
    this.rng = new Rng(opts.seed ?? 0)
  }

  sample (logits: ArrayLike<number>): number {
    if (logits.length === 0) throw new ModelArgumentError('sample: empty logits')
    if (this.temperature === 0) return argmax(logits)
    // Candidates sorted by logit (desc), ties by id, as a stable order for reproducibility.
    let ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => (logits[b] - logits[a]) || (a - b))
    if (this.topK > 0) ids = ids.slice(0, this.topK)
    const max = logits[ids[0]]
    let probs = ids.map(i => Math.exp((logits[i] - max) / this.temperature))
    let sum = probs.reduce((a, b) => a + b, 0)
    if (this.topP < 1) {
      let acc = 0
      let keep = ids.length
      for (let j = 0; j < ids.length; j++) {
        acc += probs[j] / sum
        if (acc >= this.topP) { keep = j + 1; break }
      }
      ids = ids.slice(0, keep)
      probs = probs.slice(0, keep)
      sum = probs.reduce((a, b) => a + b, 0)
    }
    let r = this.rng.next() * sum
    for (let j = 0; j < ids.length; j++) {
      r -= probs[j]
      if (r < 0) return ids[j]
    }
    return ids[ids.length - 1]
  }
}
