/**
 * The worker's side of a trainer thread (trainer-thread.ts): θ_local as of the last fence, the
 * writes a sync made since (sent with the next run), and one request at a time. Until the first
 * run the model on this thread is θ_local (the worker's init writes it); the first run copies it
 * to the thread, which owns it from then on.
 */
import type { Window } from '../../model/data.ts'
import type { CausalLM } from '../../model/model.ts'
import { TrainArgumentError, TrainerThreadError } from './errors.ts'
import type { ParamLayout } from './flat.ts'
import { checkRange, readParams, writeParams } from './inner-loop.ts'
import type { FromTrainer, ParamWrite, ToTrainer } from './trainer-messages.ts'
import type { StepEvent } from './worker.ts'

/** What the worker needs of a thread: a browser Worker, or Node's worker_threads behind an adapter (trainer-thread-node.ts). */
export interface TrainerPort {
  onmessage: ((ev: { data: FromTrainer }) => void) | null
  onerror: ((ev: { message: string }) => void) | null
  postMessage: (m: ToTrainer, transfer: Transferable[]) => void
  /** Ends the thread; resolves once it has exited (Node) or at once (browsers). */
  terminate: () => Promise<void> | void
}

/** Starts trainer-thread.ts on a thread of its own. */
export type SpawnTrainer = () => TrainerPort

/** The thread's `init`, less what the thread trainer fills in (θ_local, the run step). */
export type TrainerInit = Omit<Extract<ToTrainer, { type: 'init' }>, 'type' | 'local' | 'step'>

type Answer<T extends FromTrainer['type']> = Extract<FromTrainer, { type: T }>

export class ThreadTrainer {
  private port: TrainerPort | undefined
  /** θ_local (P) from the last fence, with `writes` applied; undefined before the first run. */
  private local: Float32Array | undefined
  private writes: ParamWrite[] = []
  private waiting: { type: FromTrainer['type'], resolve: (m: FromTrainer) => void, reject: (e: Error) => void } | undefined
  private dead: Error | undefined
  /** Settles once a terminated thread has exited. */
  private exited: Promise<void> = Promise.resolve()
  private onStep: ((e: StepEvent) => void) | undefined

  constructor (private readonly spawn: SpawnTrainer, private readonly model: CausalLM, private readonly layout: ParamLayout, private readonly init: TrainerInit) {}

  /** Whether the thread was started (at the first `runTo`): θ_local lives there from then on. */
  get started (): boolean { return this.local !== undefined }

  /** θ_local, a copy. */
  async read (): Promise<Float32Array> {
    return this.local === undefined ? await readParams(this.model, this.layout) : this.local.slice()
  }

  /** θ_local[start, start + values.length) ← values; reaches the thread with the next request. */
  write (start: number, values: Float32Array): void {
    if (this.local === undefined) { writeParams(this.model, this.layout, start, values); return }
    checkRange(this.layout, start, start + values.length)
    this.local.set(values, start)
    this.writes.push({ start, values: values.slice() })
  }

  /**
   * Inner steps from run step `step` until `to` (the next fence). On `signal`'s abort the thread
   * stops after the step in progress. Resolves with the run step it stopped at.
   */
  async runTo (to: number, step: number, onStep: (e: StepEvent) => void, signal?: AbortSignal): Promise<number> {
    await this.start(step)
    this.onStep = onStep
    const halt = (): void => { this.port?.postMessage({ type: 'halt' }, []) }
    signal?.addEventListener('abort', halt, { once: true })
    try {
      const fence = await this.request({ type: 'run', to, step, writes: this.takeWrites() }, 'fence')
      this.local = fence.local
      return fence.step
    } finally {
      signal?.removeEventListener('abort', halt)
      this.onStep = undefined
    }
  }

  /** Eval loss of `global` (P) on the thread's model; θ_local is kept. */
  async evaluate (global: Float32Array, windows: readonly Window[]): Promise<number> {
    if (this.port === undefined) throw new TrainArgumentError('evaluate before the trainer thread started')
    return (await this.request({ type: 'eval', writes: this.takeWrites(), global: global.slice(), windows }, 'evaluated')).loss
  }

  /** The thread's time in steps (wall) and, on Linux, its CPU and run-queue wait, ms. */
  async stats (): Promise<Omit<Answer<'stats'>, 'type'>> {
    if (this.port === undefined) return { stepMs: 0 }
    const { type: _, ...rest } = await this.request({ type: 'stats' }, 'stats')
    return rest
  }

  /** Ends the thread (later calls do nothing); a request in flight fails. Resolves when it has exited. */
  async dispose (): Promise<void> {
    this.fail(new TrainerThreadError('the trainer thread was stopped'))
    await this.exited
  }

  /** Starts the thread with θ_local as it is now and run step `step` (once; `runTo` does it if needed). */
  async start (step: number): Promise<void> {
    if (this.dead !== undefined) throw this.dead
    if (this.port !== undefined) return
    const local = await readParams(this.model, this.layout)
    const port = this.spawn()
    this.port = port
    port.onmessage = ev => { this.answer(ev.data) }
    port.onerror = ev => { this.fail(new TrainerThreadError(`the trainer thread crashed: ${ev.message}`)) }
    this.local = local.slice()
    await this.request({ type: 'init', ...this.init, local, step }, 'ready')
  }

  private takeWrites (): ParamWrite[] {
    const w = this.writes
    this.writes = []
    return w
  }

  private async request<T extends FromTrainer['type']> (m: ToTrainer, type: T): Promise<Answer<T>> {
    if (this.dead !== undefined) throw this.dead
    const port = this.port
    if (port === undefined) throw new TrainerThreadError('the trainer thread is not running')
    if (this.waiting !== undefined) throw new TrainArgumentError(`trainer thread request ${m.type} while ${this.waiting.type} is pending`)
    const transfer: Transferable[] = []
    if (m.type === 'init') transfer.push(m.local.buffer)
    if (m.type === 'eval') transfer.push(m.global.buffer)
    if (m.type === 'run' || m.type === 'eval') for (const w of m.writes) transfer.push(w.values.buffer)
    return await new Promise<Answer<T>>((resolve, reject) => {
      this.waiting = { type, resolve: resolve as (m: FromTrainer) => void, reject }
      port.postMessage(m, transfer)
    })
  }

  private answer (m: FromTrainer): void {
    if (m.type === 'step') { this.onStep?.(m.e); return }
    if (m.type === 'error') { this.fail(new TrainerThreadError(`the trainer thread failed: ${m.name}: ${m.message}`)); return }
    const w = this.waiting
    if (w === undefined || w.type !== m.type) { this.fail(new TrainerThreadError(`the trainer thread answered ${m.type} unasked`)); return }
    this.waiting = undefined
    w.resolve(m)
  }

  /** The thread is unusable from now on: it is ended, the request in flight and every later one fail with `e`. */
  private fail (e: Error): void {
    this.dead ??= e
    const w = this.waiting
    this.waiting = undefined
    w?.reject(e)
    const port = this.port
    this.port = undefined
    if (port !== undefined) {
      port.onmessage = null
      port.onerror = null
      // A thread that crashed has already gone: its terminate may reject, and there is nothing left to end.
      this.exited = Promise.resolve(port.terminate()).catch(() => {})
    }
  }
}
