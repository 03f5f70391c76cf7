/**
 * Request/answer bookkeeping over one compute worker (span-worker.ts), shared by the block
 * backend (worker-span-backend.ts) and the expert layer (worker-expert-layer.ts): a load that
 * resolves on the worker's "loaded" message (progress passed on), then numbered requests whose
 * answers or a crash settle them.
 */
import type { ProgressFn } from '../../model/weights.ts'
import { WorkerComputeError } from '../errors.ts'
import type { FromWorker, ToWorker } from './messages.ts'

/** What a channel needs of a worker: a browser Worker, or Node's worker_threads behind an adapter (cli/span-thread.ts). */
export interface SpanWorker {
  onmessage: ((ev: { data: FromWorker }) => void) | null
  onerror: ((ev: { message: string }) => void) | null
  postMessage: (m: ToWorker, transfer: Transferable[]) => void
  terminate: () => void
}

/** A module Web Worker running span-worker.ts, named for devtools. */
export function spawnComputeWorker (name: string): SpanWorker {
  return new Worker(new URL('./span-worker.ts', import.meta.url), { type: 'module', name }) as unknown as SpanWorker
}

export class WorkerChannel {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void, reject: (e: Error) => void }>()
  private dead?: Error

  private constructor (private readonly worker: SpanWorker) {
    worker.onmessage = ev => { this.answer(ev.data) }
    worker.onerror = ev => { this.fail(new WorkerComputeError(`the compute worker crashed: ${ev.message}`)) }
  }

  /**
   * Sends `load` (id 0) and resolves with the worker's `loaded` answer; a failed or crashed load
   * terminates the worker and rejects with a WorkerComputeError naming `what`.
   */
  static async open<T extends FromWorker> (worker: SpanWorker, load: ToWorker, loaded: (m: FromWorker) => m is T, what: string, onProgress?: ProgressFn): Promise<{ channel: WorkerChannel, loaded: T }> {
    try {
      const m = await new Promise<T>((resolve, reject) => {
        worker.onerror = ev => { reject(new WorkerComputeError(`the compute worker failed to start: ${ev.message}`)) }
        worker.onmessage = ev => {
          const a = ev.data
          if (a.type === 'progress') onProgress?.(a.progress)
          else if (loaded(a)) resolve(a)
          else if (a.type === 'error') reject(new WorkerComputeError(`loading ${what} in the worker: ${a.name}: ${a.message}`))
        }
        worker.postMessage(load, [])
      })
      return { channel: new WorkerChannel(worker), loaded: m }
    } catch (e) {
      worker.terminate()
      throw e
    }
  }

  /** A fresh id for a request or a worker-side handle. */
  id (): number { return this.nextId++ }

  post (m: ToWorker, transfer: Transferable[] = []): void { this.worker.postMessage(m, transfer) }

  /** Posts request `m` (numbered `id`) and resolves with the worker's answer to it. */
  async request (id: number, m: ToWorker, transfer: Transferable[] = []): Promise<FromWorker> {
    if (this.dead !== undefined) throw this.dead
    return await new Promise<FromWorker>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.post(m, transfer)
    })
  }

  private answer (m: FromWorker): void {
    if (m.type === 'progress' || m.type === 'loaded' || m.type === 'experts-loaded') return
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

  /** Ends the worker: what it holds goes with it; pending requests reject. */
  close (): void {
    this.fail(new WorkerComputeError('the compute worker was stopped'))
    this.worker.terminate()
  }
}
