/**
 * Messages between a DiLoCo worker and its trainer thread (trainer-thread.ts). In-process only,
 * never on the wire. `run` sends the thread stepping up to a fence (a step where a sync lands or
 * starts); at each fence it waits for that fence's `plan`, applies it, posts `fence` with θ_local
 * and either goes on to the plan's `then` or holds until the next `run`. `init` and `stats` are
 * asked while the thread holds, one at a time.
 */
import type { ModelConfig } from '../../model/config.ts'
import type { AdamWOptions } from '../../model/optimizer.ts'
import type { ScheduleOptions } from '../../model/schedule.ts'
import type { WindowPlan } from './inner-loop.ts'
import type { StepEvent } from './worker.ts'

/** θ_local[start, start + values.length) ← values, applied before the run that carries it. */
export interface ParamWrite { start: number, values: Float32Array }

/**
 * A delayed outer update landing at a fence, computed before the thread gets there: θ_local ←
 * θ_global + (θ_local − base) over [start, start + global.length) (inner-loop.ts `rebaseLocal`).
 */
export interface RebaseOp { start: number, global: Float32Array, base: Float32Array }

export type ToTrainer =
  /** Builds the model with θ_local = `local` (P), its AdamW and its window stream; answers `ready`. */
  | {
    type: 'init', config: ModelConfig, local: Float32Array, corpus: Uint8Array, plan: WindowPlan, schedule: ScheduleOptions,
    adam: Omit<AdamWOptions, 'lr'>, maxGradNorm: number, step: number
  }
  /**
   * Applies `writes`, sets the run step, steps until run step `to`. `epoch` numbers runs: plans of
   * older runs are dropped. `events`: post step events (someone listens; each post costs the
   * thread a preemption on a loaded machine, constants.ts TRAINER_STEP_EVENTS_MS).
   */
  | { type: 'run', epoch: number, to: number, step: number, writes: ParamWrite[], events: boolean }
  /**
   * What to do at the fence at run step `at`: apply `op` (if any), post `fence`, then step on to
   * `then` (a fence whose plan will follow) or, without `then`, hold.
   */
  | { type: 'plan', epoch: number, at: number, op?: RebaseOp, then?: number, /** When it was posted (performance.timeOrigin + now, ms): splits a fence's wait (TrainerTimes). */ sentAt?: number }
  /** Stops the current run after the step in progress (or at the fence it waits at) and holds. */
  | { type: 'halt' }
  /** Answers `stats`. */
  | { type: 'stats' }

export type FromTrainer =
  | { type: 'ready' }
  /** Inner steps taken since the last `steps` (posted every TRAINER_STEP_EVENTS_MS, and before each `fence`), in runs with `events`. */
  | { type: 'steps', es: StepEvent[] }
  /**
   * The thread is at fence `step` with θ_local `local` (P, after the plan's op). `held`: it waits
   * for the next run (a plan without `then`, or a halt: `halted`); else it went on to `then`.
   * `rebased`: the plan's op was applied.
   */
  | { type: 'fence', step: number, local: Float32Array, held: boolean, halted: boolean, rebased: boolean }
  /** The thread's times since it started (TrainerTimes). */
  | ({ type: 'stats' } & TrainerTimes)
  | { type: 'error', name: string, message: string }

/**
 * Where a trainer thread's wall time went since it started, ms (sums): what bench:train's
 * utilization accounts for (BENCHMARKS.md § Training, session 10). Inside runs, from each `run`
 * to the fence it holds at (`runMs`), it is spent in steps, the step events, the turn after each
 * step, at fences (waiting for the plan, the rebase, reading and posting θ_local) and the rest
 * (the loop's own bookkeeping: `runMs` less the others).
 */
export interface TrainerTimes {
  /** In inner steps (Trainer.trainStep, its window and lr included). */
  stepMs: number
  /** The thread's first inner step (start-up: JIT, first allocations), also in `stepMs`; 0 before it. */
  firstStepMs: number
  /** Inside runs. */
  runMs: number
  /** Posting step events. */
  stepEventsMs: number
  /** The event-loop turns between steps (nextTurn, every TRAINER_TURN_MS), in which `plan` and `halt` are seen. */
  turnMs: number
  /** At fences, waiting for their plans. */
  planWaitMs: number
  /**
   * The part of `planWaitMs` after its plan was posted: the message's delivery and the thread's
   * wake-up, not the worker's wait for a result (plans that carry `sentAt`).
   */
  planLateMs: number
  /** Applying plans' rebases (reading θ_local, rebaseLocal, writing it). */
  rebaseMs: number
  /** Reading θ_local and posting it at fences. */
  fenceMs: number
  /** Since the last `stats`: when the first run began and when the last held fence was posted (performance.timeOrigin + now, ms; NaN: none), and each fence's wait for its plan, ms. */
  runAt: number
  heldAt: number
  fenceWaitsMs: number[]
  /** Garbage collection on the thread, ms, where the host tells (Node: perf_hooks). */
  gcMs?: number
  /** Linux: the thread's CPU time and its run-queue wait, ms. */
  cpuMs?: number
  waitMs?: number
}
