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
  /** Applies `writes`, sets the run step, steps until run step `to`. `epoch` numbers runs: plans of older runs are dropped. */
  | { type: 'run', epoch: number, to: number, step: number, writes: ParamWrite[] }
  /**
   * What to do at the fence at run step `at`: apply `op` (if any), post `fence`, then step on to
   * `then` (a fence whose plan will follow) or, without `then`, hold.
   */
  | { type: 'plan', epoch: number, at: number, op?: RebaseOp, then?: number }
  /** Stops the current run after the step in progress (or at the fence it waits at) and holds. */
  | { type: 'halt' }
  /** Answers `stats`. */
  | { type: 'stats' }

export type FromTrainer =
  | { type: 'ready' }
  /** Inner steps taken since the last `steps` (posted every TRAINER_STEP_EVENTS_MS, and before each `fence`). */
  | { type: 'steps', es: StepEvent[] }
  /**
   * The thread is at fence `step` with θ_local `local` (P, after the plan's op). `held`: it waits
   * for the next run (a plan without `then`, or a halt: `halted`); else it went on to `then`.
   * `rebased`: the plan's op was applied.
   */
  | { type: 'fence', step: number, local: Float32Array, held: boolean, halted: boolean, rebased: boolean }
  /**
   * The thread's time since it started, ms: in inner steps and waiting at fences for their plans
   * (wall), and where the platform tells (Linux) its CPU and run-queue wait.
   */
  | { type: 'stats', stepMs: number, planWaitMs: number, cpuMs?: number, waitMs?: number }
  | { type: 'error', name: string, message: string }
