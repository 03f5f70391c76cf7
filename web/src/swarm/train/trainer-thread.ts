/**
 * A DiLoCo worker's trainer thread (a Web Worker's globals: `self.onmessage`, `postMessage`; in
 * Node behind trainer-thread-node.ts): the model, its inner AdamW and the inner loop, on the CPU
 * twins. The worker's thread keeps the network, the all-reduce and the codec. They meet at fences
 * — a step where a sync lands or starts: the thread applies what the worker planned for it (with
 * the delayed outer update, the rebase onto θ_global, computed as soon as the all-reduce's result
 * came) and posts θ_local; where the plan says so it steps on without waiting for the worker's
 * event loop (trainer-messages.ts; BENCHMARKS.md § Training, session 9). The step itself is
 * worker.ts's: the same windows (WindowStream), lr (innerLr) and Trainer, so the bytes equal the
 * in-thread path's.
 */
import { cpu } from '../../gpu/cpu-backend.ts'
import { TextDataset } from '../../model/data.ts'
import { Trainer } from '../../model/train.ts'
import { initModel, type CausalLM } from '../../model/model.ts'
import type { ScheduleOptions } from '../../model/schedule.ts'
import { TRAINER_STEP_EVENTS_MS, TRAINER_TURN_MS } from './constants.ts'
import { TrainArgumentError } from './errors.ts'
import { layoutOf, type ParamLayout } from './flat.ts'
import { innerLr, nextTurn, readParams, rebaseLocal, WindowStream, writeParams } from './inner-loop.ts'
import type { FromTrainer, ToTrainer, TrainerTimes } from './trainer-messages.ts'
import type { StepEvent } from './worker.ts'

interface WorkerScope {
  postMessage: (m: FromTrainer, transfer?: Transferable[]) => void
  onmessage: ((ev: { data: ToTrainer }) => void) | null
  /** Linux's /proc/thread-self/schedstat of this thread, where the host provides it (trainer-thread-node.ts). */
  threadSchedstat?: () => string
  /** This thread's garbage collection so far, ms, where the host provides it (trainer-thread-node.ts). */
  threadGcMs?: () => number
}
const scope = globalThis as unknown as WorkerScope

interface State {
  model: CausalLM
  layout: ParamLayout
  trainer: Trainer
  windows: WindowStream
  schedule: ScheduleOptions
  /** Run step of the last inner step taken. */
  step: number
}

let state: State | undefined
/** The current run's number; plans of another are stale. */
let epoch = -1
/** Plans of the current run by fence step, and the wait for the one not here yet. */
const plans = new Map<number, Extract<ToTrainer, { type: 'plan' }>>()
let planWait: { at: number, resolve: () => void } | undefined
/** Set by `halt`: the current run stops after its step in progress, or at the fence it waits at. */
let halted = false
/** Where the thread's wall time went (TrainerTimes; the absolute times are kept apart). */
const times: Omit<TrainerTimes, 'runAt' | 'heldAt' | 'fenceWaitsMs' | 'gcMs' | 'cpuMs' | 'waitMs'> = { stepMs: 0, firstStepMs: 0, runMs: 0, stepEventsMs: 0, turnMs: 0, planWaitMs: 0, planLateMs: 0, rebaseMs: 0, fenceMs: 0 }
let runAt = NaN
let heldAt = NaN
let fenceWaitsMs: number[] = []
/** performance.now() is per thread; this is comparable across the worker's threads. */
const absNow = (): number => performance.timeOrigin + performance.now()

function post (m: FromTrainer, transfer: Transferable[] = []): void { scope.postMessage(m, transfer) }

/** Step events not yet posted, and when they last were (TRAINER_STEP_EVENTS_MS); whether the current run posts them. */
const steps: StepEvent[] = []
let lastSteps = 0
let events = true
/** When the thread last gave its event loop a turn between steps (TRAINER_TURN_MS). */
let lastTurn = 0

function postSteps (): void {
  const t0 = performance.now()
  lastSteps = t0
  if (steps.length === 0) return
  post({ type: 'steps', es: steps.splice(0) })
  times.stepEventsMs += performance.now() - t0
}

/** The plan of the fence at `at`, once it is here; undefined when a halt comes first. */
async function planAt (at: number): Promise<Extract<ToTrainer, { type: 'plan' }> | undefined> {
  while (!halted && !plans.has(at)) await new Promise<void>(resolve => { planWait = { at, resolve } })
  planWait = undefined
  return halted ? undefined : plans.get(at)
}

function wake (): void { planWait?.resolve() }

