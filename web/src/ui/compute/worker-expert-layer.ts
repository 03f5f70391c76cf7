/**
 * One MoE layer's experts run in the compute worker (span-worker.ts), for the page's expert host:
 * the ExpertRole calls it like the in-page layer (swarm/moe/model-layers.ts loadExpertLayer), and
 * the page stays responsive while the worker computes.
 */
import type { ProgressFn } from '../../model/weights.ts'
import type { LoadedExpertLayer } from '../../swarm/moe/expert-role.ts'
import { WorkerComputeError } from '../errors.ts'
import type { FromWorker } from './messages.ts'
import { spawnComputeWorker, WorkerChannel, type SpanWorker } from './worker-channel.ts'

export interface WorkerExpertInit {
  url: string
  /** The files the relay lists for the model (model/source.ts UrlSourceOptions). @default undefined: probed */
  files?: readonly string[]
  model: string
  layer: number
  device: 'webgpu' | 'cpu'
  onProgress?: ProgressFn
  /** Starts the worker running span-worker.ts. @default a module Web Worker */
  spawn?: () => SpanWorker
}

/** Starts a worker and loads layer `layer`'s experts in it; resolves once they are loaded. */
export async function loadWorkerExpertLayer (init: WorkerExpertInit): Promise<LoadedExpertLayer> {
  const worker = init.spawn?.() ?? spawnComputeWorker(`experts ${init.model} layer ${init.layer}`)
  const { channel } = await WorkerChannel.open(worker,
    { type: 'load-experts', id: 0, url: init.url, files: init.files, model: init.model, layer: init.layer, device: init.device },
    (m): m is Extract<FromWorker, { type: 'experts-loaded' }> => m.type === 'experts-loaded', `experts of layer ${init.layer}`, init.onProgress)
  return {
    run: async items => {
      const id = channel.id()
      // Copies: the caller may hold views into larger buffers; the copies are moved, not cloned.
      const moved = items.map(it => ({ expert: it.expert, rows: it.rows.slice(), count: it.count }))
      const reply = await channel.request(id, { type: 'experts', id, items: moved }, moved.map(it => it.rows.buffer))
      if (reply.type === 'result') return reply.outs
      if (reply.type === 'error') throw new WorkerComputeError(`experts of layer ${init.layer} in the compute worker: ${reply.name}: ${reply.message}`)
      throw new WorkerComputeError(`unexpected ${reply.type} answer to an expert call`)
    },
    dispose: () => { channel.close() }
  }
}
