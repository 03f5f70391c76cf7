/**
 * A DiLoCo worker's trainer thread (trainer-thread.ts) on a Node worker thread: the Web Worker
 * globals it uses over worker_threads' parentPort, as cli/span-thread.ts does for the compute
 * worker, plus the thread's own schedstat and garbage-collection time for the bench's breakdown. Node only: the page
 * would start trainer-thread.ts as a module Web Worker.
 */
import { Worker } from 'node:worker_threads'
import type { FromTrainer, ToTrainer } from './trainer-messages.ts'
import type { TrainerPort } from './thread-trainer.ts'

/**
 * The thread's first code (a CommonJS eval): `self` = globalThis with postMessage / onmessage over
 * parentPort, `threadSchedstat` (Linux: this thread's CPU and run-queue ns), `threadGcMs` (its GC so far), then TypeScript
 * loading (tsx, which a worker does not inherit from `node --import tsx`), then the entry.
 */
function bootstrap (tsxApi: string, entry: string): string {
  return `const { parentPort } = require('node:worker_threads')
const { readFileSync } = require('node:fs')
globalThis.self = globalThis
globalThis.postMessage = (m, transfer) => parentPort.postMessage(m, transfer)
globalThis.threadSchedstat = () => readFileSync('/proc/thread-self/schedstat', 'utf8')
let gcMs = 0
new (require('node:perf_hooks').PerformanceObserver)(list => { for (const e of list.getEntries()) gcMs += e.duration }).observe({ entryTypes: ['gc'] })
globalThis.threadGcMs = () => gcMs
Object.defineProperty(globalThis, 'onmessage', { set (f) { parentPort.on('message', data => f({ data })) } })
import(${JSON.stringify(tsxApi)}).then(api => { api.register(); return import(${JSON.stringify(entry)}) })`
}

/** Starts trainer-thread.ts on a worker thread, behind the Worker-like face ThreadTrainer drives. */
export function spawnTrainerThread (): TrainerPort {
  const w = new Worker(bootstrap(import.meta.resolve('tsx/esm/api'), new URL('./trainer-thread.ts', import.meta.url).href), { eval: true, name: 'webswarm trainer' })
  // Not unref'd: a run whose only other work is in this process (MemoryNetwork) waits on the
  // thread alone. DiLoCoWorker.dispose ends it.
  let exited = false
  const exit = new Promise<void>(resolve => { w.once('exit', () => { exited = true; resolve() }) })
  const face: TrainerPort = {
    onmessage: null,
    onerror: null,
    postMessage: (m: ToTrainer, transfer: Transferable[]) => { w.postMessage(m, transfer as ArrayBuffer[]) },
    terminate: async () => {
      if (!exited) await w.terminate()
      await exit
    }
  }
  w.on('message', (data: FromTrainer) => { face.onmessage?.({ data }) })
  w.on('error', (e: Error) => { face.onerror?.({ message: e.message }) })
  w.on('exit', code => { if (code !== 0) face.onerror?.({ message: `the trainer thread exited with code ${code}` }) })
  return face
}
