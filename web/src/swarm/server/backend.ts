/**
 * What a block server computes with: a span [start, end) of one model's blocks on hidden states,
 * with a KV cache per session. `model-backend.ts` implements it on web/src/model (WebGPU or CPU
 * twins); tests implement it with small deterministic fakes.
 */

/** One session's KV cache across the span. */
export interface SpanCache {
  /** Positions held, in tokens. */
  readonly length: number
  /** Positions it can hold, in tokens. */
  readonly capacity: number
  /** Blocks [start, end) this cache (and its steps) cover: a sub-span of the backend's. */
  readonly start: number
  readonly end: number
  /** Frees the cache's memory; the cache is unusable afterwards. */
  dispose (): void
}

/** One session's step in a batch. */
export interface SpanStep {
  cache: SpanCache
  /** (T, C) f32 hidden states for positions [cache.length, cache.length + T). */
  hidden: Float32Array
  /** T */
  tokens: number
}

export interface SpanBackend {
  readonly model: string
  /** First block served. */
  readonly start: number
  /** One past the last block served. */
  readonly end: number
  /** C */
  readonly hiddenSize: number
  /** KV-cache bytes one token position takes in one block. */
  readonly cacheBytesPerToken: number
  /**
   * Forwards the block server may hand over before the first returns (they run in order). A
   * backend that computes on another thread (a worker) takes 2: while it runs one batch, the
   * server's thread answers the previous batch's sessions and collects the next. @default 1
   */
  readonly pipelineDepth?: number
  /**
   * Which of the backend's independent compute lanes holds `cache` (copies of the span on
   * separate threads, spread-span.ts): the block server batches each lane's steps apart, so
   * every forward is one lane's sessions together (M rows in one copy, not M / lanes in each).
   * @default one lane
   */
  lane?: (cache: SpanCache) => number
  /** A fresh, empty cache of `capacity` positions for blocks [start, end) ⊆ [this.start, this.end). */
  createCache (capacity: number, start: number, end: number): SpanCache
  /**
   * Runs each step's blocks [cache.start, cache.end) on its hidden states, extending each step's cache by its T positions.
   * Returns (T, C) per step, in order. One call may batch several sessions' steps (one GPU
   * submission, one readback).
   */
  forward (steps: readonly SpanStep[]): Promise<Float32Array[]>
  /** Frees weights. */
  dispose (): void
}
