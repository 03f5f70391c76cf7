/**
 * Runs `syncs` syncs on each worker, aborting each one's run from its own step event at `step`
 * (the trainer-thread abort tests); resolves to what each run threw. The onStep hook is removed
 * afterwards, so a later run posts no step events.
 */
import type { DiLoCoWorker } from '../../../web/src/swarm/train/worker.ts'

type Hooks = { onStep?: (e: { step: number }) => void }

export async function runAbortedAt (workers: DiLoCoWorker[], step: number, syncs: number): Promise<unknown[]> {
  const outs = await Promise.all(workers.map(async w => {
    const ctl = new AbortController()
    ;(w.hooks as Hooks).onStep = e => { if (e.step === step) ctl.abort(new Error('stop')) }
    return await w.runSyncs(syncs, ctl.signal).catch((e: unknown) => e)
  }))
  for (const w of workers) (w.hooks as Hooks).onStep = undefined
  return outs
}
