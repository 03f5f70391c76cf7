import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/embedding.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, expectShape, groups, isCpu } from './util.ts'

export { IdRangeError, validateIds } from '../cpu/embedding.ts'

/** Threads per workgroup of the flat embedding kernels (one element or token each). */
const WG = 256
const FLAT = (entry: string): Variant => ({ key: `${entry}-wg${WG}`, entry, workgroupSize: [WG] })

const EMBEDDING = defineKernel({
  name: 'embedding', shader: 'embedding', entry: 'embedding',
  bindings: [
    { name: 'ids', type: 'i32' }, // (T)
    { name: 'table', type: 'f32' }, // (V, C)
    { name: 'out', type: 'f32', access: 'read_write' } // (T, C)
  ],
  uniforms: [
    { name: 'T', type: 'u32' }, // tokens
    { name: 'C', type: 'u32' }, // channels
    { name: 'V', type: 'u32' } // vocabulary rows (ids are clamped to [0, V))
  ]
})

const EMBEDDING_BACKWARD = defineKernel({
  name: 'embedding_backward', shader: 'embedding_backward',
  bindings: [
    { name: 'ids', type: 'i32' }, // (T)
    { name: 'dy', type: 'f32' }, // (T, C)
    { name: 'dtable', type: 'f32', access: 'read_write' }, // (V, C)
    { name: 'links', type: 'i32', access: 'read_write' } // (T, 2) [next same-id token, first?]
  ],
  uniforms: EMBEDDING.uniforms
})

/** GPU vs CPU twin: the gather is a copy; the scatter-add sums in the twin's order, in f32. */
export const TOLERANCE = {
  embedding: { atol: 0, rtol: 0 },
  embeddingBackward: { atol: 1e-6, rtol: 1e-6 }
} as const

function checkIds (op: string, ids: Tensor): number {
  expectDType(op, 'ids', ids, 'i32')
  expectRank(op, 'ids', ids, 1)
  return ids.shape[0]
}

function checkVocab (op: string, V: number, T: number): void {
  if (!Number.isInteger(V) || V < 0) throw new ShapeError(op, `V must be a non-negative integer, got ${V}`)
  if (V === 0 && T > 0) throw new ShapeError(op, `V = 0 leaves no valid id for ${T} tokens`)
}

/**
 * Gathers rows of `table` (V, C) for ids (T) i32 → (T, C). The CPU path throws IdRangeError on
 * an id outside [0, V); the GPU path reads nothing back and clamps, so callers validate ids on
 * the host (`validateIds`) before uploading them.
 */
export function embedding (ids: Tensor, table: Tensor): Tensor {
  const be = backendOf('embedding', ids, table)
  const T = checkIds('embedding', ids)
  expectDType('embedding', 'table', table, 'f32')
  expectRank('embedding', 'table', table, 2)
  const [V, C] = table.shape
  checkVocab('embedding', V, T)
  if (isCpu(be)) return cpu.wrap(twin.embedding(ids.data as Int32Array, table.data as Float32Array, V, C), [T, C])
  const g = be as GpuBackend
  const out = g.empty([T, C])
  g.run(EMBEDDING, FLAT('embedding'), { ids, table, out }, { T, C, V }, g.grid1d(groups(T * C, WG)))
  return out
}

/**
 * Gradient of `embedding` w.r.t. the table: dtable (V, C) = Σ over tokens of dy (T, C) rows,
 * deterministic (fixed order, no float atomics). Ids as in `embedding`.
 */
export function embeddingBackward (ids: Tensor, dy: Tensor, V: number): Tensor {
  const be = backendOf('embeddingBackward', ids, dy)
  const T = checkIds('embeddingBackward', ids)
  expectDType('embeddingBackward', 'dy', dy, 'f32')
  expectRank('embeddingBackward', 'dy', dy, 2)
  expectShape('embeddingBackward', 'dy', dy, [T, -1])
  const C = dy.shape[1]
  checkVocab('embeddingBackward', V, T)
  if (isCpu(be)) return cpu.wrap(twin.embeddingBackward(ids.data as Int32Array, dy.data as Float32Array, V, C), [V, C])
  const g = be as GpuBackend
  const dtable = g.zeros([V, C])
  const links = g.empty([T, 2], 'i32')
  const uniforms = { T, C, V }
  g.run(EMBEDDING_BACKWARD, FLAT('embedding_links'), { ids, dy, dtable, links }, uniforms, g.grid1d(groups(T, WG)))
  g.run(EMBEDDING_BACKWARD, FLAT('embedding_backward'), { ids, dy, dtable, links }, uniforms, g.grid1d(groups(T * C, WG)))
  links.dispose()
  return dtable
}
