import { ModelArgumentError } from '../errors.ts'
import { ggmlTypeInfo, ggmlTypeName } from './ggml-types.ts'
import { encodeValues, encodedBytes } from './quantize.ts'
import { DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufType, type GgufScalar, type GgufValue } from './read.ts'

/**
 * A GGUF v3 writer (the inverse of read.ts). Tensors are encoded and written one chunk of rows
 * at a time through a sink, so a real-shape model (the bench's 1B) streams to a file without
 * ever holding the file, or one tensor's f32 values, in memory.
 */

/** Rows [start, start + count) of a tensor as f32, row-major. */
export type RowSource = (start: number, count: number) => Float32Array

export interface GgufWriteTensor {
  name: string
  /** Row-major shape, outermost first: a weight (N, K); K must be whole blocks of `type`. */
  shape: readonly number[]
  /** GGML type id to store it as. */
  type: number
  /**
   * f32 values (encoded by the writer), rows produced on demand, or bytes already in `type`'s
   * encoding (written as they are).
   */
  data: Float32Array | RowSource | Uint8Array
}

/** Receives the file's bytes in order. */
export type GgufSink = (chunk: Uint8Array) => void | Promise<void>

/** Rows are encoded this many f32 bytes at a time (bounds memory for real-shape tensors). */
const CHUNK_F32_BYTES = 16 << 20

export const gv = {
  u8: (v: number): GgufValue => ({ type: GgufType.UINT8, value: v }),
  i32: (v: number): GgufValue => ({ type: GgufType.INT32, value: v }),
  u32: (v: number): GgufValue => ({ type: GgufType.UINT32, value: v }),
  u64: (v: number | bigint): GgufValue => ({ type: GgufType.UINT64, value: BigInt(v) }),
  f32: (v: number): GgufValue => ({ type: GgufType.FLOAT32, value: v }),
  bool: (v: boolean): GgufValue => ({ type: GgufType.BOOL, value: v }),
  str: (v: string): GgufValue => ({ type: GgufType.STRING, value: v }),
  arr: (itemType: Exclude<GgufType, GgufType.ARRAY>, value: GgufScalar[]): GgufValue => ({ type: GgufType.ARRAY, itemType, value })
}

class ByteBuf {
  private buf = new Uint8Array(1 << 16)
  private dv = new DataView(this.buf.buffer)
  len = 0
  private readonly enc = new TextEncoder()

  private room (n: number): void {
    if (this.len + n <= this.buf.byteLength) return
    const next = new Uint8Array(Math.max(2 * this.buf.byteLength, this.len + n))
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
    this.dv = new DataView(next.buffer)
  }

  u8 (v: number): void { this.room(1); this.dv.setUint8(this.len, v); this.len += 1 }
  i8 (v: number): void { this.room(1); this.dv.setInt8(this.len, v); this.len += 1 }
  u16 (v: number): void { this.room(2); this.dv.setUint16(this.len, v, true); this.len += 2 }
  i16 (v: number): void { this.room(2); this.dv.setInt16(this.len, v, true); this.len += 2 }
  u32 (v: number): void { this.room(4); this.dv.setUint32(this.len, v, true); this.len += 4 }
  i32 (v: number): void { this.room(4); this.dv.setInt32(this.len, v, true); this.len += 4 }
  f32 (v: number): void { this.room(4); this.dv.setFloat32(this.len, v, true); this.len += 4 }
  f64 (v: number): void { this.room(8); this.dv.setFloat64(this.len, v, true); this.len += 8 }
  u64 (v: bigint | number): void { this.room(8); this.dv.setBigUint64(this.len, BigInt(v), true); this.len += 8 }
  i64 (v: bigint | number): void { this.room(8); this.dv.setBigInt64(this.len, BigInt(v), true); this.len += 8 }
  str (s: string): void {
    const b = this.enc.encode(s)
    this.u64(b.byteLength)
    this.room(b.byteLength)
    this.buf.set(b, this.len)
    this.len += b.byteLength
  }

  pad (alignment: number): void {
    const n = (alignment - (this.len % alignment)) % alignment
    this.room(n)
    this.buf.fill(0, this.len, this.len + n)
    this.len += n
  }

  bytes (): Uint8Array { return this.buf.subarray(0, this.len) }
}

function writeScalar (b: ByteBuf, type: GgufType, v: GgufScalar, key: string): void {
  const bad = (): never => { throw new ModelArgumentError(`GGUF metadata '${key}': value ${String(v)} does not fit type ${GgufType[type]}`) }
  const int = (lo: number, hi: number): number => (typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi) ? v : bad()
  switch (type) {
    case GgufType.UINT8: b.u8(int(0, 255)); return
    case GgufType.INT8: b.i8(int(-128, 127)); return
    case GgufType.UINT16: b.u16(int(0, 65535)); return
    case GgufType.INT16: b.i16(int(-32768, 32767)); return
    case GgufType.UINT32: b.u32(int(0, 2 ** 32 - 1)); return
    case GgufType.INT32: b.i32(int(-(2 ** 31), 2 ** 31 - 1)); return
    case GgufType.FLOAT32: if (typeof v !== 'number') bad(); b.f32(v as number); return
    case GgufType.FLOAT64: if (typeof v !== 'number') bad(); b.f64(v as number); return
    case GgufType.BOOL: if (typeof v !== 'boolean') bad(); b.u8(v === true ? 1 : 0); return
    case GgufType.STRING: if (typeof v !== 'string') bad(); b.str(v as string); return
    case GgufType.UINT64: if (typeof v !== 'bigint' && typeof v !== 'number') bad(); b.u64(v as bigint); return
    case GgufType.INT64: if (typeof v !== 'bigint' && typeof v !== 'number') bad(); b.i64(v as bigint); return
    default: throw new ModelArgumentError(`GGUF metadata '${key}': cannot write value type ${String(type)}`)
  }
}

