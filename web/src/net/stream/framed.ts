/**
 * FramedStream: the frame decoder and a batching frame writer bound to one libp2p stream, with
 * timeouts on every wait, AbortSignal cancellation, and credit-based flow control for streaming.
 * rpc.ts builds call/handle and TensorChannel on it.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import {
  DEFAULT_CHUNK_BYTES, DEFAULT_HANDLER_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_MESSAGES, DEFAULT_MAX_META_BYTES, DEFAULT_MAX_STREAM_BYTES, DEFAULT_MAX_TENSORS, DEFAULT_WINDOW_MESSAGES,
  FRAME_HEADER_BYTES, MAX_FRAME_BODY_BYTES, MAX_QUEUED_SEND_BYTES, SEND_BATCH_BYTES
} from './constants.ts'
import { encodeFrame, FrameType, writeCredit, writeError, writeFrameHeader, writeStart } from './codec.ts'
import { crc32 } from './crc32.ts'
import { FrameDecoder } from './decoder.ts'
import { CancelledError, isPeerFault, RemoteError, StreamEndedError, StreamTimeoutError, UnexpectedFrameError } from './errors.ts'
import type { TensorMessage, TensorStreamLimits } from './index.ts'

export type ResolvedLimits = Required<TensorStreamLimits>

/** Fills every limit with its default, once. */
export function resolveLimits (l: TensorStreamLimits = {}): ResolvedLimits {
  const r: ResolvedLimits = {
    maxMessageBytes: l.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    maxStreamBytes: l.maxStreamBytes ?? DEFAULT_MAX_STREAM_BYTES,
    maxTensors: l.maxTensors ?? DEFAULT_MAX_TENSORS,
    maxMetaBytes: l.maxMetaBytes ?? DEFAULT_MAX_META_BYTES,
    maxMessages: l.maxMessages ?? DEFAULT_MAX_MESSAGES,
    windowMessages: l.windowMessages ?? DEFAULT_WINDOW_MESSAGES,
    chunkBytes: l.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    idleTimeoutMs: l.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    handlerTimeoutMs: l.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    maxInboundStreams: l.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
    maxOutboundStreams: l.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
    runOnLimitedConnection: l.runOnLimitedConnection ?? false,
    log: l.log ?? ((line: string) => { console.warn(line) })
  }
  if (!(r.chunkBytes >= 1 && r.chunkBytes <= MAX_FRAME_BODY_BYTES)) throw new RangeError(`chunkBytes ${r.chunkBytes} outside 1…${MAX_FRAME_BODY_BYTES}`)
  if (!(r.windowMessages >= 1)) throw new RangeError(`windowMessages ${r.windowMessages} must be ≥ 1`)
  return r
}

export interface FramedStreamInit {
  /** The peer, for error messages and log lines. */
  remotePeer: PeerId
  protocol: string
  /** Streaming mode: credits both ways. Call mode: at most `maxMessages` (1) in, no credits. */
  streaming: boolean
}

type Waiter = { resolve: () => void, reject: (err: Error) => void }

export class FramedStream {
  private readonly decoder: FrameDecoder
  private readonly inbox: TensorMessage[] = []
  private readWaiter: Waiter | undefined
  private creditWaiter: Waiter | undefined
  private ended = false // the peer sends no more messages (END, or its writable end closed)
  private sentEnd = false // streaming: we sent END
  private error: Error | undefined
  private lastActivity = Date.now()
  private sendCredit = 0 // messages we may still send (streaming)
  private recvCredit = 0 // messages the peer may still start (streaming)
  private consumed = 0 // messages read since our last CREDIT (streaming)
  private nextSendId = 1
  /** Aborts when this stream fails for any reason (reset, timeout, cancel, peer fault). */
  readonly failed = new AbortController()

