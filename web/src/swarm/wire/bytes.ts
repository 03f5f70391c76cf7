/**
 * The byte writer and reader of the `infer` and `expert` codecs: net/wire.ts's Writer and Reader
 * (LEB128 varints, length-prefixed UTF-8 strings, bounds checks) with the swarm's caps and inline
 * (dtype, shape, bytes) tensors. The dtype byte is the stream codec's (net/stream/codec.ts), one
 * table for both. Every read is bounds-checked and capped (STYLE 8): a peer cannot make us
 * allocate more than MAX_MESSAGE_BYTES.
 */
import { MAX_MESSAGE_BYTES, MAX_STRING_BYTES, MAX_TENSOR_RANK } from '../constants.ts'
import { Reader, Writer } from '../../net/wire.ts'
import { dtypeCode } from '../../net/stream/codec.ts'
import { MalformedMessageError, MessageTooLargeError } from '../errors.ts'

/** The one dtype inline tensors carry today (its stream-codec wire code, 1). */
const F32 = dtypeCode('f32')

/** A dense row-major tensor as it travels: f32 values with their shape. */
export interface WireTensor {
  shape: number[]
  data: Float32Array
}

const encoder = new TextEncoder()

/**
 * net/wire.ts's Writer capped at MAX_MESSAGE_BYTES, plus tensors.
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
    this.u8(F32).u8(t.shape.length)
    for (const d of t.shape) this.varuint(d)
    return this.raw(new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4))
  }
}

/** net/wire.ts's Reader capped at MAX_MESSAGE_BYTES, plus tensors; every failure names the field. */
export class ByteReader extends Reader {
  constructor (buf: Uint8Array, protocol: string) {
    if (buf.length > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`message of ${buf.length} bytes exceeds ${MAX_MESSAGE_BYTES}`)
    super(buf, protocol)
  }

  /** A length-prefixed UTF-8 string of at most MAX_STRING_BYTES. */
  str (field: string): string {
    return this.string(MAX_STRING_BYTES, field)
  }

  /** A tensor; `maxValues` caps its element count before anything is allocated. */
  tensor (field: string, maxValues: number): WireTensor {
    const dtype = this.u8(`${field} dtype`)
    if (dtype !== F32) throw new MalformedMessageError(this.protocol, `${field}: unsupported dtype code ${dtype} (only f32 = ${F32})`)
    const rank = this.u8(`${field} rank`)
    if (rank > MAX_TENSOR_RANK) throw new MalformedMessageError(this.protocol, `${field}: rank ${rank} exceeds ${MAX_TENSOR_RANK}`)
    const shape: number[] = []
    let n = 1
    for (let i = 0; i < rank; i++) {
      const d = this.varuint(`${field} dim ${i}`, MAX_MESSAGE_BYTES)
      shape.push(d)
      n *= d
      if (n > maxValues) throw new MessageTooLargeError(`${field}: shape [${shape.join(', ')}…] exceeds ${maxValues} values`)
    }
    // Copy: the source may be unaligned for a Float32Array view, and must not alias a reused buffer.
    const bytes = this.raw(n * 4, `${field} data`)
    const data = new Float32Array(n)
    new Uint8Array(data.buffer).set(bytes)
    return { shape, data }
  }
}