function tensorBytes (t: GgufWriteTensor): number {
  const n = t.shape.reduce((a, b) => a * b, 1)
  const info = ggmlTypeInfo(t.type)
  if (info === undefined) throw new ModelArgumentError(`tensor '${t.name}': unknown GGML type id ${t.type}`)
  const K = t.shape[t.shape.length - 1]
  if (t.shape.length < 1 || t.shape.length > 4 || K % info.blockElems !== 0) {
    throw new ModelArgumentError(`tensor '${t.name}': shape [${t.shape.join(', ')}] cannot be stored as ${info.name} (rows must be whole blocks of ${info.blockElems})`)
  }
  return encodedBytes(t.type, n)
}

/** The header (magic … tensor infos, padded to the alignment) and each tensor's data size. */
export function ggufHeaderBytes (metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufWriteTensor[], alignment = DEFAULT_ALIGNMENT): { header: Uint8Array, sizes: number[] } {
  const b = new ByteBuf()
  b.u32(GGUF_MAGIC)
  b.u32(GGUF_VERSION)
  b.u64(tensors.length)
  const md = new Map(metadata)
  if (alignment !== DEFAULT_ALIGNMENT) md.set('general.alignment', gv.u32(alignment))
  b.u64(md.size)
  for (const [key, v] of md) {
    b.str(key)
    b.u32(v.type)
    if (v.type === GgufType.ARRAY) {
      b.u32(v.itemType)
      b.u64(v.value.length)
      for (const x of v.value) writeScalar(b, v.itemType, x, key)
    } else {
      writeScalar(b, v.type, v.value, key)
    }
  }
  const sizes: number[] = []
  let off = 0
  for (const t of tensors) {
    const n = tensorBytes(t)
    sizes.push(n)
    b.str(t.name)
    b.u32(t.shape.length)
    for (let d = t.shape.length - 1; d >= 0; d--) b.u64(t.shape[d]) // ne[0] is the row length
    b.u32(t.type)
    b.u64(off)
    off += Math.ceil(n / alignment) * alignment
  }
  b.pad(alignment)
  return { header: b.bytes().slice(), sizes }
}

/** Writes a whole GGUF file through `sink`, encoding tensors chunk by chunk. Returns its size. */
export async function writeGguf (sink: GgufSink, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufWriteTensor[], alignment = DEFAULT_ALIGNMENT): Promise<number> {
  const { header, sizes } = ggufHeaderBytes(metadata, tensors, alignment)
  await sink(header)
  let total = header.byteLength
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]
    let written = 0
    for (const chunk of encodeChunks(t, sizes[i])) {
      await sink(chunk)
      written += chunk.byteLength
    }
    if (written !== sizes[i]) throw new ModelArgumentError(`tensor '${t.name}': wrote ${written} bytes, ${ggmlTypeName(t.type)} [${t.shape.join(', ')}] needs ${sizes[i]}`)
    const pad = (alignment - (written % alignment)) % alignment
    if (pad > 0) await sink(new Uint8Array(pad)) // after the last tensor too, as gguf-py and llama.cpp do
    total += written + pad
  }
  return total
}

function * encodeChunks (t: GgufWriteTensor, bytes: number): Generator<Uint8Array> {
  const d = t.data
  const K = t.shape[t.shape.length - 1]
  const rows = t.shape.reduce((a, b) => a * b, 1) / K
  if (d instanceof Uint8Array) {
    if (d.byteLength !== bytes) throw new ModelArgumentError(`tensor '${t.name}': ${d.byteLength} bytes given, ${ggmlTypeName(t.type)} [${t.shape.join(', ')}] needs ${bytes}`)
    yield d
    return
  }
  if (d instanceof Float32Array) {
    if (d.length !== rows * K) throw new ModelArgumentError(`tensor '${t.name}': ${d.length} values given, shape [${t.shape.join(', ')}] needs ${rows * K}`)
  }
  const step = Math.max(1, Math.floor(CHUNK_F32_BYTES / (4 * K)))
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r)
    const x = d instanceof Float32Array ? d.subarray(r * K, (r + n) * K) : d(r, n)
    if (x.length !== n * K) throw new ModelArgumentError(`tensor '${t.name}': row source gave ${x.length} values for ${n} rows of ${K}`)
    yield encodeValues(t.type, x)
  }
}

/** A whole GGUF file in memory (tests, tiny models). */
export async function encodeGguf (metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufWriteTensor[], alignment = DEFAULT_ALIGNMENT): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  const n = await writeGguf(c => { parts.push(c) }, metadata, tensors, alignment)
  const out = new Uint8Array(n)
  let p = 0
  for (const c of parts) { out.set(c, p); p += c.byteLength }
  return out
}

/** Streams a GGUF file to disk (Node; node:fs is imported lazily so the browser bundle never needs it). */
export async function writeGgufFile (path: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufWriteTensor[], alignment = DEFAULT_ALIGNMENT): Promise<number> {
  const fs = await import('node:fs/promises')
  const fh = await fs.open(path, 'w')
  try {
    return await writeGguf(async c => {
      let done = 0
      while (done < c.byteLength) done += (await fh.write(c, done, c.byteLength - done)).bytesWritten
    }, metadata, tensors, alignment)
  } finally {
    await fh.close()
  }
}
