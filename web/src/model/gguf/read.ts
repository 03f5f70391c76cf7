import { CorruptWeightsError, UnsupportedDTypeError, WeightsSourceError } from '../errors.ts'
import type { ModelSource } from '../source.ts'
import { UnsupportedGgufError } from './errors.ts'
import { ggmlTypeInfo, ggmlTypeName } from './ggml-types.ts'

/**
 * The GGUF container (v3, little-endian), as llama.cpp's `ggml/src/gguf.cpp` reads it:
 *   u32 magic "GGUF" · u32 version · u64 tensor count · u64 kv count
 *   kv:     string key · u32 value type · value      (string = u64 length + UTF-8 bytes)
 *   tensor: string name · u32 n_dims · u64 ne[n_dims] · u32 ggml type · u64 offset
 *   padding to `general.alignment` (default 32) · tensor data (offsets relative to its start)
 * ne[0] is the innermost (contiguous) dimension: a PyTorch (N, K) weight has ne = [K, N].
 */

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3
export const DEFAULT_ALIGNMENT = 32

/** Limits on what a header may declare (CONTRIBUTING.md STYLE 8): real models stay far below each. */
export const LIMITS = {
  /** Tensors in one file (a 64-expert MoE with per-expert tensors has ~20k). */
  tensors: 1 << 20,
  /** Metadata keys in one file (real files: ~40). */
  kvs: 1 << 16,
  /** Bytes of one string (chat templates are ~10 KiB; 16 MiB is generous). */
  stringBytes: 16 << 20,
  /** Entries of one array (vocabularies ~256k, merges ~500k). */
  arrayLength: 1 << 24,
  /** Dimensions of a tensor (GGML_MAX_DIMS). */
  dims: 4,
  /** Bytes of the whole header (metadata + tensor infos): a 256k-token vocabulary is ~10 MiB. */
  headerBytes: 512 << 20
} as const

/** GGUF metadata value types (gguf.h `enum gguf_type`). */
export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12
}

/** A scalar value: 64-bit integers are bigint (exact), other numbers are number. */
export type GgufScalar = number | bigint | boolean | string

/** One metadata value with its declared type (an array carries its items' type). */
export type GgufValue =
  | { type: Exclude<GgufType, GgufType.ARRAY>, value: GgufScalar }
  | { type: GgufType.ARRAY, itemType: Exclude<GgufType, GgufType.ARRAY>, value: GgufScalar[] }

export interface GgufTensorInfo {
  name: string
  /** Row-major shape, outermost first (ne reversed): a weight (N, K). */
  shape: number[]
  /** GGML type id (see ggml-types.ts). */
  type: number
  /** Absolute byte offset of the data in the file. */
  offset: number
  /** Byte length of the data. */
  bytes: number
}

export interface GgufHeader {
  version: number
  metadata: Map<string, GgufValue>
  /** In file order. */
  tensors: Map<string, GgufTensorInfo>
  alignment: number
  /** Absolute offset where tensor data begins. */
  dataStart: number
}

/** Thrown by the parser when the buffer ends early; the caller reads more and retries. */
export class NeedMoreBytes extends Error {
  override name = 'NeedMoreBytes'
  constructor (readonly needed: number) { super(`header needs at least ${needed} bytes`) }
}

class Cursor {
  pos = 0
  private readonly dv: DataView
  private readonly text = new TextDecoder('utf-8', { fatal: true })

  constructor (private readonly buf: Uint8Array, private readonly complete: boolean, private readonly what: string) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  }

  private need (n: number): void {
    if (this.pos + n <= this.buf.byteLength) return
    if (this.complete) throw new CorruptWeightsError(`${this.what}: header ends at byte ${this.buf.byteLength} while reading ${n} bytes at ${this.pos} (truncated file?)`)
    throw new NeedMoreBytes(this.pos + n)
  }

  u8 (): number { this.need(1); return this.dv.getUint8(this.pos++) }
  i8 (): number { this.need(1); return this.dv.getInt8(this.pos++) }
  u16 (): number { this.need(2); const v = this.dv.getUint16(this.pos, true); this.pos += 2; return v }
  i16 (): number { this.need(2); const v = this.dv.getInt16(this.pos, true); this.pos += 2; return v }
  u32 (): number { this.need(4); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v }
  i32 (): number { this.need(4); const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v }
  f32 (): number { this.need(4); const v = this.dv.getFloat32(this.pos, true); this.pos += 4; return v }
  f64 (): number { this.need(8); const v = this.dv.getFloat64(this.pos, true); this.pos += 8; return v }
  u64 (): bigint { this.need(8); const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v }
  i64 (): bigint { this.need(8); const v = this.dv.getBigInt64(this.pos, true); this.pos += 8; return v }

  /** A u64 that must be ≤ limit (counts, lengths, offsets), as a number. */
  count (limit: number, field: string): number {
    const v = this.u64()
    if (v > BigInt(limit)) throw new CorruptWeightsError(`${this.what}: ${field} ${v} exceeds the limit ${limit}`)
    return Number(v)
  }

  string (field: string): string {
    const n = this.count(LIMITS.stringBytes, `length of ${field}`)
    this.need(n)
    const bytes = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    try {
      return this.text.decode(bytes)
    } catch {
      throw new CorruptWeightsError(`${this.what}: ${field} is not valid UTF-8`)
    }
  }
}

