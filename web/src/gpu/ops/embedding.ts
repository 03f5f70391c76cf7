import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/embedding.ts'
import { shapeString, type DType } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import { blockInfo } from '../quant-types.ts'
import { expectUnsplit, rowParts } from '../split.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, expectShape, groups, isCpu } from './util.ts'
import { bytesOf, expectWeightDType, weightType } from './weight-decode.ts'

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

/** The gather from a table in any weight dtype, or from one row part of a split table. */
const EMBEDDING_QUANT = defineKernel({
  name: 'embedding_quant', shader: 'embedding_quant', entry: 'embedding_quant',
  bindings: [
    { name: 'ids', type: 'i32' }, // (T)
    { name: 'w', type: 'u32' }, // rows [row0, row0 + rows) of the (V, C) table, its bytes as words
    { name: 'out', type: 'f32', access: 'read_write' } // (T, C)
  ],
  uniforms: [
    { name: 'T', type: 'u32' }, // tokens
    { name: 'C', type: 'u32' }, // channels
    { name: 'V', type: 'u32' }, // vocabulary rows of the whole table (ids are clamped to [0, V))
    { name: 'row0', type: 'u32' }, // first table row in w
    { name: 'rows', type: 'u32' } // table rows in w
  ]
})

/** The embedding_quant variant for a table dtype (WTYPE of shaders/lib/weight_decode.wgsl). */
export function embeddingQuantVariant (dtype: DType): Variant {
  return { key: `embedding_quant-${dtype}-wg${WG}`, entry: 'embedding_quant', workgroupSize: [WG], constants: { WTYPE: weightType('embedding', 'table', dtype) } }
}

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

/**
 * GPU vs CPU twin: the gather is a copy; a decoded element is one or two f32 products (d·sc·q −
 * dmin·m), which a GPU may fuse (FMA): a few ulps of the row's scale. The scatter-add sums in the
 * twin's order, in f32.
 */
export const TOLERANCE = {
  embedding: { atol: 0, rtol: 0 },
  embeddingQuant: { atol: 1e-6, rtol: 1e-6 },
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
 * Gathers rows of `table` (V, C) for ids (T) i32 → (T, C) f32. The table may be in any weight
 * dtype (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k: rows are decoded, never widened in GPU
 * memory) and split into row parts (each part gathers the ids in its rows). The CPU path throws
 * IdRangeError on an id outside [0, V); the GPU path reads nothing back and clamps, so callers
 * validate ids on the host (`validateIds`) before uploading them.
 */
export function embedding (ids: Tensor, table: Tensor): Tensor {
  const be = backendOf('embedding', ids, table)
  const T = checkIds('embedding', ids)
  expectUnsplit('embedding', { ids })
  const dtype = expectWeightDType('embedding', 'table', table)
  expectRank('embedding', 'table', table, 2)
  const [V, C] = table.shape
  checkVocab('embedding', V, T)
  if (C % blockInfo(dtype).elems !== 0) throw new ShapeError('embedding', `${dtype} table ${shapeString(table.shape)}: C = ${C} is not a multiple of the ${blockInfo(dtype).elems}-value block`)
  if (isCpu(be)) {
    if (dtype === 'f32') return cpu.wrap(twin.embedding(ids.data as Int32Array, table.data as Float32Array, V, C), [T, C])
    return cpu.wrap(twin.embeddingWeights(ids.data as Int32Array, bytesOf(table.data), dtype, V, C), [T, C])
  }
  const g = be as GpuBackend
  const out = g.empty([T, C])
  if (table.dtype === 'f32' && !table.split) {
    g.run(EMBEDDING, FLAT('embedding'), { ids, table, out }, { T, C, V }, g.grid1d(groups(T * C, WG)))
    return out
  }
  const variant = embeddingQuantVariant(table.dtype)
  for (const p of rowParts(table)) {
    g.run(EMBEDDING_QUANT, variant, { ids, w: p.t, out }, { T, C, V, row0: p.row0, rows: p.rows }, g.grid1d(groups(T * C, WG)))
  }
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
  expectUnsplit('embeddingBackward', { ids, dy })
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
