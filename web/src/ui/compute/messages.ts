/**
 * The messages between the page and its compute worker (span-worker.ts): the page keeps the
 * network side of a block server or expert host (libp2p, sessions, routing) and the worker holds
 * the weights and KV caches and runs the blocks or experts, so that a long forward never blocks
 * the page. A worker holds either one span of blocks or one MoE layer's experts. Float32Array
 * buffers are transferred, not copied.
 */
import type { LoadProgress } from '../../model/weights.ts'

/** `files`: what the relay lists for the model at `url` (model/source.ts UrlSourceOptions). */
export type ToWorker =
  | { type: 'load', id: number, url: string, files?: readonly string[], model: string, start: number, end: number, device: 'webgpu' | 'cpu' }
  | { type: 'cache', cache: number, capacity: number, start: number, end: number }
  | { type: 'forward', id: number, steps: Array<{ cache: number, hidden: Float32Array, tokens: number }> }
  | { type: 'free', cache: number }
  | { type: 'load-experts', id: number, url: string, files?: readonly string[], model: string, layer: number, device: 'webgpu' | 'cpu' }
  /** Each item's rows (count × hidden) through expert `expert`. */
  | { type: 'experts', id: number, items: Array<{ expert: number, rows: Float32Array, count: number }> }

export type FromWorker =
  | { type: 'loaded', id: number, hiddenSize: number, cacheBytesPerToken: number }
  | { type: 'experts-loaded', id: number }
  | { type: 'progress', id: number, progress: LoadProgress }
  /** `lengths`: each step's cache length after the call (also after a failure). */
  | { type: 'result', id: number, outs: Float32Array[], lengths: number[] }
  | { type: 'error', id: number, name: string, message: string, lengths?: number[] }
