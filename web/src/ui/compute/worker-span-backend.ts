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

/** What the backend needs of a worker: a browser Worker, or Node's worker_threads behind an adapter (cli/span-thread.ts). */
export interface SpanWorker {
  onmessage: ((ev: { data: FromWorker }) => void) | null
  onerror: ((ev: { message: string }) => void) | null
  postMessage: (m: ToWorker, transfer: Transferable[]) => void
  terminate: () => void
}

export interface WorkerSpanInit {
  url: string
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
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void, reject: (e: Error) => void }>()
  private dead?: Error

  private constructor (private readonly worker: SpanWorker, readonly model: string, readonly start: number, readonly end: number, readonly hiddenSize: number, readonly cacheBytesPerToken: number, readonly pipelineDepth: number) {}

  /** Starts a worker and loads blocks [start, end) in it; resolves once they are loaded. */
  static async load (init: WorkerSpanInit): Promise<WorkerSpanBackend> {
    const worker = init.spawn?.() ?? new Worker(new URL('./span-worker.ts', import.meta.url), { type: 'module', name: `span ${init.model} ${init.start}:${init.end}` }) as unknown as SpanWorker
    try {
      const loaded = await new Promise<Extract<FromWorker, { type: 'loaded' }>>((resolve, reject) => {
        worker.onerror = ev => { reject(new WorkerComputeError(`the compute worker failed to start: ${ev.message}`)) }
        worker.onmessage = ev => {
          const m = ev.data
          if (m.type === 'progress') init.onProgress?.(m.progress)
          else if (m.type === 'loaded') resolve(m)
          else if (m.type === 'error') reject(new WorkerComputeError(`loading blocks ${init.start}:${init.end} in the worker: ${m.name}: ${m.message}`))
        }
        worker.postMessage({ type: 'load', id: 0, url: init.url, model: init.model, start: init.start, end: init.end, device: init.device } satisfies ToWorker, [])
      })
      const b = new WorkerSpanBackend(worker, init.model, init.start, init.end, loaded.hiddenSize, loaded.cacheBytesPerToken, init.pipelineDepth ?? 1)
      worker.onmessage = ev => { b.answer(ev.data) }
      worker.onerror = ev => { b.fail(new WorkerComputeError(`the compute worker crashed: ${ev.message}`)) }
      return b
    } catch (e) {
      worker.terminate()
      throw e
    }
  }

  private post = (m: ToWorker, transfer: Transferable[] = []): void => { this.worker.postMessage(m, transfer) }

  private answer (m: FromWorker): void {
    if (m.type === 'progress' || m.type === 'loaded') return
    const p = this.pending.get(m.id)
    if (p === undefined) return
    this.pending.delete(m.id)
    p.resolve(m)
  }

  private fail (e: Error): void {
    this.dead = e
    for (const p of this.pending.values()) p.reject(e)
    this.pending.clear()
  }

  createCache (capacity: number, start: number, end: number): SpanCache {
    if (start < this.start || end > this.end || start >= end) throw new SwarmArgumentError(`blocks [${start}, ${end}) are not within [${this.start}, ${this.end})`)
    const c = new WorkerCache(this.nextId++, capacity, start, end, this.post)
    this.post({ type: 'cache', cache: c.id, capacity, start, end })
    return c
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    if (this.dead !== undefined) throw this.dead
    const id = this.nextId++
    const caches = steps.map(s => s.cache as WorkerCache)
    // Copies: the caller may hold views into larger buffers; the copies are moved, not cloned.
    const hidden = steps.map(s => s.hidden.slice())
    const reply = await new Promise<FromWorker>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.post({ type: 'forward', id, steps: steps.map((s, i) => ({ cache: caches[i].id, hidden: hidden[i], tokens: s.tokens })) }, hidden.map(h => h.buffer))
    })
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
    this.fail(new WorkerComputeError('the compute worker was stopped'))
    this.worker.terminate()
  }
}
