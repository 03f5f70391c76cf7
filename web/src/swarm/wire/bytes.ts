/**
 * Byte-level primitives shared by the `infer` and `expert` codecs: LEB128 varints, length-prefixed
 * UTF-8 strings and (dtype, shape, bytes) tensors. The writer is net/wire.ts's with a cap. Every read is bounds-checked and capped
 * (STYLE 8): a peer cannot make us allocate more than MAX_MESSAGE_BYTES.
 */
import { MAX_MESSAGE_BYTES, MAX_STRING_BYTES, MAX_TENSOR_RANK } from '../constants.ts'
import { Writer } from '../../net/wire.ts'
import { MalformedMessageError, MessageTooLargeError } from '../errors.ts'

/** Tensor dtypes on the wire. Only f32 travels today; the byte is there so f16 can join. */
export const WIRE_DTYPES = { f32: 1 } as const
export type WireDType = keyof typeof WIRE_DTYPES

/** A dense row-major tensor as it travels: f32 values with their shape. */
export interface WireTensor {
  shape: number[]
  data: Float32Array
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * net/wire.ts's Writer (LEB128 varints, length-prefixed strings) capped at MAX_MESSAGE_BYTES,
 * plus tensors.
 */
export class ByteWriter extends Writer {
  protected override reserve (n: number): void {
    if (this.length + n > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`message would exceed ${MAX_MESSAGE_BYTES} bytes`)
    super.reserve(n)
  }

  /** Unsigned LEB128, up to 2^53 − 1 (the reader's name for it). */
  varint (v: number): this { return this.varuint(v) }

  override string (s: string): this {
    const b = encoder.encode(s)
    if (b.length > MAX_STRING_BYTES) throw new MessageTooLargeError(`string of ${b.length} bytes exceeds ${MAX_STRING_BYTES}`)
    return this.bytes(b)
  }

  /** dtype:u8 rank:u8 dims:varint* then the f32 values little-endian. */
  tensor (t: WireTensor): this {
    const n = t.shape.reduce((a, b) => a * b, 1)
    if (n !== t.data.length) throw new RangeError(`tensor shape [${t.shape.join(', ')}] holds ${n} values, data has ${t.data.length}`)
    if (t.shape.length > MAX_TENSOR_RANK) throw new RangeError(`tensor rank ${t.shape.length} exceeds ${MAX_TENSOR_RANK}`)
    this.u8(WIRE_DTYPES.f32).u8(t.shape.length)
    for (const d of t.shape) this.varuint(d)
    return this.raw(new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4))
  }
}

/** Reads fields back; every failure is a MalformedMessageError naming the field. */
export class ByteReader {
  private pos = 0

  constructor (private readonly buf: Uint8Array) {
    if (buf.length > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`message of ${buf.length} bytes exceeds ${MAX_MESSAGE_BYTES}`)
  }

  private need (n: number, field: string): void {
    if (this.pos + n > this.buf.length) throw new MalformedMessageError(`truncated message reading ${field}`)
  }

  u8 (field: string): number {
    this.need(1, field)
    return this.buf[this.pos++]
  }

  varint (field: string, max = Number.MAX_SAFE_INTEGER): number {
    let v = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8(field)
      v += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (v > max) throw new MalformedMessageError(`${field} = ${v} exceeds ${max}`)
        return v
      }
      scale *= 0x80
    }
    throw new MalformedMessageError(`${field}: varint longer than 8 bytes`)
  }

  string (field: string): string {
    const n = this.varint(`${field} length`, MAX_STRING_BYTES)
    this.need(n, field)
    try {
      return decoder.decode(this.buf.subarray(this.pos, (this.pos += n)))
    } catch {
      throw new MalformedMessageError(`${field}: invalid UTF-8`)
    }
  }

  /** A tensor; `maxValues` caps its element count before anything is allocated. */
  tensor (field: string, maxValues: number): WireTensor {
    const dtype = this.u8(`${field} dtype`)
    if (dtype !== WIRE_DTYPES.f32) throw new MalformedMessageError(`${field}: unsupported dtype code ${dtype} (only f32 = ${WIRE_DTYPES.f32})`)
    const rank = this.u8(`${field} rank`)
    if (rank > MAX_TENSOR_RANK) throw new MalformedMessageError(`${field}: rank ${rank} exceeds ${MAX_TENSOR_RANK}`)
    const shape: number[] = []
    let n = 1
    for (let i = 0; i < rank; i++) {
      const d = this.varint(`${field} dim ${i}`, MAX_MESSAGE_BYTES)
      shape.push(d)
      n *= d
      if (n > maxValues) throw new MessageTooLargeError(`${field}: shape [${shape.join(', ')}…] exceeds ${maxValues} values`)
    }
    const bytes = n * 4
    this.need(bytes, `${field} data`)
    // Copy: the source may be unaligned for a Float32Array view, and must not alias a reused buffer.
    const data = new Float32Array(n)
    new Uint8Array(data.buffer).set(this.buf.subarray(this.pos, this.pos + bytes))
    this.pos += bytes
    return { shape, data }
  }

  /** Throw if bytes remain: a message is exactly its fields. */
  end (): void {
    if (this.pos !== this.buf.length) throw new MalformedMessageError(`${this.buf.length - this.pos} trailing bytes`)
  }
}