function readScalar (c: Cursor, type: number, key: string): GgufScalar {
  switch (type) {
    case GgufType.UINT8: return c.u8()
    case GgufType.INT8: return c.i8()
    case GgufType.UINT16: return c.u16()
    case GgufType.INT16: return c.i16()
    case GgufType.UINT32: return c.u32()
    case GgufType.INT32: return c.i32()
    case GgufType.FLOAT32: return c.f32()
    case GgufType.BOOL: {
      const b = c.u8()
      if (b > 1) throw new CorruptWeightsError(`metadata '${key}': bool byte ${b} is neither 0 nor 1`)
      return b === 1
    }
    case GgufType.STRING: return c.string(`the value of '${key}'`)
    case GgufType.UINT64: return c.u64()
    case GgufType.INT64: return c.i64()
    case GgufType.FLOAT64: return c.f64()
    default: throw new UnsupportedGgufError(`metadata '${key}': unknown value type ${type}`)
  }
}

function readValue (c: Cursor, key: string): GgufValue {
  const type = c.u32()
  if (type !== GgufType.ARRAY) return { type, value: readScalar(c, type, key) } as GgufValue
  const itemType = c.u32()
  if (itemType === GgufType.ARRAY) throw new UnsupportedGgufError(`metadata '${key}': arrays of arrays are not supported`)
  if (GgufType[itemType] === undefined) throw new UnsupportedGgufError(`metadata '${key}': unknown array item type ${itemType}`)
  const n = c.count(LIMITS.arrayLength, `array length of '${key}'`)
  const value: GgufScalar[] = new Array(n)
  for (let i = 0; i < n; i++) value[i] = readScalar(c, itemType, key)
  return { type: GgufType.ARRAY, itemType, value }
}

/**
 * Parses a GGUF header from its first bytes. `complete` says the buffer is the whole file (a
 * short buffer is then corrupt); otherwise running out throws NeedMoreBytes. `fileSize` bounds
 * every tensor's extent.
 */
