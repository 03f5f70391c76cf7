/**
 * The worker's side of a trainer thread (trainer-thread.ts): θ_local as of the last fence, the
 * writes a sync made since (sent with the next run), runs, plans and the fences they reach. Until
 * the thread starts the model on this thread is θ_local (the worker's init writes it); starting
 * copies it to the thread, which owns it from then on.
 */
import type { CausalLM } from '../../model/model.ts'
import { TrainArgumentError, TrainerThreadError } from './errors.ts'
import type { ParamLayout } from './flat.ts'
import { checkRange, readParams, writeParams } from './inner-loop.ts'
import type { FromTrainer, ParamWrite, RebaseOp, ToTrainer, TrainerTimes } from './trainer-messages.ts'
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
type Fence = Answer<'fence'>

export class ThreadTrainer {
  private port: TrainerPort | undefined
  /** θ_local (P) from the last fence, with `writes` applied; undefined before the thread starts. */
  private local: Float32Array | undefined
  private writes: ParamWrite[] = []
  private waiting: { type: FromTrainer['type'], resolve: (m: FromTrainer) => void, reject: (e: Error) => void } | undefined
  /** Fences posted and not yet taken, and the wait for the next one. */
  private readonly fences: Fence[] = []
  private fenceWait: { resolve: (f: Fence) => void, reject: (e: Error) => void } | undefined
  private dead: Error | undefined
  /** Settles once a terminated thread has exited. */
  private exited: Promise<void> = Promise.resolve()
  private onStep: ((e: StepEvent) => void) | undefined
  /** The current run's number (plans carry it). */
  epoch = 0
  /** Whether the thread is stepping (a run, or a plan's `then`), not holding. */
  running = false
  private haltSent = false

  constructor (private readonly spawn: SpawnTrainer, private readonly model: CausalLM, private readonly layout: ParamLayout, private readonly init: TrainerInit) {}

  /** Whether the thread was started: θ_local lives there from then on. */
  get started (): boolean { return this.local !== undefined }

  /** θ_local, a copy. */
  async read (): Promise<Float32Array> {
    return this.local === undefined ? await readParams(this.model, this.layout) : this.local.slice()
  }

  /** θ_local[start, start + values.length) ← values; reaches the thread with the next run. */
  write (start: number, values: Float32Array): void {
    if (this.local === undefined) { writeParams(this.model, this.layout, start, values); return }
    if (this.running) throw new TrainArgumentError('θ_local written while the trainer thread steps')
    checkRange(this.layout, start, start + values.length)
    this.local.set(values, start)
    this.writes.push({ start, values: values.slice() })
  }

  /** Starts the thread with θ_local as it is now and run step `step` (once; later calls do nothing). */
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

  /**
   * Sends the held thread stepping from run step `step` to the fence at `to` (with the writes made
   * since). Without `onStep` the thread posts no step events in this run.
   */
  run (to: number, step: number, onStep?: (e: StepEvent) => void): void {
    if (this.running) throw new TrainArgumentError('run while the trainer thread steps')
    const writes = this.writes
    this.writes = []
    this.epoch++
    this.running = true
    this.haltSent = false
    this.onStep = onStep
    this.post({ type: 'run', epoch: this.epoch, to, step, writes, events: onStep !== undefined }, writes.map(w => w.values.buffer))
  }

  /** The plan of the fence at `at` in the current run (trainer-messages.ts). */
  plan (at: number, op?: RebaseOp, then?: number): void {
    this.post({ type: 'plan', epoch: this.epoch, at, ...(op === undefined ? {} : { op }), ...(then === undefined ? {} : { then }), sentAt: performance.timeOrigin + performance.now() }, op === undefined ? [] : [op.global.buffer, op.base.buffer])
  }

  /** The thread's next fence; on `signal`'s abort the thread is halted (it holds at its next fence). */
  async nextFence (signal?: AbortSignal): Promise<Fence> {
    if (this.dead !== undefined) throw this.dead
    const halt = (): void => {
      if (this.haltSent || !this.running) return
      this.haltSent = true
      this.post({ type: 'halt' }, [])
    }
    if (signal?.aborted === true) halt()
    signal?.addEventListener('abort', halt, { once: true })
    try {
      const f = this.fences.shift() ?? await new Promise<Fence>((resolve, reject) => { this.fenceWait = { resolve, reject } })
      this.local = f.local
      if (f.held) this.running = false
      return f
    } finally {
      signal?.removeEventListener('abort', halt)
    }
  }

  /** Where the thread's wall time went since it started (TrainerTimes); undefined before it starts. */
  async stats (): Promise<TrainerTimes | undefined> {
    if (this.port === undefined) return undefined
    const { type: _, ...rest } = await this.request({ type: 'stats' }, 'stats')
    return rest
  }

  /** Ends the thread (later calls do nothing); what waits on it fails. Resolves when it has exited. */
  async dispose (): Promise<void> {
    this.fail(new TrainerThreadError('the trainer thread was stopped'))
    await this.exited
  }

  private post (m: ToTrainer, transfer: Transferable[]): void {
    if (this.dead !== undefined) throw this.dead
    if (this.port === undefined) throw new TrainerThreadError('the trainer thread is not running')
    this.port.postMessage(m, transfer)
  }

  private async request<T extends FromTrainer['type']> (m: ToTrainer, type: T): Promise<Answer<T>> {
    if (this.waiting !== undefined) throw new TrainArgumentError(`trainer thread request ${m.type} while ${this.waiting.type} is pending`)
    if (this.running) throw new TrainArgumentError(`trainer thread request ${m.type} while it steps`)
    return await new Promise<Answer<T>>((resolve, reject) => {
      this.waiting = { type, resolve: resolve as (m: FromTrainer) => void, reject }
      try {
        this.post(m, m.type === 'init' ? [m.local.buffer] : [])
      } catch (e) {
        this.waiting = undefined
        reject(e)
      }
    })
  }

  private answer (m: FromTrainer): void {
    if (m.type === 'steps') { for (const e of m.es) this.onStep?.(e); return }
    if (m.type === 'error') { this.fail(new TrainerThreadError(`the trainer thread failed: ${m.name}: ${m.message}`)); return }
    if (m.type === 'fence') {
      const w = this.fenceWait
      this.fenceWait = undefined
      if (w !== undefined) w.resolve(m)
      else this.fences.push(m)
      return
    }
    const w = this.waiting
    if (w === undefined || w.type !== m.type) { this.fail(new TrainerThreadError(`the trainer thread answered ${m.type} unasked`)); return }
    this.waiting = undefined
    w.resolve(m)
  }

  /** The thread is unusable from now on: it is ended, and what waits on it and every later call fail with `e`. */
  private fail (e: Error): void {
    this.dead ??= e
    this.running = false
    const w = this.waiting
    this.waiting = undefined
    w?.reject(e)
    const f = this.fenceWait
    this.fenceWait = undefined
    f?.reject(e)
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
