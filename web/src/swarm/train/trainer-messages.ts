/**
 * Messages between a DiLoCo worker and its trainer thread (trainer-thread.ts). In-process only,
 * never on the wire. The worker sends one request at a time and waits for its answer; `step`
 * events stream while a `run` goes, and `halt` may come while one does.
 */
import type { ModelConfig } from '../../model/config.ts'
import type { Window } from '../../model/data.ts'
import type { AdamWOptions } from '../../model/optimizer.ts'
import type { ScheduleOptions } from '../../model/schedule.ts'
import type { WindowPlan } from './inner-loop.ts'
import type { StepEvent } from './worker.ts'

/** θ_local[start, start + values.length) ← values, applied before the request that carries it. */
export interface ParamWrite { start: number, values: Float32Array }

export type ToTrainer =
  /** Builds the model with θ_local = `local` (P), its AdamW and its window stream; answers `ready`. */
  | {
    type: 'init', config: ModelConfig, local: Float32Array, corpus: Uint8Array, plan: WindowPlan, schedule: ScheduleOptions,
    adam: Omit<AdamWOptions, 'lr'>, maxGradNorm: number, step: number
  }
  /** Applies `writes` (and `step`, a resync's new run step), steps until run step `to`; answers `fence`. */
  | { type: 'run', to: number, writes: ParamWrite[], step?: number }
  /** Stops the current run after the step in progress; it answers `fence` at that step. */
  | { type: 'halt' }
  /** Applies `writes`, evaluates θ_global (P) on `windows`, keeps θ_local; answers `evaluated`. */
  | { type: 'eval', writes: ParamWrite[], global: Float32Array, windows: readonly Window[] }
  /** Answers `stats`. */
  | { type: 'stats' }

export type FromTrainer =
  | { type: 'ready' }
  | { type: 'step', e: StepEvent }
  /** The run stopped at run step `step` (its `to`, or where a halt caught it); `local` is θ_local there (P). */
  | { type: 'fence', step: number, local: Float32Array }
  | { type: 'evaluated', loss: number }
  /**
   * The thread's time: in inner steps (wall, ms) and, where the platform tells (Linux), its CPU
   * and run-queue wait since it started, ms.
   */
  | { type: 'stats', stepMs: number, cpuMs?: number, waitMs?: number }
  | { type: 'error', name: string, message: string }
