/**
 * The compute worker: loads one span of a model's blocks, or one MoE layer's experts, on its own
 * WebGPU device (WebGPU is exposed to dedicated workers) or on the CPU twins, and runs forward
 * steps for the page's block server or expert host. One worker per served span or layer; the page
 * terminates it to free everything.
 */
import type { Backend } from '../../gpu/backend.ts'
import { cpu } from '../../gpu/cpu-backend.ts'
import { sourceFrom } from '../../model/source.ts'
import type { SpanBackend, SpanCache } from '../../swarm/server/backend.ts'
import { loadSpanBackend } from '../../swarm/model-backend.ts'
import type { LoadedExpertLayer } from '../../swarm/moe/expert-role.ts'
import { loadExpertLayer } from '../../swarm/moe/model-layers.ts'
import type { FromWorker, ToWorker } from './messages.ts'

const scope = self as unknown as { postMessage: (m: FromWorker, transfer?: Transferable[]) => void, onmessage: ((ev: MessageEvent<ToWorker>) => void) | null }
let span: SpanBackend | undefined
let experts: LoadedExpertLayer | undefined
const caches = new Map<number, SpanCache>()
/** Why a cache could not be created (reported by the forward that names it). */
const cacheErrors = new Map<number, string>()
// Messages are handled one after another: a forward never overlaps a load or another forward.
let queue: Promise<void> = Promise.resolve()

async function backendFor (device: 'webgpu' | 'cpu'): Promise<Backend> {
  if (device === 'cpu') return cpu
  const { GpuBackend } = await import('../../gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

async function handle (m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'load': {
      const be = await backendFor(m.device)
      span = await loadSpanBackend(sourceFrom(m.url, { files: m.files }), be, m.model, m.start, m.end, {}, {
        onProgress: p => { scope.postMessage({ type: 'progress', id: m.id, progress: { ...p } }) }
      })
      scope.postMessage({ type: 'loaded', id: m.id, hiddenSize: span.hiddenSize, cacheBytesPerToken: span.cacheBytesPerToken })
      return
    }
    case 'load-experts': {
      experts = await loadExpertLayer(sourceFrom(m.url, { files: m.files }), await backendFor(m.device), m.model, m.layer, {
        onProgress: p => { scope.postMessage({ type: 'progress', id: m.id, progress: { ...p } }) }
      })
      scope.postMessage({ type: 'experts-loaded', id: m.id })
      return
    }
    case 'experts': {
      try {
        if (experts === undefined) throw new Error('no expert layer loaded')
        const outs = await experts.run(m.items)
        scope.postMessage({ type: 'result', id: m.id, outs, lengths: [] }, outs.map(o => o.buffer))
      } catch (e) {
        scope.postMessage({ type: 'error', id: m.id, name: (e as Error).name, message: (e as Error).message })
      }
      return
    }
    case 'cache': {
      try {
        if (span === undefined) throw new Error('no span loaded')
        caches.set(m.cache, span.createCache(m.capacity, m.start, m.end))
      } catch (e) {
        cacheErrors.set(m.cache, (e as Error).message)
      }
      return
    }
    case 'free': {
      caches.get(m.cache)?.dispose()
      caches.delete(m.cache)
      cacheErrors.delete(m.cache)
      return
    }
    case 'forward': {
      const lengths = (): number[] => m.steps.map(s => caches.get(s.cache)?.length ?? 0)
      try {
        if (span === undefined) throw new Error('no span loaded')
        const steps = m.steps.map(s => {
          const cache = caches.get(s.cache)
          if (cache === undefined) throw new Error(`cache ${s.cache}: ${cacheErrors.get(s.cache) ?? 'unknown or freed'}`)
          return { cache, hidden: s.hidden, tokens: s.tokens }
        })
        const outs = await span.forward(steps)
        scope.postMessage({ type: 'result', id: m.id, outs, lengths: lengths() }, outs.map(o => o.buffer))
      } catch (e) {
        scope.postMessage({ type: 'error', id: m.id, name: (e as Error).name, message: (e as Error).message, lengths: lengths() })
      }
    }
  }
}

scope.onmessage = ev => {
  const m = ev.data
  queue = queue.then(async () => { await handle(m) }).catch(e => {
    // A failed load answers its request; nothing else reaches here (forward answers its own errors).
    scope.postMessage({ type: 'error', id: 'id' in m ? m.id : -1, name: (e as Error).name, message: (e as Error).message })
  })
}
