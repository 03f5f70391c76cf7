/**
 * Tensors larger than one storage binding (issue #10). `GpuBackend.tensor()` stores data of more
 * than `splitBytes` bytes (the device's maxStorageBufferBindingSize / maxBufferSize, or a smaller
 * `maxBindingBytes` forced for tests) as consecutive row parts along dim 0, each its own buffer
 * of whole rows: a (V, C) embedding or LM head splits by vocabulary rows, an (E, I, C) expert
 * stack by whole experts. Model code sees one tensor; `read()`/`write()` reassemble; `linear`,
 * `embedding` and `expertFFN` loop over the parts; every other kernel refuses a split binding
 * with SplitTensorError naming the kernel.
 *
 *   const g = await GpuBackend.create({ maxBindingBytes: 4096 })
 *   const w = g.tensor(new Float32Array(64 * 32), [64, 32])   // 8 KiB → 2 parts of 32 rows
 *   rowParts(w)                                                // [{ t, row0: 0, rows: 32 }, { t, row0: 32, rows: 32 }]
 */
import type { DType, TypedArray } from './dtype.ts'
import { shapeString } from './dtype.ts'
import { SplitTensorError, TensorTooLargeError } from './errors.ts'
import { keep, Tensor, type Storage } from './tensor.ts'

/** The ops that take split tensors (each loops over the parts); backendOf refuses the rest. */
export const SPLIT_OPS: ReadonlySet<string> = new Set(['linear', 'embedding', 'expertFFN'])

/** One row part of a tensor: rows [row0, row0 + rows) of dim 0, stored in `t`. */
export interface RowPart {
  t: Tensor
  row0: number
  rows: number
}

/** The row parts of t; a tensor that is not split is its own single part. */
export function rowParts (t: Tensor): RowPart[] {
  const parts = t.storage.parts
  if (parts === undefined) return [{ t, row0: 0, rows: t.rank === 0 ? 1 : t.shape[0] }]
  const out: RowPart[] = []
  let row0 = 0
  for (const p of parts) {
    out.push({ t: p, row0, rows: p.shape[0] })
    row0 += p.shape[0]
  }
  return out
}

/**
 * Rows per part for `rows` rows of `rowBytes` bytes each, every part at most `limit` bytes:
 * the fewest parts, balanced (sizes differ by at most one row).
 */
export function planRowParts (rows: number, rowBytes: number, limit: number, what: string): number[] {
  const perPart = Math.floor(limit / rowBytes)
  if (perPart < 1) throw new TensorTooLargeError(`${what}: one row along dim 0 is ${rowBytes} bytes, more than the ${limit}-byte binding limit, so it cannot be split into row parts`)
  const n = Math.ceil(rows / perPart)
  const base = Math.floor(rows / n)
  const extra = rows % n
  return Array.from({ length: n }, (_, i) => base + (i < extra ? 1 : 0))
}

/** What split.ts needs of the backend (GpuBackend implements it; kept narrow to avoid a cycle). */
export interface PartStore {
  /** Uploads bytes that fit one binding as one exact-size buffer. */
  storeWhole: (data: TypedArray, shape: readonly number[], dtype: DType, meta?: Record<string, number>) => Tensor
}

/**
 * Stores host data of a (rows, ...rest) tensor as row parts of at most `limit` bytes each and
 * returns the tensor that owns them. Rows are the data's bytes / dim 0 (whole GGUF blocks for
 * the block dtypes, whose rows never share a block).
 */
export function storeSplit (g: PartStore & Tensor['backend'], data: TypedArray, shape: readonly number[], dtype: DType, limit: number, meta: Record<string, number> = {}): Tensor {
  const what = `${dtype} tensor ${shapeString(shape)} of ${data.byteLength} bytes`
  if (shape.length < 2) throw new TensorTooLargeError(`${what}: only tensors of rank ≥ 2 are split into row parts (the binding limit is ${limit} bytes)`)
  if (dtype === 'q8') throw new TensorTooLargeError(`${what}: q8 (block scales after the values) cannot be split into row parts (the binding limit is ${limit} bytes)`)
  const rows = shape[0]
  const rowBytes = data.byteLength / rows
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  const parts: Tensor[] = []
  let offset = 0
  for (const n of planRowParts(rows, rowBytes, limit, what)) {
    parts.push(keep(g.storeWhole(bytes.subarray(offset, offset + n * rowBytes), [n, ...shape.slice(1)], dtype, meta)))
    offset += n * rowBytes
  }
  const storage: Storage = { parts, bytes: data.byteLength, refs: 1, release: () => { for (const p of parts) p.dispose() } }
  return new Tensor(g, shape, dtype, storage, meta)
}

/** Reads every part and concatenates them, as the typed array the parts' reads return. */
export async function readSplit (t: Tensor, parts: readonly Tensor[]): Promise<TypedArray> {
  const reads = await Promise.all(parts.map(async p => await p.read()))
  const bytes = new Uint8Array(t.storage.bytes)
  let offset = 0
  for (const r of reads) {
    bytes.set(new Uint8Array(r.buffer, r.byteOffset, r.byteLength), offset)
    offset += r.byteLength
  }
  const Ctor = reads[0].constructor as new (b: ArrayBuffer) => TypedArray
  return new Ctor(bytes.buffer)
}

/** Overwrites every part from host data covering the whole tensor. */
export function writeSplit (t: Tensor, parts: readonly Tensor[], data: TypedArray): void {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  let offset = 0
  for (const p of parts) {
    p.backend.write(p, bytes.subarray(offset, offset + p.storage.bytes))
    offset += p.storage.bytes
  }
}

/** Throws SplitTensorError naming the op and input when any given tensor is split into row parts. */
export function expectUnsplit (op: string, inputs: Readonly<Record<string, Tensor | undefined>>): void {
  for (const [name, t] of Object.entries(inputs)) {
    if (t?.storage.parts !== undefined) throw new SplitTensorError(op, `${name} (${t.dtype} ${shapeString(t.shape)}) is split into ${t.storage.parts.length} row parts (larger than one binding); only ${[...SPLIT_OPS].join(', ')} take split tensors`)
  }
}
