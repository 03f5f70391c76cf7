/** CPU twins of shaders/embedding.wgsl, embedding_quant.wgsl and embedding_backward.wgsl, and the id check. */
import type { WeightDType } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import { storageBytes } from '../quant-types.ts'
import { dequantize } from './dequant.ts'
import { alloc, type Floats } from './elementwise.ts'

/** A token id (or target) outside [0, V) that is not the ignore index. */
export class IdRangeError extends ShapeError {
  override name = 'IdRangeError'
}

/**
 * Throws IdRangeError naming the op, position and id when an id lies outside [0, V) and is not
 * `ignoreIndex`. The CPU twins call it; GPU kernels cannot throw (they clamp), so callers run it
 * on the host before uploading ids.
 */
export function validateIds (ids: Int32Array, V: number, op = 'embedding', ignoreIndex?: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (id === ignoreIndex) continue
    if (id < 0 || id >= V) {
      const allowed = ignoreIndex === undefined ? '' : ` (or the ignore index ${ignoreIndex})`
      throw new IdRangeError(op, `id ${id} at position ${i} is outside [0, ${V})${allowed}`)
    }
  }
}

/** out[t, c] = table[ids[t], c]: ids (T), table (V, C) → (T, C). */
export function embedding<A extends Floats> (ids: Int32Array, table: A, V: number, C: number): A {
  validateIds(ids, V, 'embedding')
  const out = alloc(table, ids.length * C)
  for (let t = 0; t < ids.length; t++) {
    for (let c = 0; c < C; c++) out[t * C + c] = table[ids[t] * C + c]
  }
  return out
}

/**
 * out[t, :] = dequantize(table row ids[t]): ids (T), table (V, C) as the bytes of a weight dtype
 * (f32, f16, bf16 little-endian words, or GGUF blocks: one row is C / block blocks) → (T, C) f32.
 */
export function embeddingWeights (ids: Int32Array, table: Uint8Array, dtype: WeightDType, V: number, C: number): Float32Array {
  validateIds(ids, V, 'embedding')
  const rowBytes = storageBytes(dtype, [1, C])
  const out = new Float32Array(ids.length * C)
  for (let t = 0; t < ids.length; t++) {
    const row = table.subarray(ids[t] * rowBytes, (ids[t] + 1) * rowBytes)
    out.set(dequantize(dtype, row, C), t * C)
  }
  return out
}

/** dtable[v, c] = Σ_{t: ids[t] = v} dy[t, c], tokens added in increasing t: ids (T), dy (T, C) → (V, C). */
export function embeddingBackward<A extends Floats> (ids: Int32Array, dy: A, V: number, C: number): A {
  validateIds(ids, V, 'embeddingBackward')
  const dtable = alloc(dy, V * C)
  for (let t = 0; t < ids.length; t++) {
    for (let c = 0; c < C; c++) dtable[ids[t] * C + c] += dy[t * C + c]
  }
  return dtable
}
