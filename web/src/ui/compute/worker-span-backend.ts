/**
 * A SpanBackend whose blocks run in a Web Worker (span-worker.ts): the page's block server calls
 * it like the in-page backend, and the page stays responsive while the worker computes. Caches are
 * handles to the worker's; their lengths follow the worker's answer to each forward.
 */
import type { ProgressFn } from '../../model/weights.ts'
import { SwarmArgumentError } from '../../swarm/errors.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../../swarm/server/backend.ts'
import { WorkerComputeError } from '../errors.ts'
import type { FromWorker, ToWorker } from './messages.ts'
import { spawnComputeWorker, WorkerChannel, type SpanWorker } from './worker-channel.ts'

class WorkerCache implements SpanCache {
  length = 0
  private freed = false
  constructor (readonly id: number, readonly capacity: number, readonly start: number, readonly end: number, private readonly post: (m: ToWorker) => void) {}
  dispose (): void {
    if (this.freed) return
    this.freed = true
    this.post({ type: 'free', cache: this.id })
  }
}

export interface WorkerSpanInit {
  url: string
  /** The files the relay lists for the model (model/source.ts UrlSourceOptions). @default undefined: probed */
  files?: readonly string[]
  model: string
  start: number
  end: number
  device: 'webgpu' | 'cpu'
  onProgress?: ProgressFn
  /** Starts the worker running span-worker.ts. @default a module Web Worker */
  spawn?: () => SpanWorker
  /** Forwards the block server may have queued here at once (SpanBackend.pipelineDepth). @default 1 */
  pipelineDepth?: number
}

export class WorkerSpanBackend implements SpanBackend {
  private constructor (private readonly channel: WorkerChannel, readonly model: string, readonly start: number, readonly end: number, readonly hiddenSize: number, readonly cacheBytesPerToken: number, readonly pipelineDepth: number) {}

  /** Starts a worker and loads blocks [start, end) in it; resolves once they are loaded. */
  static async load (init: WorkerSpanInit): Promise<WorkerSpanBackend> {
    const worker = init.spawn?.() ?? spawnComputeWorker(`span ${init.model} ${init.start}:${init.end}`)
    const { channel, loaded } = await WorkerChannel.open(worker,
      { type: 'load', id: 0, url: init.url, files: init.files, model: init.model, start: init.start, end: init.end, device: init.device },
      (m): m is Extract<FromWorker, { type: 'loaded' }> => m.type === 'loaded', `blocks ${init.start}:${init.end}`, init.onProgress)
    return new WorkerSpanBackend(channel, init.model, init.start, init.end, loaded.hiddenSize, loaded.cacheBytesPerToken, init.pipelineDepth ?? 1)
  }

  createCache (capacity: number, start: number, end: number): SpanCache {
    if (start < this.start || end > this.end || start >= end) throw new SwarmArgumentError(`blocks [${start}, ${end}) are not within [${this.start}, ${this.end})`)
    const c = new WorkerCache(this.channel.id(), capacity, start, end, m => { this.channel.post(m) })
    this.channel.post({ type: 'cache', cache: c.id, capacity, start, end })
    return c
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    const id = this.channel.id()
    const caches = steps.map(s => s.cache as WorkerCache)
    // Copies: the caller may hold views into larger buffers; the copies are moved, not cloned.
    const hidden = steps.map(s => s.hidden.slice())
    const reply = await this.channel.request(id, { type: 'forward', id, steps: steps.map((s, i) => ({ cache: caches[i].id, hidden: hidden[i], tokens: s.tokens })) }, hidden.map(h => h.buffer))
    if (reply.type === 'result') {
      reply.lengths.forEach((n, i) => { caches[i].length = n })
      return reply.outs
    }
    if (reply.type !== 'error') throw new WorkerComputeError(`unexpected ${reply.type} answer to a forward`)
    reply.lengths?.forEach((n, i) => { caches[i].length = n })
    throw new WorkerComputeError(`forward in the compute worker: ${reply.name}: ${reply.message}`)
  }

  /** Ends the worker: its weights and caches go with it. */
  dispose (): void {
    this.channel.close()
  }
}