  constructor (readonly stream: Stream, readonly limits: ResolvedLimits, private readonly init: FramedStreamInit) {
    this.decoder = new FrameDecoder(limits, {
      onMessage: (_id, message) => { this.inbox.push(message); this.wake() },
      onCredit: (n) => {
        if (!init.streaming) throw new UnexpectedFrameError('CREDIT frame on a request/response stream')
        this.sendCredit += n
        if (this.sendCredit > limits.maxMessages) throw new UnexpectedFrameError(`peer granted ${this.sendCredit} messages of credit, more than ${limits.maxMessages}`)
        const w = this.creditWaiter
        this.creditWaiter = undefined
        w?.resolve()
      },
      onRemoteError: (id, code, message) => { this.fail(new RemoteError(code, `${init.protocol} peer ${init.remotePeer.toString()} failed message ${id}: ${message}`)) },
      onStart: init.streaming ? () => { this.takeRecvCredit() } : undefined,
      onEnd: () => {
        if (!init.streaming) throw new UnexpectedFrameError('END frame on a request/response stream')
        this.ended = true
        this.wake()
        if (this.sentEnd) this.closeTransport()
      }
    })
    stream.addEventListener('message', (evt) => { this.onBytes(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => { this.onRemoteEnd() })
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined) this.fail(new StreamEndedError(`${init.protocol} stream with ${init.remotePeer.toString()} closed: ${evt.error.name}: ${evt.error.message}`))
      else this.onRemoteEnd()
    })
    if (init.streaming) this.grant(limits.windowMessages)
  }

  // ------------------------------------------------------------ reading

  /** The next message; undefined once the peer closed its side cleanly. */
  async read (signal?: AbortSignal): Promise<TensorMessage | undefined> {
    for (;;) {
      // A failure wins over queued messages: nothing from a stream that broke the grammar is used.
      if (this.error !== undefined) throw this.error
      const m = this.inbox.shift()
      if (m !== undefined) {
        // Credit goes back in batches of half the window (as HTTP/2 and yamux send window
        // updates): a CREDIT frame per message doubled the sends of request/response traffic.
        // The peer never stalls on a drained inbox: unreported reads stay below half the window.
        if (this.init.streaming && ++this.consumed >= Math.max(1, this.limits.windowMessages >> 1) && this.error === undefined && !this.ended) {
          this.grant(this.consumed)
          this.consumed = 0
        }
        return m
      }
      if (this.ended) return undefined
      await this.wait('read', signal)
    }
  }

  private onBytes (data: Uint8Array | Iterable<Uint8Array>): void {
    this.lastActivity = Date.now()
    if (this.error !== undefined) return
    try {
      this.decoder.push(data)
    } catch (err) {
      if (isPeerFault(err)) this.peerFault(err as Error)
      else this.abort(err as Error)
    }
  }

  private onRemoteEnd (): void {
    if (this.ended) return
    this.ended = true
    if (this.error !== undefined) return
    // A peer that stops inside a frame or message, or leaves a stream without END, broke the grammar.
    if (this.decoder.partial) this.peerFault(new StreamEndedError(`peer closed its side mid-${this.decoder.inMessage ? 'message' : 'frame'}`))
    else if (this.init.streaming) this.peerFault(new StreamEndedError('peer closed the stream without END'))
    this.wake()
  }

  private takeRecvCredit (): void {
    if (this.recvCredit === 0) throw new UnexpectedFrameError('START without credit: the peer sent past our window')
    this.recvCredit--
  }

  // ------------------------------------------------------------ writing

  /** Sends one message: START then DATA chunks, batched into few send() calls, honouring drain. */
  async write (message: TensorMessage, signal?: AbortSignal): Promise<void> {
    this.throwIfFailed()
    const start = writeStart(message) // validates every tensor before a byte leaves
    if (this.init.streaming) {
      while (this.sendCredit === 0) await this.wait('credit', signal)
      this.sendCredit--
    }
    const id = this.nextSendId++
    const chunk = this.limits.chunkBytes
    let batch = new Uint8Array(SEND_BATCH_BYTES)
    let used = 0
    let needDrain = false
    const put = (type: number, body: Uint8Array): void => {
      writeFrameHeader(batch, used, type, id, body.byteLength, crc32(body))
      batch.set(body, used + FRAME_HEADER_BYTES)
      used += FRAME_HEADER_BYTES + body.byteLength
    }
    const flush = (): void => {
      if (used === 0) return
      // The stream may keep this view queued, so every batch is a fresh buffer.
      if (!this.send(batch.subarray(0, used))) needDrain = true
      batch = new Uint8Array(SEND_BATCH_BYTES)
      used = 0
    }
    put(FrameType.START, start)
    for (const t of message.tensors) {
      for (let off = 0; off < t.data.byteLength; off += chunk) {
        if (used + FRAME_HEADER_BYTES + chunk > batch.byteLength) {
          flush()
          if (needDrain) { await this.drain(signal); needDrain = false }
        }
        put(FrameType.DATA, t.data.subarray(off, Math.min(off + chunk, t.data.byteLength)))
      }
    }
    flush()
    if (needDrain) await this.drain(signal)
  }

  /** Sends an ERROR frame about message `id` (0: the whole stream). */
  writeError (id: number, code: number, message: string): void {
    const body = writeError(code, message)
    this.send(encodeFrame(FrameType.ERROR, id, body, crc32(body)))
  }

  /**
   * Finishes our side; the peer's reader then ends. Streaming: sends END and keeps the transport
   * open for CREDIT until the peer's END arrives (or `done`: we will not read any more).
   */
  async closeWrite (signal?: AbortSignal, done = false): Promise<void> {
    this.throwIfFailed()
    if (this.init.streaming) {
      if (!this.sentEnd) {
        this.sentEnd = true
        this.send(encodeFrame(FrameType.END, 0, new Uint8Array(0), crc32(new Uint8Array(0))))
      }
      if (!this.ended && !done) return
    }
    await this.finish(signal)
  }

  /** Closes the transport's writable end, flushing what is buffered (no END frame). */
  async finish (signal?: AbortSignal): Promise<void> {
    this.throwIfFailed()
    const s = this.timeoutSignal(signal)
    try {
      await this.stream.close({ signal: s })
    } catch (err) {
      throw this.mapWaitError(err, signal, 'close')
    }
  }

  private closeTransport (): void {
    this.stream.close({ signal: AbortSignal.timeout(this.limits.idleTimeoutMs) }).catch((err: Error) => { this.stream.abort(err) })
  }

  private grant (n: number): void {
    if (this.stream.writeStatus !== 'writable') return
    this.recvCredit += n
    const body = writeCredit(n)
    this.send(encodeFrame(FrameType.CREDIT, 0, body, crc32(body)))
  }

  private send (bytes: Uint8Array): boolean {
    try {
      return this.stream.send(bytes)
    } catch (err) {
      const e = this.error ?? new StreamEndedError(`${this.init.protocol} stream with ${this.init.remotePeer.toString()} is not writable: ${(err as Error).message}`)
      this.fail(e)
      throw e
    }
  }

  /**
   * Waits until the transport drained enough: at most MAX_QUEUED_SEND_BYTES left in the stream's
   * queue. Listens for 'drain' itself rather than `stream.onDrain()`:
   * in @libp2p/utils 7.4 onDrain() keeps its first resolved promise, so after one drain it never
   * waits again and unbounded data piles up in the stream's write buffer. One timer per wait
   * (not AbortSignal.timeout, whose timers would outlive thousands of short waits).
   */
  private async drain (signal?: AbortSignal): Promise<void> {
    while (this.stream.writableNeedsDrain && this.stream.writeBufferLength > MAX_QUEUED_SEND_BYTES) {
      this.throwIfFailed()
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error): void => {
          clearTimeout(timer)
          this.stream.removeEventListener('drain', onDrain)
          this.stream.removeEventListener('close', onClose)
          signal?.removeEventListener('abort', onAbort)
          if (err === undefined) resolve()
          else reject(err)
        }
        const onDrain = (): void => { done() }
        const onClose = (): void => { done(this.error ?? new StreamEndedError(`${this.init.protocol} stream with ${this.init.remotePeer.toString()} closed while we waited to send`)) }
        const onAbort = (): void => {
          const e = new CancelledError(`${this.init.protocol} send cancelled: ${String(signal?.reason)}`)
          this.abort(e)
          done(e)
        }
        const timer = setTimeout(() => {
          const e = new StreamTimeoutError(`${this.init.protocol} peer ${this.init.remotePeer.toString()} did not drain our sends within ${this.limits.idleTimeoutMs} ms`)
          this.abort(e)
          done(e)
        }, this.limits.idleTimeoutMs)
        this.stream.addEventListener('drain', onDrain)
        this.stream.addEventListener('close', onClose)
        if (signal?.aborted === true) onAbort()
        else signal?.addEventListener('abort', onAbort)
      })
      // libp2p resumes its own queue in a microtask after 'drain'; let it run before re-checking.
      await Promise.resolve()
    }
    this.throwIfFailed()
  }

  // ------------------------------------------------------------ failure and waiting

  /** Resets the stream: both sides' pending operations fail with `err` (the peer sees a reset). */
  abort (err: Error): void {
    this.fail(err)
    this.stream.abort(err)
  }

  /** A peer sent bytes that break the grammar or a limit: one log line, then reset. */
  private peerFault (err: Error): void {
    this.limits.log(`webswarm/stream: reset ${this.init.protocol} stream ${this.stream.id} from ${this.init.remotePeer.toString()}: ${err.name}: ${err.message}`)
    this.abort(err)
  }

  private fail (err: Error): void {
    if (this.error !== undefined) return
    this.error = err
    this.failed.abort(err)
    const waiters = [this.readWaiter, this.creditWaiter]
    this.readWaiter = this.creditWaiter = undefined
    for (const w of waiters) w?.reject(err)
  }

  private throwIfFailed (): void {
    if (this.error !== undefined) throw this.error
  }

  private wake (): void {
    const w = this.readWaiter
    this.readWaiter = undefined
    w?.resolve()
  }

  private timeoutSignal (signal?: AbortSignal): AbortSignal {
    const t = AbortSignal.timeout(this.limits.idleTimeoutMs)
    return signal === undefined ? t : AbortSignal.any([signal, t])
  }

  private mapWaitError (err: unknown, signal: AbortSignal | undefined, what: string): Error {
    if (this.error !== undefined) return this.error
    let e: Error
    if (signal?.aborted === true) e = new CancelledError(`${this.init.protocol} ${what} cancelled: ${String(signal.reason)}`)
    else if ((err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError') e = new StreamTimeoutError(`${this.init.protocol} peer ${this.init.remotePeer.toString()} did not ${what} within ${this.limits.idleTimeoutMs} ms`)
    else e = new StreamEndedError(`${this.init.protocol} ${what} failed: ${(err as Error).message}`)
    this.abort(e)
    return e
  }

  /**
   * Waits for a message / credit, the stream failing, the caller's signal, or the idle timeout:
   * no byte from the peer for idleTimeoutMs fails the stream.
   */
  private async wait (kind: 'read' | 'credit', signal?: AbortSignal): Promise<void> {
    this.throwIfFailed()
    if (signal?.aborted === true) { const e = new CancelledError(`${this.init.protocol} ${kind} cancelled`); this.abort(e); throw e }
    let timer: ReturnType<typeof setTimeout> | undefined
    let onAbort: (() => void) | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = { resolve, reject }
        if (kind === 'read') this.readWaiter = w
        else this.creditWaiter = w
        const check = (): void => {
          const idle = Date.now() - this.lastActivity
          if (idle >= this.limits.idleTimeoutMs) {
            this.abort(new StreamTimeoutError(`${this.init.protocol} peer ${this.init.remotePeer.toString()} sent nothing for ${idle} ms (${kind})`))
          } else {
            timer = setTimeout(check, this.limits.idleTimeoutMs - idle)
          }
        }
        timer = setTimeout(check, Math.max(0, this.limits.idleTimeoutMs - (Date.now() - this.lastActivity)))
        onAbort = () => { this.abort(new CancelledError(`${this.init.protocol} ${kind} cancelled: ${String(signal?.reason)}`)) }
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    } finally {
      clearTimeout(timer)
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    }
  }
}
