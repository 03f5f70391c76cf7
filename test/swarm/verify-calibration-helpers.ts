/** Honest runs through spans on different backends and caches, for the verify tolerance's calibration tests. */
import type { Backend } from '../../web/src/gpu/backend.ts'
import { loadBlocks, type BlockSpan } from '../../web/src/model/model.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { Rng } from '../../web/src/util/rng.ts'

/** Honest runs must stay this many times under the threshold. */
export const MARGIN = 4
const PREFILL = 24
const DECODE = 24

/** Runs (PREFILL + DECODE, C) hidden states through `spans` in order: a prefill, then one position per step. */
export async function run (spans: BlockSpan[], dtype: 'f32' | 'f16', x: Float32Array, C: number): Promise<Float32Array> {
  const caches = spans.map(s => s.newCache(PREFILL + DECODE, dtype))
  const out = new Float32Array(x.length)
  // Spans run one after the other on each step's rows: read back between them (as a server hands them on).
  const through = async (from: number, n: number): Promise<void> => {
    let h: Float32Array = x.slice(from * C, (from + n) * C)
    for (let i = 0; i < spans.length; i++) {
      const y = spans[i].forward(spans[i].backend.tensor(h, [n, C]), caches[i])
      h = await y.readF32()
      y.dispose()
    }
    out.set(h, from * C)
  }
  await through(0, PREFILL)
  for (let t = PREFILL; t < PREFILL + DECODE; t++) await through(t, 1)
  for (const c of caches) c.dispose()
  return out
}

/** Residual-stream-like inputs: the scale of an embedding row, with a few large channels. */
export function inputs (C: number, seed: number): Float32Array {
  const rng = new Rng(seed)
  const x = new Float32Array((PREFILL + DECODE) * C)
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * rng.normal() * (i % C === 3 ? 8 : 1)
  return x
}

export async function spansOf (dir: string, be: Backend, split: number[]): Promise<BlockSpan[]> {
  const out: BlockSpan[] = []
  for (let i = 0; i + 1 < split.length; i++) out.push(await loadBlocks(sourceFrom(dir), be, { start: split[i], end: split[i + 1] }))
  return out
}
