import { tidy } from '../gpu/tensor.ts'
import { ModelArgumentError } from './errors.ts'
import type { CausalLM, KvCache } from './model.ts'
import { Sampler, type SamplingOptions } from './sampler.ts'
import { sliceRows } from './tensors.ts'

/**
 * One conversation with a local model: prefill, then one token at a time, with the KV cache
 * kept between calls. `feed` returns the logits after the last token fed.
 */
export class InferenceSession {
  readonly cache: KvCache

  constructor (readonly model: CausalLM, capacity: number) {
    this.cache = model.span.newCache(capacity)
  }

  get length (): number { return this.cache.length }

  /** Feeds tokens (prefill when several) and returns the next-token logits (V). */
  async feed (ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new ModelArgumentError('feed: no tokens')
    const m = this.model
    const logits = tidy(() => {
      const h = m.span.forward(m.embedding.forward(ids), this.cache)
      return m.head.forward(sliceRows(h, ids.length - 1, 1)) // (1, V): only the last row is needed
    })
    const out = await logits.readF32()
    logits.dispose()
    return out
  }

  dispose (): void {
    this.cache.dispose()
  }
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number
  /** Generation ends after emitting one of these. @default the config's eos_token_id */
  stopTokens?: readonly number[]
  /** Called with each new token as soon as it is sampled (streaming). */
  onToken?: (id: number) => void
}

/** Samples up to maxNewTokens after `prompt`; returns the new ids (including a final stop token). */
export async function generate (model: CausalLM, prompt: readonly number[], opts: GenerateOptions): Promise<number[]> {
  const n = opts.maxNewTokens
  if (!Number.isInteger(n) || n < 0) throw new ModelArgumentError(`max new tokens must be an integer ≥ 0, got ${n}`)
  if (prompt.length === 0) throw new ModelArgumentError('generate: empty prompt')
  if (n === 0) return []
  const sampler = new Sampler(opts)
  const stop = new Set(opts.stopTokens ?? model.config.eosTokenIds)
  const session = new InferenceSession(model, prompt.length + n)
  const out: number[] = []
  try {
    let logits = await session.feed(prompt)
    for (;;) {
      const id = sampler.sample(logits)
      out.push(id)
      opts.onToken?.(id)
      if (stop.has(id) || out.length >= n) break
      logits = await session.feed([id])
    }
  } finally {
    session.dispose()
  }
  return out
}