/** Steps from the run step `s.step` to `to`, fence after fence, as the plans say; then holds. */
async function run (s: State, first: number): Promise<void> {
  const r0 = performance.now()
  if (Number.isNaN(runAt)) runAt = performance.timeOrigin + r0
  try { await fences(s, first) } finally { times.runMs += performance.now() - r0 }
}

async function fences (s: State, first: number): Promise<void> {
  let to = first
  for (;;) {
    while (s.step < to && !halted) {
      const t0 = performance.now()
      const r = await s.trainer.trainStep(s.windows.next(s.step), innerLr(s.schedule, s.step + 1, s.trainer.step + 1))
      const t1 = performance.now()
      const ms = t1 - t0
      if (times.stepMs === 0) times.firstStepMs = ms
      times.stepMs += ms
      s.step++
      if (events) {
        steps.push({ step: s.step, loss: r.loss, tokens: r.tokens, ms, lr: r.lr })
        if (t1 - lastSteps >= TRAINER_STEP_EVENTS_MS) postSteps()
      }
      if (t1 - lastTurn >= TRAINER_TURN_MS) {
        await nextTurn() // a `halt` or `plan` that came during the steps is seen
        lastTurn = performance.now()
        times.turnMs += lastTurn - t1
      }
    }
    postSteps()
    const w0 = performance.now()
    const plan = halted ? undefined : await planAt(to)
    const w1 = performance.now()
    times.planWaitMs += w1 - w0
    fenceWaitsMs.push(w1 - w0)
    // Of a wait, what came after the plan was posted is its delivery, not the worker's wait for a result.
    if (plan?.sentAt !== undefined) times.planLateMs += Math.max(0, Math.min(w1 - w0, performance.timeOrigin + w1 - plan.sentAt))
    plans.delete(to)
    // One read serves the rebase and the fence: the rebase is elementwise (in place gives what a
    // copy would), and writeParams stores the f32 bytes as they are, so `local` is the model's θ_local.
    const local = await readParams(s.model, s.layout)
    if (plan?.op !== undefined) {
      const { start, global, base } = plan.op
      const out = local.subarray(start, start + global.length)
      rebaseLocal(out, global, out, base)
      writeParams(s.model, s.layout, start, out)
    }
    const f0 = performance.now()
    times.rebaseMs += f0 - w1
    const held = plan?.then === undefined
    post({ type: 'fence', step: s.step, local, held, halted: plan === undefined, rebased: plan?.op !== undefined }, [local.buffer])
    times.fenceMs += performance.now() - f0
    if (held) { heldAt = absNow(); return }
    to = plan.then!
  }
}

async function handle (m: ToTrainer): Promise<void> {
  switch (m.type) {
    case 'init': {
      const model = initModel(m.config, cpu, 0)
      const layout = layoutOf(model.paramSpecs())
      if (layout.total !== m.local.length) throw new TrainArgumentError(`θ_local has ${m.local.length} elements, the model ${layout.total}`)
      writeParams(model, layout, 0, m.local)
      state = { model, layout, trainer: new Trainer(model, m.schedule, m.adam, { maxGradNorm: m.maxGradNorm }), windows: new WindowStream(new TextDataset(m.corpus), m.plan), schedule: m.schedule, step: m.step }
      post({ type: 'ready' })
      return
    }
    case 'run': {
      const s = need()
      epoch = m.epoch
      plans.clear()
      halted = false
      events = m.events
      lastTurn = performance.now()
      for (const w of m.writes) writeParams(s.model, s.layout, w.start, w.values)
      s.step = m.step
      await run(s, m.to)
      return
    }
    case 'plan':
      if (m.epoch !== epoch) return
      plans.set(m.at, m)
      wake()
      return
    case 'halt':
      halted = true
      wake()
      return
    case 'stats': {
      const sched = scope.threadSchedstat?.().split(' ').map(Number)
      const gcMs = scope.threadGcMs?.()
      post({ type: 'stats', ...times, runAt, heldAt, fenceWaitsMs, ...(gcMs === undefined ? {} : { gcMs }), ...(sched === undefined ? {} : { cpuMs: sched[0] / 1e6, waitMs: sched[1] / 1e6 }) })
      runAt = NaN
      fenceWaitsMs = []
      return
    }
    default:
      throw new TrainArgumentError(`unknown trainer-thread message ${(m as { type: string }).type}`)
  }
}

function need (): State {
  if (state === undefined) throw new TrainArgumentError('the trainer thread got work before init')
  return state
}

scope.onmessage = ev => {
  handle(ev.data).catch((e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e))
    post({ type: 'error', name: err.name, message: err.message })
  })
}
