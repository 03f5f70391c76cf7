/**
 * Generation through the swarm: embedding and LM head run here (ClientEnds), the blocks on the
 * servers of an InferenceSession. Prefill in one step, then one token per step; tokens stream to
 * `onToken` as they are sampled.
 */
import { Sampler, type SamplingOptions } from '../../model/sampler.ts'
import { SessionRewoundError, SwarmArgumentError } from '../errors.ts'
import type { InferenceClient } from './client.ts'
import type { InferenceSession } from './session.ts'

/** The model's two ends, on the client. */
export interface ClientEnds {
  /** ids (T) → hidden states (T, C). */
  embed (ids: readonly number[]): Promise<Float32Array>
  /** Final norm + LM head on one row: hidden (C) → logits (V). */
  logits (hidden: Float32Array): Promise<Float32Array>
  /** End-of-sequence ids (generation stops after emitting one). */
  readonly eosTokenIds: readonly number[]
}

export interface SwarmGenerateOptions extends SamplingOptions {
  maxNewTokens: number
  /** @default ends.eosTokenIds */
  stopTokens?: readonly number[]
  /** Called with each token as it is sampled; a returned promise is awaited before the next step. */
  onToken?: (id: number) => void | Promise<void>
  /** Called once the session is open (e.g. to show the route, or to kill a server in a test). */
  onSession?: (s: InferenceSession) => void
  /**
   * Verification caught a liar (client/verify.ts): tokens sampled from its outputs are withdrawn
   * and sampled again; called with how many of the streamed tokens still hold. @default nothing
   */
  onRewind?: (kept: number) => void
}

export interface SwarmGenerateResult {
  tokens: number[]
  /** Wall time of the prompt's step, ms. */
  prefillMs: number
  /** Wall time of each decode step, ms. */
  decodeMs: number[]
  session: InferenceSession
}

/** Samples up to maxNewTokens after `prompt`, running the blocks on the swarm. */
export async function swarmGenerate (client: InferenceClient, ends: ClientEnds, prompt: readonly number[], opts: SwarmGenerateOptions): Promise<SwarmGenerateResult> {
  const n = opts.maxNewTokens
  if (!Number.isInteger(n) || n < 1) throw new SwarmArgumentError(`max new tokens must be an integer ≥ 1, got ${n}`)
  if (prompt.length === 0) throw new SwarmArgumentError('generate: empty prompt')
  const C = client.hiddenSize
  const sampler = new Sampler(opts)
  const stop = new Set(opts.stopTokens ?? ends.eosTokenIds)
  const session = await client.openSession(prompt.length + n)
  opts.onSession?.(session)
  const tokens: number[] = []
  const decodeMs: number[] = []
  /** Drops the tokens sampled from outputs at the rewound position or later; the ids to step again. */
  const rewound = (e: SessionRewoundError): number[] => {
    // Token k was sampled from the output at position P − 1 + k.
    const kept = Math.max(0, Math.min(tokens.length, e.position - prompt.length + 1))
    if (kept < tokens.length) {
      tokens.length = kept
      opts.onRewind?.(kept)
    }
    return [...prompt, ...tokens].slice(e.position)
  }
  /**
   * Steps `ids` (the next positions); when verification rebuilt the session at an earlier
   * position p, the tokens sampled from outputs at p and later are dropped, and the known ids
   * from p on are stepped again. Each rewind bans a liar, so they are few.
   */
  const advance = async (ids: readonly number[]): Promise<Float32Array> => {
    for (let rewinds = 0; ; rewinds++) {
      try {
        return await session.step(await ends.embed(ids), ids.length)
      } catch (e) {
        if (!(e instanceof SessionRewoundError) || rewinds >= client.maxFailovers) throw e
        ids = rewound(e)
      }
    }
  }
  /** The final check of every unchecked position; the output to sample on from when it rewound. */
  const settle = async (): Promise<Float32Array | undefined> => {
    try {
      await session.settle()
      return undefined
    } catch (e) {
      if (!(e instanceof SessionRewoundError)) throw e
      return await advance(rewound(e))
    }
  }
  try {
    let t0 = performance.now()
    let h = await advance(prompt)
    const prefillMs = performance.now() - t0
    for (;;) {
      const id = sampler.sample(await ends.logits(h.subarray(h.length - C)))
      tokens.push(id)
      await opts.onToken?.(id)
      if (stop.has(id) || tokens.length >= n) {
        // No completion leaves with positions unchecked; a rewind there resumes sampling.
        const again = await settle()
        if (again === undefined) break
        h = again
        continue
      }
      t0 = performance.now()
      h = await advance([id])
      decodeMs.push(performance.now() - t0)
    }
    return { tokens, prefillMs, decodeMs, session }
  } finally {
    await session.close()
  }
}
