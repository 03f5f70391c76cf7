/**
 * What the HTTP layer (server.ts) needs from whoever runs the model: the models it serves, and a
 * generation from prompt ids with tokens streamed back. swarm-generator.ts runs it through the
 * swarm; tests may run it against an in-process swarm or any stand-in.
 */
import type { TextTokenizer } from '../model/tokenizer.ts'
import type { SamplingOptions } from '../model/sampler.ts'
import type { PenaltyOptions } from './penalties.ts'

/** A model as the API lists it. */
export interface ApiModel {
  /** The id requests name (`model`), as the swarm's servers announce it. */
  id: string
  /** Positions one request may use, prompt and completion together (max_position_embeddings). */
  contextLength: number
  tokenizer: TextTokenizer
  /** Ids that end a generation and are not part of the answer (eos, end of turn). */
  eosTokenIds: readonly number[]
  /** Unix seconds, for GET /v1/models. */
  created: number
  /** `owned_by` in GET /v1/models. @default 'webswarm' */
  ownedBy?: string
}

export interface GenerateParams extends SamplingOptions, PenaltyOptions {
  /** Tokens to generate at most (≥ 1). */
  maxTokens: number
  /** Ids that end the generation; not emitted. */
  stopTokens: readonly number[]
}

/** Why a generation ended: a stop token, max tokens, or the caller's signal (a stop string matched, the client left). */
export type FinishReason = 'stop' | 'length' | 'aborted'

export interface GenerateResult {
  /** The tokens emitted (stop tokens excluded). */
  tokens: number[]
  finish: FinishReason
}

export interface Generator {
  models: () => readonly ApiModel[]
  /**
   * Samples after `prompt`, calling `onToken` with each token as it is chosen (awaited before the
   * next step). Stops early, freeing every server session, when `signal` aborts. Throws an
   * ApiError (errors.ts) when the swarm cannot run the model (503) before the first token.
   */
  generate: (model: string, prompt: readonly number[], params: GenerateParams, onToken: (id: number) => void | Promise<void>, signal: AbortSignal) => Promise<GenerateResult>
}
