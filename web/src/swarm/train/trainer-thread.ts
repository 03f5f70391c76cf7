/**
 * A DiLoCo worker's trainer thread (a Web Worker's globals: `self.onmessage`, `postMessage`; in
 * Node behind trainer-thread-node.ts): the model, its inner AdamW and the inner loop, on the CPU
 * twins. The worker's thread keeps the network, the all-reduce and the codec, and meets this one
 * only at fences — a sync's step, where it takes θ_local and hands back what the sync wrote — so
 * the steps between fences never wait for that thread's event loop (BENCHMARKS.md § Training,
 * session 9). The step itself is worker.ts's: the same windows (WindowStream), lr (innerLr) and
 * Trainer, so the bytes equal the in-thread path's.
 */
import { cpu } from '../../gpu/cpu-backend.ts'
import { TextDataset } from '../../model/data.ts'
import { evaluateLoss, Trainer } from '../../model/train.ts'
import { initModel, type CausalLM } from '../../model/model.ts'
import type { ScheduleOptions } from '../../model/schedule.ts'
import { TrainArgumentError } from './errors.ts'
import { layoutOf, type ParamLayout } from './flat.ts'
import { innerLr, readParams, WindowStream, writeParams } from './inner-loop.ts'
import type { FromTrainer, ParamWrite, ToTrainer } from './trainer-messages.ts'

interface WorkerScope {
  postMessage: (m: FromTrainer, transfer?: Transferable[]) => void
  onmessage: ((ev: { data: ToTrainer }) => void) | null
  /** Linux's /proc/thread-self/schedstat of this thread, where the host provides it (trainer-thread-node.ts). */
  threadSchedstat?: () => string
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
/** Set by `halt`: the current run stops after its step in progress. */
let halted = false
/** Wall time in inner steps since the thread started, ms. */
let stepMs = 0

function post (m: FromTrainer, transfer: Transferable[] = []): void { scope.postMessage(m, transfer) }

function apply (s: State, writes: readonly ParamWrite[]): void {
  for (const w of writes) writeParams(s.model, s.layout, w.start, w.values)
}

/** One turn of the event loop, so a `halt` that arrived during a step is seen (worker.ts `nextTurn`). */
async function nextTurn (): Promise<void> {
  await new Promise<void>(resolve => {
    if (typeof setImmediate === 'function') { setImmediate(resolve); return }
    const ch = new MessageChannel()
    ch.port1.onmessage = () => { ch.port1.close(); resolve() }
    ch.port2.postMessage(null)
  })
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
      halted = false
      apply(s, m.writes)
      if (m.step !== undefined) s.step = m.step
      while (s.step < m.to && !halted) {
        const t0 = performance.now()
        const r = await s.trainer.trainStep(s.windows.next(s.step), innerLr(s.schedule, s.step + 1, s.trainer.step + 1))
        const ms = performance.now() - t0
        stepMs += ms
        s.step++
        post({ type: 'step', e: { step: s.step, loss: r.loss, tokens: r.tokens, ms, lr: r.lr } })
        await nextTurn()
      }
      const local = await readParams(s.model, s.layout)
      post({ type: 'fence', step: s.step, local }, [local.buffer])
      return
    }
    case 'halt':
      halted = true
      return
    case 'eval': {
      const s = need()
      apply(s, m.writes)
      const local = await readParams(s.model, s.layout)
      writeParams(s.model, s.layout, 0, m.global)
      try {
        post({ type: 'evaluated', loss: await evaluateLoss(s.model, m.windows) })
      } finally {
        writeParams(s.model, s.layout, 0, local)
      }
      return
    }
    case 'stats': {
      const sched = scope.threadSchedstat?.().split(' ').map(Number)
      post({ type: 'stats', stepMs, ...(sched === undefined ? {} : { cpuMs: sched[0] / 1e6, waitMs: sched[1] / 1e6 }) })
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
