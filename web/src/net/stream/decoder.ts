/**
 * Pure frame decoder: bytes in (any split), validated frames and assembled messages out. No I/O,
 * no timers, so the fuzz test drives it directly. Every peer-caused failure throws a typed error
 * and leaves the decoder failed; nothing reaches `onMessage` until a message is complete and
 * verified.
 */
import { FRAME_HEADER_BYTES } from './constants.ts'
import { decodeFrame, FrameType, readFrameHeader, type FrameHeader, type StartLimits, type TensorDescriptor } from './codec.ts'
import { crc32 } from './crc32.ts'
import { ChecksumError, LimitExceededError, UnexpectedFrameError } from './errors.ts'
import type { NamedTensor, TensorMessage } from './index.ts'

/** Limits the decoder enforces on one stream (all resolved). */
export interface DecoderLimits extends StartLimits {
  maxStreamBytes: number
  maxMessages: number
}

export interface DecoderEvents {
  /** A complete, verified message (tensors view one buffer owned by the message). */
  onMessage: (id: number, message: TensorMessage) => void
  /** The peer granted `messages` more sends. */
  onCredit: (messages: number) => void
  /** The peer reported a failure; it sends nothing after this. */
  onRemoteError: (id: number, code: number, message: string) => void
  /** The peer will start no more messages (streaming). */
  onEnd: () => void
  /** A message is starting (before its buffer is allocated); may throw to refuse it. */
  onStart?: (id: number) => void
}

/** A FIFO of byte chunks; hands out contiguous slices (views when they do not straddle chunks). */
class ByteQueue {
  private bufs: Uint8Array[] = []
  private head = 0 // bytes of bufs[0] already consumed
  length = 0

  push (b: Uint8Array): void {
    if (b.byteLength === 0) return
    this.bufs.push(b)
    this.length += b.byteLength
  }

  /** The first n bytes (n ≤ length), removed from the queue. */
  take (n: number): Uint8Array {
    const first = this.bufs[0]
    if (first !== undefined && first.byteLength - this.head >= n) {
      const out = first.subarray(this.head, this.head + n)
      this.skip(n)
      return out
    }
    const out = new Uint8Array(n)
    let o = 0
    while (o < n) {
      const b = this.bufs[0]
      const m = Math.min(n - o, b.byteLength - this.head)
      out.set(b.subarray(this.head, this.head + m), o)
      o += m
      this.skip(m)
    }
    return out
  }

  /**
   * Copies the first n bytes (n ≤ length) into `dst` at `offset`, removes them, and returns their
   * crc32 — one pass, no intermediate buffer.
   */
  copyInto (dst: Uint8Array, offset: number, n: number): number {
    let crc = 0
    let o = 0
    while (o < n) {
      const b = this.bufs[0]
      const m = Math.min(n - o, b.byteLength - this.head)
      const piece = b.subarray(this.head, this.head + m)
      dst.set(piece, offset + o)
      crc = crc32(piece, crc)
      o += m
      this.skip(m)
    }
    return crc
  }

  /** The first n bytes copied out without removing them (n ≤ length, small n). */
  peek (n: number): Uint8Array {
    const first = this.bufs[0]
    if (first !== undefined && first.byteLength - this.head >= n) return first.subarray(this.head, this.head + n)
    const out = new Uint8Array(n)
    let o = 0
    for (let i = 0, off = this.head; o < n; i++, off = 0) {
      const b = this.bufs[i]
      const m = Math.min(n - o, b.byteLength - off)
      out.set(b.subarray(off, off + m), o)
      o += m
    }
    return out
  }

  private skip (n: number): void {
    this.length -= n
    this.head += n
    while (this.bufs.length > 0 && this.head >= this.bufs[0].byteLength) {
      this.head -= this.bufs[0].byteLength
      this.bufs.shift()
    }
  }
}

interface Pending {
  id: number
  meta: TensorMessage['meta']
  tensors: TensorDescriptor[]
  buf: Uint8Array // (totalBytes) every tensor's bytes, concatenated in order
  received: number
}

export class FrameDecoder {
  private readonly queue = new ByteQueue()
  private header: FrameHeader | undefined
  private pending: Pending | undefined
  private nextId = 1
  private messages = 0
  private streamBytes = 0
  private failed: Error | undefined
  private remoteErrored = false
  private remoteEnded = false

  constructor (private readonly limits: DecoderLimits, private readonly events: DecoderEvents) {}

  /** True while a message has started but not all its bytes arrived. */
  get inMessage (): boolean { return this.pending !== undefined }

  /** True if the bytes so far end inside a frame or a message (the peer stopped mid-way). */
  get partial (): boolean { return this.pending !== undefined || this.header !== undefined || this.queue.length > 0 }

