/**
 * Bounds-checked binary reader/writer for our own wire formats (DHT records, crdt-sync frames, the
 * swarm's infer / expert codecs in swarm/wire).
 * Every read checks the remaining length first and throws MalformedMessageError naming the
 * protocol, so a truncated or garbage message can never read past its buffer or return undefined.
 */
import { MalformedMessageError } from './errors.ts'

/** Varints longer than this many bytes are rejected (7 bits each → 2^56; values must also be safe integers). */
const MAX_VARINT_BYTES = 8

/** Appends fields to a growing byte buffer. */
export class Writer {
  private buf = new Uint8Array(256)
  private pos = 0

  /** Bytes written so far. */
  get length (): number { return this.pos }

  /** Makes room for `n` more bytes (a subclass may refuse: a size cap). */
  protected reserve (n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  u8 (v: number): this {
    this.reserve(1)
    this.buf[this.pos++] = v & 0xff
    return this
  }

  /** Unsigned LEB128, for lengths and small counters (< 2^49). */
  varuint (v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varuint: ${v} is not a non-negative safe integer`)
    while (v >= 0x80) {
      this.u8((v % 0x80) | 0x80)
      v = Math.floor(v / 0x80)
    }
    return this.u8(v)
  }

  /** IEEE-754 float64, big-endian: millisecond timestamps. */
  f64 (v: number): this {
    this.reserve(8)
    new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).setFloat64(0, v, false)
    this.pos += 8
    return this
  }

  /** Length-prefixed bytes. */
  bytes (v: Uint8Array): this {
    this.varuint(v.length)
    this.reserve(v.length)
    this.buf.set(v, this.pos)
    this.pos += v.length
    return this
  }

  /** Length-prefixed UTF-8 string. */
  string (v: string): this {
    return this.bytes(new TextEncoder().encode(v))
  }

  /** Raw bytes, no length prefix. */
  raw (v: Uint8Array): this {
    this.reserve(v.length)
    this.buf.set(v, this.pos)
    this.pos += v.length
    return this
  }

  finish (): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

/** Reads fields from one message; every read is bounds-checked against the message length. */
export class Reader {
  private pos = 0

  constructor (protected readonly buf: Uint8Array, protected readonly protocol: string) {}

  /** Current offset, in bytes. */
  get offset (): number { return this.pos }

  protected need (n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new MalformedMessageError(this.protocol, `truncated ${what}: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`)
    }
  }

  get remaining (): number {
    return this.buf.length - this.pos
  }

  u8 (what = 'u8'): number {
    this.need(1, what)
    return this.buf[this.pos++]
  }

  /** Unsigned LEB128 at most `max` (checked as soon as it is read, before it sizes anything). */
  varuint (what = 'varuint', max = Number.MAX_SAFE_INTEGER): number {
    let v = 0
    let scale = 1
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const b = this.u8(what)
      v += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (v > max) throw new MalformedMessageError(this.protocol, `${what} = ${v} exceeds ${max}`)
        return v
      }
      scale *= 0x80
    }
    throw new MalformedMessageError(this.protocol, `${what}: varint longer than ${MAX_VARINT_BYTES} bytes`)
  }

  f64 (what = 'f64'): number {
    this.need(8, what)
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, false)
    this.pos += 8
    return v
  }

  /** Length-prefixed bytes, at most `max` long (the cap is checked before anything is copied). */
  bytes (max: number, what = 'bytes'): Uint8Array {
    const len = this.varuint(`${what} length`)
    if (len > max) throw new MalformedMessageError(this.protocol, `${what}: length ${len} exceeds cap ${max}`)
    this.need(len, what)
    const v = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return v
  }

  string (maxBytes: number, what = 'string'): string {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.bytes(maxBytes, what))
    } catch (e) {
      if (e instanceof MalformedMessageError) throw e
      throw new MalformedMessageError(this.protocol, `${what}: invalid UTF-8`)
    }
  }

  /** The next `n` bytes (a view, not a copy). */
  raw (n: number, what = 'raw'): Uint8Array {
    this.need(n, what)
    const v = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  /** The rest of the message. */
  rest (): Uint8Array {
    const v = this.buf.subarray(this.pos)
    this.pos = this.buf.length
    return v
  }

  /** Throws if bytes remain: trailing garbage is an error, not ignored. */
  end (): void {
    if (this.pos !== this.buf.length) {
      throw new MalformedMessageError(this.protocol, `${this.buf.length - this.pos} trailing bytes`)
    }
  }
}
