/**
 * ExpertRole's layers on the real model (web/src/model): one MoE layer's experts loaded from a
 * URL/dir on either backend, disposable when a re-check moves the peer off that layer, and a
 * short measurement of how many rows per second they run (the throughput a host announces).
 */
import type { Backend } from '../../gpu/backend.ts'
import { loadBlocks, type LoadOptions } from '../../model/model.ts'
import type { ModelSource } from '../../model/source.ts'
import { SwarmArgumentError } from '../errors.ts'
import { ModelExpertRunner } from '../model-backend.ts'
import type { LoadedExpertLayer } from './expert-role.ts'

/** Loads MoE layer `layer` (the whole block: the weights reader loads by parameter, not by expert slice). */
export async function loadExpertLayer (source: ModelSource, be: Backend, model: string, layer: number, opts: LoadOptions = {}): Promise<LoadedExpertLayer> {
  const span = await loadBlocks(source, be, { start: layer, end: layer + 1 }, opts)
  const moe = span.blocks[0].moe
  if (moe === undefined) {
    for (const t of span.params.values()) t.dispose()
    throw new SwarmArgumentError(`layer ${layer} is not a MoE layer`)
  }
  const all = new Set(Array.from({ length: moe.config.numExperts }, (_, e) => e))
  const runner = new ModelExpertRunner(model, new Map([[layer, moe]]), new Map([[layer, all]]))
  return {
    run: async items => await runner.run(layer, items),
    dispose: () => {
      for (const t of span.params.values()) t.dispose()
      span.params.clear()
    }
  }
}

/** Rows per measurement call, per expert: a decode batch's worth. */
const MEASURE_ROWS = 8

/**
 * Rows per second one expert of `layer` runs: one warm-up call, then `calls` timed calls of
 * MEASURE_ROWS rows through every expert. What an expert host announces as its throughput.
 */
export async function measureExpertThroughput (layer: LoadedExpertLayer, numExperts: number, hiddenSize: number, calls = 3): Promise<number> {
  const rows = new Float32Array(MEASURE_ROWS * hiddenSize).map((_, i) => Math.sin(i) * 0.5)
  const items = Array.from({ length: numExperts }, (_, expert) => ({ expert, rows, count: MEASURE_ROWS }))
  await layer.run(items)
  const t0 = performance.now()
  for (let i = 0; i < calls; i++) await layer.run(items)
  const s = (performance.now() - t0) / 1000
  return s <= 0 ? MEASURE_ROWS * numExperts * calls : MEASURE_ROWS * numExperts * calls / s
}