  /** Feeds bytes; decodes every complete frame. Throws (and stays failed) on bad input. */
  push (data: Uint8Array | Iterable<Uint8Array>): void {
    if (this.failed !== undefined) throw this.failed
    if (data instanceof Uint8Array) this.queue.push(data)
    else for (const b of data) this.queue.push(b)
    try {
      this.drain()
    } catch (err) {
      this.failed = err as Error
      this.pending = undefined
      throw err
    }
  }

  private drain (): void {
    for (;;) {
      if (this.header === undefined) {
        if (this.queue.length < FRAME_HEADER_BYTES) return
        this.header = readFrameHeader(this.queue.take(FRAME_HEADER_BYTES))
      }
      const h = this.header
      if (this.queue.length < h.bodyLength) return
      const p = this.pending
      if (h.type === FrameType.DATA && p !== undefined && h.id === p.id && h.bodyLength > 0 &&
        p.received + h.bodyLength <= p.buf.byteLength && !this.remoteErrored) {
        // Fast path for the bulk of the bytes: a DATA frame that passes every check `apply` makes
        // is copied straight into the message buffer. Anything else takes the general path below.
        this.header = undefined
        const crc = this.queue.copyInto(p.buf, p.received, h.bodyLength)
        if (crc !== h.crc) throw new ChecksumError(`DATA of message ${h.id}: crc32 0x${crc.toString(16)} ≠ header 0x${h.crc.toString(16)}`)
        p.received += h.bodyLength
        if (p.received === p.buf.byteLength) this.complete()
        continue
      }
      const body = this.queue.take(h.bodyLength)
      this.header = undefined
      const crc = crc32(body)
      if (crc !== h.crc) throw new ChecksumError(`frame type ${h.type} id ${h.id}: crc32 0x${crc.toString(16)} ≠ header 0x${h.crc.toString(16)}`)
      this.apply(h, body)
    }
  }

  private apply (h: FrameHeader, body: Uint8Array): void {
    if (this.remoteErrored) throw new UnexpectedFrameError(`frame type ${h.type} after the peer's ERROR frame`)
    const f = decodeFrame(h, body, this.limits)
    switch (f.type) {
      case FrameType.START: {
        if (this.remoteEnded) throw new UnexpectedFrameError(`START of message ${f.id} after END`)
        if (this.pending !== undefined) throw new UnexpectedFrameError(`START of message ${f.id} inside message ${this.pending.id}`)
        if (f.id !== this.nextId) throw new UnexpectedFrameError(`START of message ${f.id}, expected ${this.nextId}`)
        this.events.onStart?.(f.id)
        if (++this.messages > this.limits.maxMessages) throw new LimitExceededError(`more than ${this.limits.maxMessages} messages on one stream`)
        this.streamBytes += f.totalBytes
        if (this.streamBytes > this.limits.maxStreamBytes) throw new LimitExceededError(`stream payload ${this.streamBytes} bytes > limit ${this.limits.maxStreamBytes}`)
        this.nextId++
        this.pending = { id: f.id, meta: f.meta, tensors: f.tensors, buf: new Uint8Array(f.totalBytes), received: 0 }
        if (f.totalBytes === 0) this.complete()
        return
      }
      case FrameType.DATA: {
        const p = this.pending
        if (p === undefined) throw new UnexpectedFrameError(`DATA for message ${f.id} outside any message`)
        if (f.id !== p.id) throw new UnexpectedFrameError(`DATA for message ${f.id} inside message ${p.id}`)
        if (p.received + f.body.byteLength > p.buf.byteLength) {
          throw new UnexpectedFrameError(`message ${p.id}: DATA overruns the announced ${p.buf.byteLength} bytes`)
        }
        p.buf.set(f.body, p.received)
        p.received += f.body.byteLength
        if (p.received === p.buf.byteLength) this.complete()
        return
      }
      case FrameType.ERROR:
        this.remoteErrored = true
        this.pending = undefined
        this.events.onRemoteError(f.id, f.code, f.message)
        return
      case FrameType.CREDIT:
        this.events.onCredit(f.messages)
        return
      case FrameType.END:
        if (this.remoteEnded) throw new UnexpectedFrameError('END repeated')
        if (this.pending !== undefined) throw new UnexpectedFrameError(`END inside message ${this.pending.id}`)
        this.remoteEnded = true
        this.events.onEnd()
    }
  }

  private complete (): void {
    const p = this.pending as Pending
    this.pending = undefined
    const tensors: NamedTensor[] = []
    let o = 0
    for (const d of p.tensors) {
      tensors.push({ name: d.name, dtype: d.dtype, shape: d.shape, data: p.buf.subarray(o, o + d.byteLength) })
      o += d.byteLength
    }
    const message: TensorMessage = p.meta === undefined ? { tensors } : { meta: p.meta, tensors }
    this.events.onMessage(p.id, message)
  }
}
