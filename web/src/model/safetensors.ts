import { CorruptWeightsError, UnsupportedDTypeError } from './errors.ts'

/**
 * The safetensors format: u64 little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {str: str} }`,
 * then the data; offsets are relative to the end of the header.
 */

/** Headers larger than this are refused (real models stay far below: ~1 MB for 70B). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024

export type StDType = 'F32' | 'F16' | 'BF16'

const DTYPE_BYTES: Readonly<Record<StDType, number>> = { F32: 4, F16: 2, BF16: 2 }

export interface StTensorInfo {
  name: string
  dtype: StDType
  shape: number[]
  /** Absolute byte offsets in the file [begin, end). */
  begin: number
  end: number
}

export interface StHeader {
  /** Bytes before the data (8 + header length). */
  dataStart: number
  tensors: Map<string, StTensorInfo>
  metadata: Record<string, string>
}

/** Length of the JSON header from the first 8 bytes. */
export function headerLength (first8: Uint8Array, file: string, fileSize: number): number {
  if (first8.byteLength < 8) throw new CorruptWeightsError(`${file}: ${fileSize} bytes is too short for a safetensors file`)
  const n = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true))
  if (n > MAX_HEADER_BYTES) throw new CorruptWeightsError(`${file}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`)
  if (8 + n > fileSize) throw new CorruptWeightsError(`${file}: header of ${n} bytes runs past the end of the ${fileSize}-byte file (truncated?)`)
  return n
}

/** Parses and validates the JSON header; every tensor must lie within the file. */
export function parseHeader (json: Uint8Array, file: string, fileSize: number): StHeader {
  let obj: unknown
  try {
    obj = JSON.parse(new TextDecoder().decode(json))
  } catch (e) {
    throw new CorruptWeightsError(`${file}: header is not valid JSON (${(e as Error).message})`)
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new CorruptWeightsError(`${file}: header is not a JSON object`)
  const dataStart = 8 + json.byteLength
  const tensors = new Map<string, StTensorInfo>()
  let metadata: Record<string, string> = {}
  for (const [name, v] of Object.entries(obj as Record<string, unknown>)) {
    if (name === '__metadata__') { metadata = (v ?? {}) as Record<string, string>; continue }
    const info = v as { dtype?: unknown, shape?: unknown, data_offsets?: unknown }
    const dtype = info?.dtype
    if (typeof dtype !== 'string') throw new CorruptWeightsError(`${file}: tensor '${name}' has no dtype`)
    if (!(dtype in DTYPE_BYTES)) throw new UnsupportedDTypeError(`${file}: tensor '${name}' has dtype ${dtype} (supported: F32, F16, BF16)`)
    const shape = info.shape
    const offs = info.data_offsets
    if (!Array.isArray(shape) || !shape.every(d => Number.isInteger(d) && d >= 0)) throw new CorruptWeightsError(`${file}: tensor '${name}' has a bad shape ${JSON.stringify(shape)}`)
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(o => Number.isInteger(o) && o >= 0) || offs[0] > offs[1]) {
      throw new CorruptWeightsError(`${file}: tensor '${name}' has bad data_offsets ${JSON.stringify(offs)}`)
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1)
    const bytes = numel * DTYPE_BYTES[dtype as StDType]
    if (offs[1] - offs[0] !== bytes) throw new CorruptWeightsError(`${file}: tensor '${name}' spans ${offs[1] - offs[0]} bytes but ${dtype} [${shape.join(', ')}] needs ${bytes}`)
    const begin = dataStart + offs[0]
    const end = dataStart + offs[1]
    if (end > fileSize) throw new CorruptWeightsError(`${file}: tensor '${name}' ends at byte ${end}, past the end of the ${fileSize}-byte file (truncated?)`)
    tensors.set(name, { name, dtype: dtype as StDType, shape: shape as number[], begin, end })
  }
  return { dataStart, tensors, metadata }
}

/** f16 bits → f32 value. */
export function f16ToF32 (h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return s * m * 2 ** -24
  if (e === 31) return m === 0 ? s * Infinity : NaN
  return s * (1 + m / 1024) * 2 ** (e - 15)
}

/** f32 → f16 bits, round to nearest even. */
export function f32ToF16 (v: number): number {
  const f = new Float32Array([v])
  const x = new Uint32Array(f.buffer)[0]
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    let h = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const half = 1 << (shift - 1)
    if (rem > half || (rem === half && (h & 1) !== 0)) h++
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++ // a carry into the exponent is correct (up to inf)
  return sign | h
}

/** f32 → bf16 bits, round to nearest even (as torch does). */
export function f32ToBf16 (v: number): number {
  const x = new Uint32Array(new Float32Array([v]).buffer)[0]
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

/** Decodes raw little-endian bytes of one tensor into f32. */
export function decodeToF32 (bytes: Uint8Array, dtype: StDType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype]
  const out = new Float32Array(n)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true)
      break
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(2 * i, true))
      break
    case 'BF16': {
      const u = new Uint32Array(out.buffer)
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16
      break
    }
  }
  return out
}

export interface StWriteTensor {
  name: string
  shape: readonly number[]
  data: Float32Array
}

/** Serialises f32 tensors as a safetensors file (stored as `dtype`, F32 by default), names sorted. */
export function encodeSafetensors (tensors: readonly StWriteTensor[], metadata: Record<string, string> = {}, dtype: StDType = 'F32'): Uint8Array {
  const sorted = [...tensors].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  const header: Record<string, unknown> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata
  let off = 0
  for (const t of sorted) {
    const bytes = t.data.length * DTYPE_BYTES[dtype]
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [off, off + bytes] }
    off += bytes
  }
  let json = new TextEncoder().encode(JSON.stringify(header))
  const pad = (8 - (json.byteLength % 8)) % 8 // data aligned to 8 bytes, as the reference writer does
  if (pad > 0) json = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad))
  const out = new Uint8Array(8 + json.byteLength + off)
  const dv = new DataView(out.buffer)
  dv.setBigUint64(0, BigInt(json.byteLength), true)
  out.set(json, 8)
  let p = 8 + json.byteLength
  for (const t of sorted) {
    if (dtype === 'F32') {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p)
      p += t.data.byteLength
    } else {
      const conv = dtype === 'F16' ? f32ToF16 : f32ToBf16
      for (let i = 0; i < t.data.length; i++, p += 2) dv.setUint16(p, conv(t.data[i]), true)
    }
  }
  return out
}

/** Parses a whole in-memory safetensors file into f32 arrays. */
export function decodeSafetensors (bytes: Uint8Array, file = 'safetensors'): { tensors: Map<string, { shape: number[], data: Float32Array }>, metadata: Record<string, string> } {
  const n = headerLength(bytes.subarray(0, 8), file, bytes.byteLength)
  const h = parseHeader(bytes.subarray(8, 8 + n), file, bytes.byteLength)
  const tensors = new Map<string, { shape: number[], data: Float32Array }>()
  for (const [name, info] of h.tensors) tensors.set(name, { shape: info.shape, data: decodeToF32(bytes.subarray(info.begin, info.end), info.dtype) })
  return { tensors, metadata: h.metadata }
}
