/**
 * The model side of a DiLoCo worker, shared by the worker's own thread (worker.ts) and the trainer
 * thread (trainer-thread.ts): which windows an inner step trains on, its inner lr, θ_local as one
 * flat vector, the delayed update's rebase, and the yield between steps. One copy of each, so a
 * step on either thread computes the same bytes.
 */
import type { CausalLM } from '../../model/model.ts'
import type { TextDataset, Window } from '../../model/data.ts'
import { learningRate, type ScheduleOptions } from '../../model/schedule.ts'
import { TrainArgumentError } from './errors.ts'
import { flatten, type ParamLayout } from './flat.ts'

/**
 * The inner lr of the step after run step `runStep − 1`: the run's schedule at the run's step
 * (the decay), times this worker's own warm-up (its AdamW state may be fresh, `localStep` = its
 * optimizer's step). For a founder both clocks agree, and this is exactly
 * `learningRate(schedule, step)` — what a single-peer Trainer with the same schedule uses.
 */
export function innerLr (schedule: ScheduleOptions, runStep: number, localStep: number): number {
  const warm = schedule.warmupSteps ?? 0
  const decayed = runStep <= warm ? schedule.lr : learningRate(schedule, runStep)
  return warm > 0 && localStep < warm ? decayed * localStep / warm : decayed
}

/** What picks an inner step's windows (plain data: it crosses to the trainer thread). */
export interface WindowPlan {
  /** Tokens per sequence, sequences per step. */
  seqLen: number
  batchSize: number
  /** Inner steps per period (H): each period draws from a fresh seeded stream. */
  H: number
  dataSeed: number
}

/**
 * A fresh, per-peer, per-period stream of windows: workers draw different data, and a resynced
 * worker does not replay what it drew before.
 */
export class WindowStream {
  private windows: Generator<Window> | undefined
  private period = -1

  constructor (private readonly data: TextDataset, private readonly plan: WindowPlan) {}

  /** The batch of the step after run step `step`. */
  next (step: number): Window[] {
    const period = Math.floor(step / this.plan.H)
    if (this.windows === undefined || this.period !== period) {
      this.windows = this.data.windows(this.plan.seqLen, (this.plan.dataSeed * 1_000_003 + period * 7919) >>> 0)
      this.period = period
    }
    const out = []
    for (let i = 0; i < this.plan.batchSize; i++) out.push(this.windows.next().value as Window)
    return out
  }
}

/** Throws unless [start, end) covers whole parameters of `layout`. */
export function checkRange (layout: ParamLayout, start: number, end: number): void {
  for (const s of layout.slots) {
    if (s.offset >= end || s.offset + s.size <= start) continue
    if (s.offset < start || s.offset + s.size > end) throw new TrainArgumentError(`range [${start}, ${end}) cuts parameter ${s.name}`)
  }
}

/** θ_local of a model as one flat vector in `layout`'s order. */
export async function readParams (model: CausalLM, layout: ParamLayout): Promise<Float32Array> {
  const host = new Map<string, Float32Array>()
  for (const s of layout.slots) {
    const t = model.params.get(s.name)
    if (t === undefined) throw new TrainArgumentError(`model has no parameter ${s.name}`)
    host.set(s.name, await t.readF32())
  }
  return flatten(layout, n => host.get(n)!)
}

/** θ_local[start, start + values.length) ← values, in the model's parameters (whole parameters only). */
export function writeParams (model: CausalLM, layout: ParamLayout, start: number, values: Float32Array): void {
  const end = start + values.length
  checkRange(layout, start, end)
  for (const s of layout.slots) {
    if (s.offset >= end || s.offset + s.size <= start) continue
    model.backend.write(model.params.get(s.name)!, values.slice(s.offset - start, s.offset - start + s.size))
  }
}

/**
 * The delayed outer update's rebase of one fragment (worker.ts `rebase`): the steps trained since
 * the window began move onto the new θ_global, θ_local ← θ_global + (θ_local − base), f32 with
 * Math.fround per operation. `global`, `local`, `base` and `out` are the fragment's elements.
 */
export function rebaseLocal (out: Float32Array, global: Float32Array, local: Float32Array, base: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(global[i] + Math.fround(local[i] - base[i]))
}

/**
 * One turn of the event loop (I/O and message callbacks run), without sleeping: `setImmediate` in
 * Node, a MessageChannel message in a browser. Not a 0 ms timer: Node makes it 1 ms and browsers
 * clamp nested ones to 4 ms, and a process that sleeps gives up its core — on a loaded machine it
 * then waits in the run queue for one. Measured with 4 worker processes on 2 busy cores: the
 * timer cost ≈ 40 ms a step, a quarter of the wall time (BENCHMARKS.md § Training, utilization).
 */
export async function nextTurn (): Promise<void> {
  await new Promise<void>(resolve => {
    if (typeof setImmediate === 'function') { setImmediate(resolve); return }
    const ch = new MessageChannel()
    ch.port1.onmessage = () => { ch.port1.close(); resolve() }
    ch.port2.postMessage(null)
  })
}