export function parseGgufHeader (buf: Uint8Array, fileSize: number, what = 'gguf', complete = buf.byteLength >= fileSize): GgufHeader {
  const c = new Cursor(buf, complete, what)
  if (fileSize < 4) throw new CorruptWeightsError(`${what}: ${fileSize} bytes is too short for a GGUF file`)
  const magic = c.u32()
  if (magic !== GGUF_MAGIC) throw new CorruptWeightsError(`${what}: not a GGUF file (magic ${magic.toString(16).padStart(8, '0')}, expected 46554747 "GGUF")`)
  const version = c.u32()
  if (version === 1 || version === 2) throw new UnsupportedGgufError(`${what}: GGUF version ${version} is not supported (only version 3; re-convert the model with a current llama.cpp)`)
  if (version !== GGUF_VERSION) throw new CorruptWeightsError(`${what}: unknown GGUF version ${version} (expected 3; a big-endian file?)`)
  const nTensors = c.count(LIMITS.tensors, 'tensor count')
  const nKv = c.count(LIMITS.kvs, 'metadata count')

  const metadata = new Map<string, GgufValue>()
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key ${i}`)
    if (metadata.has(key)) throw new CorruptWeightsError(`${what}: metadata key '${key}' appears twice`)
    metadata.set(key, readValue(c, key))
  }

  let alignment = DEFAULT_ALIGNMENT
  const al = metadata.get('general.alignment')
  if (al !== undefined) {
    if (al.type !== GgufType.UINT32) throw new CorruptWeightsError(`${what}: general.alignment must be a u32`)
    alignment = al.value as number
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw new CorruptWeightsError(`${what}: general.alignment ${alignment} is not a power of two`)
  }

  const raw: Array<{ name: string, shape: number[], type: number, rel: number, bytes: number }> = []
  const names = new Set<string>()
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor name ${i}`)
    if (names.has(name)) throw new CorruptWeightsError(`${what}: tensor '${name}' appears twice`)
    names.add(name)
    const nDims = c.u32()
    if (nDims < 1 || nDims > LIMITS.dims) throw new CorruptWeightsError(`${what}: tensor '${name}' has ${nDims} dimensions (1 to ${LIMITS.dims} allowed)`)
    const ne: number[] = []
    let numel = 1
    for (let d = 0; d < nDims; d++) {
      const v = c.u64()
      if (v === 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptWeightsError(`${what}: tensor '${name}' has dimension ${d} of size ${v}`)
      ne.push(Number(v))
      numel *= Number(v)
    }
    if (!Number.isSafeInteger(numel)) throw new CorruptWeightsError(`${what}: tensor '${name}' has too many elements (${ne.join(' × ')})`)
    const type = c.u32()
    const info = ggmlTypeInfo(type)
    if (info === undefined) throw new UnsupportedDTypeError(`${what}: tensor '${name}' has unknown GGML type id ${type}`)
    if (ne[0] % info.blockElems !== 0) throw new CorruptWeightsError(`${what}: tensor '${name}' rows of ${ne[0]} elements are not whole ${info.name} blocks of ${info.blockElems}`)
    const relBig = c.u64()
    if (relBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptWeightsError(`${what}: tensor '${name}' offset ${relBig} is too large`)
    const rel = Number(relBig)
    if (rel % alignment !== 0) throw new CorruptWeightsError(`${what}: tensor '${name}' offset ${rel} is not a multiple of the alignment ${alignment}`)
    raw.push({ name, shape: ne.slice().reverse(), type, rel, bytes: numel / info.blockElems * info.blockBytes })
  }

  const dataStart = Math.ceil(c.pos / alignment) * alignment
  const tensors = new Map<string, GgufTensorInfo>()
  for (const t of raw) {
    const offset = dataStart + t.rel
    if (offset + t.bytes > fileSize) {
      throw new CorruptWeightsError(`${what}: tensor '${t.name}' (${ggmlTypeName(t.type)} [${t.shape.join(', ')}]) ends at byte ${offset + t.bytes}, past the end of the ${fileSize}-byte file (truncated?)`)
    }
    tensors.set(t.name, { name: t.name, shape: t.shape, type: t.type, offset, bytes: t.bytes })
  }
  checkNoOverlap(tensors, what)
  return { version, metadata, tensors, alignment, dataStart }
}

function checkNoOverlap (tensors: ReadonlyMap<string, GgufTensorInfo>, what: string): void {
  const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset)
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1]
    if (sorted[i].offset < p.offset + p.bytes && p.bytes > 0) throw new CorruptWeightsError(`${what}: tensors '${p.name}' and '${sorted[i].name}' overlap`)
  }
}

/** The first read of a header; it doubles until the header fits. */
const FIRST_READ_BYTES = 1 << 20

/**
 * Reads and parses the header of `file` from a source, reading only header bytes (1 MiB first,
 * then more as the metadata needs: a large vocabulary takes a few reads).
 */
export async function readGgufHeader (source: ModelSource, file: string): Promise<GgufHeader> {
  const what = `${source.label}/${file}`
  const size = await source.size(file)
  if (size === undefined) throw new WeightsSourceError(`${what}: file not found`)
  let want = Math.min(size, source.file === file && source.headerBytes !== undefined && source.headerBytes > 0 ? source.headerBytes : FIRST_READ_BYTES)
  let buf = await source.read(file, 0, want)
  for (;;) {
    try {
      return parseGgufHeader(buf, size, what, buf.byteLength >= size)
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e
      if (e.needed > LIMITS.headerBytes) throw new CorruptWeightsError(`${what}: header larger than ${LIMITS.headerBytes} bytes`)
      want = Math.min(size, Math.max(2 * want, e.needed))
      const more = await source.read(file, buf.byteLength, want - buf.byteLength)
      const next = new Uint8Array(want)
      next.set(buf)
      next.set(more, buf.byteLength)
      buf = next
    }
  }
}

/** The raw bytes of one tensor. */
export async function readGgufTensor (source: ModelSource, file: string, t: GgufTensorInfo): Promise<Uint8Array> {
  const bytes = await source.read(file, t.offset, t.bytes)
  if (bytes.byteLength !== t.bytes) throw new CorruptWeightsError(`${source.label}/${file}: short read for tensor '${t.name}'`)
  return bytes
}

/** A metadata value as a JS value (arrays as arrays), or undefined. */
export function metaValue (h: GgufHeader, key: string): GgufScalar | GgufScalar[] | undefined {
  return h.metadata.get(key)?.value
}
