/**
 * bench:train's utilization (bench/train-util.ts): a trainer thread's wall time over the run, by
 * what it did, from its TrainerTimes (trainer-messages.ts) before and after the run and the
 * run's clock. A module of its own so that a test needs no libp2p.
 */
import type { TrainerTimes } from '../web/src/swarm/train/trainer-messages.ts'

/**
 * A trainer thread's wall time over the run, ms; with `stepMs` these add up to `wallMs`. `startMs`:
 * from the clock's start to the thread's first step (the `run` message); `endMs`: from its last
 * fence (posted with θ_local) to the clock's end (the node thread recording that landing);
 * `heldMs`: held between runs (none with the delayed outer update). Inside the run: the step
 * events, the event-loop turns between steps, waiting for plans (`planLateMs` of it after the plan was
 * posted; `lastPlanWaitMs` at the last fence, the last sync's landing, which no step overlaps),
 * rebases, posting θ_local, and `loopMs`, the rest. `firstStepMs` (in steps) and `gcMs` (anywhere
 * on the thread) are for reading, not in the sum. `fenceWaitsMs`: each fence's wait, in order.
 */
export interface ThreadBreakdown {
  startMs: number
  firstStepMs: number
  stepEventsMs: number
  turnMs: number
  planWaitMs: number
  planLateMs: number
  lastPlanWaitMs: number
  rebaseMs: number
  fenceMs: number
  loopMs: number
  heldMs: number
  endMs: number
  gcMs: number
  fenceWaitsMs: number[]
}

/** What one worker's trainer thread did over [t0, t1] (absolute ms, performance.timeOrigin + now), from its stats before and after. */
export function threadBreakdown (a: TrainerTimes, b: TrainerTimes, t0: number, t1: number): ThreadBreakdown {
  const d = (k: 'stepMs' | 'runMs' | 'stepEventsMs' | 'turnMs' | 'planWaitMs' | 'planLateMs' | 'rebaseMs' | 'fenceMs'): number => b[k] - a[k]
  const startMs = b.runAt - t0
  const endMs = t1 - b.heldAt
  const inRun = d('stepEventsMs') + d('turnMs') + d('planWaitMs') + d('rebaseMs') + d('fenceMs')
  return {
    startMs,
    firstStepMs: a.stepMs === 0 ? b.firstStepMs : 0,
    stepEventsMs: d('stepEventsMs'),
    turnMs: d('turnMs'),
    planWaitMs: d('planWaitMs'),
    planLateMs: d('planLateMs'),
    lastPlanWaitMs: b.fenceWaitsMs.at(-1) ?? 0,
    rebaseMs: d('rebaseMs'),
    fenceMs: d('fenceMs'),
    loopMs: d('runMs') - d('stepMs') - inRun,
    heldMs: (t1 - t0) - startMs - d('runMs') - endMs,
    endMs,
    gcMs: (b.gcMs ?? 0) - (a.gcMs ?? 0),
    fenceWaitsMs: b.fenceWaitsMs
  }
}
