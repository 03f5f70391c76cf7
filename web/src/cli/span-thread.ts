/**
 * The page's compute worker (ui/compute/span-worker.ts) on a Node worker thread, for the block
 * server of `npm start`'s embedded peer: the relay's thread keeps HTTP/SSE, the API's head and
 * sampling, libp2p and the block server's sessions, and the thread runs the blocks — a second
 * core instead of one thread doing both in turn (BENCHMARKS.md § API). Same messages, same
 * worker code, same SpanBackend (ui/compute/worker-span-backend.ts); only the thread differs.
 */
import { Worker } from 'node:worker_threads'
import type { FromWorker, ToWorker } from '../ui/compute/messages.ts'
import { SpreadSpanBackend } from '../swarm/server/spread-span.ts'
import { WorkerSpanBackend } from '../ui/compute/worker-span-backend.ts'
import type { SpanWorker } from '../ui/compute/worker-channel.ts'

/**
 * The thread's first code (a CommonJS eval): the Web Worker globals span-worker.ts uses (`self`
 * = globalThis, as in a worker, with postMessage / onmessage) over worker_threads' parentPort,
 * then TypeScript loading (tsx, which a worker does not inherit from `node --import tsx`), then
 * span-worker.ts itself.
 */
function bootstrap (tsxApi: string, entry: string): string {
  return `const { parentPort } = require('node:worker_threads')
globalThis.self = globalThis
globalThis.postMessage = (m, transfer) => parentPort.postMessage(m, transfer)
Object.defineProperty(globalThis, 'onmessage', { set (f) { parentPort.on('message', data => f({ data })) } })
import(${JSON.stringify(tsxApi)}).then(api => { api.register(); return import(${JSON.stringify(entry)}) })`
}

/** Starts span-worker.ts on a worker thread, behind the Worker-like face WorkerSpanBackend drives. */
function spawnSpanThread (): SpanWorker {
  const w = new Worker(bootstrap(import.meta.resolve('tsx/esm/api'), new URL('../ui/compute/span-worker.ts', import.meta.url).href), { eval: true, name: 'webswarm span' })
  // The relay's HTTP server keeps the process alive; a lingering thread must not.
  w.unref()
  const face: SpanWorker = {
    onmessage: null,
    onerror: null,
    postMessage: (m: ToWorker, transfer: Transferable[]) => { w.postMessage(m, transfer as ArrayBuffer[]) },
    terminate: () => { void w.terminate() }
  }
  w.on('message', (data: FromWorker) => { face.onmessage?.({ data }) })
  w.on('error', (e: Error) => { face.onerror?.({ message: e.message }) })
  w.on('exit', code => { if (code !== 0) face.onerror?.({ message: `the span thread exited with code ${code}` }) })
  return face
}

/**
 * Blocks [start, end) of `model` (read from `url`: folder, file or URL) on the CPU twins in a
 * worker thread. Two forwards may be queued at once (pipelineDepth 2), so the block server
 * hands the thread its next batch while this thread answers the last. With `threads` > 1, that
 * many copies of the span, each on its own thread, each session's cache in one of them
 * (swarm/server/spread-span.ts): each copy holds the weights.
 */
export async function loadThreadSpan (url: string, model: string, start: number, end: number, threads = 1): Promise<WorkerSpanBackend | SpreadSpanBackend> {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be an integer ≥ 1, got ${threads}`)
  const load = async (): Promise<WorkerSpanBackend> => await WorkerSpanBackend.load({ url, model, start, end, device: 'cpu', spawn: spawnSpanThread, pipelineDepth: 2 })
  if (threads === 1) return await load()
  const settled = await Promise.allSettled(Array.from({ length: threads }, load))
  const parts = settled.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
  const failed = settled.find(r => r.status === 'rejected')
  if (failed !== undefined) {
    for (const p of parts) p.dispose()
    throw failed.reason
  }
  return new SpreadSpanBackend(parts)
}
