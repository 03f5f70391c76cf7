/**
 * Request/response (`call` / `handle`) and streaming (`openStream` / `handleStream`) RPC of tensor
 * messages over libp2p streams, one exchange per stream (streams are cheap: a yamux stream or a
 * WebRTC data channel).
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_OPEN_TIMEOUT_MS } from './constants.ts'
import { ErrorCode } from './codec.ts'
import { CancelledError, HandlerError, InvalidTensorError, StreamEndedError, StreamTimeoutError } from './errors.ts'
import { FramedStream, resolveLimits, type ResolvedLimits } from './framed.ts'
import type { CallHandler, CallOptions, HandlerContext, StreamHandler, TensorChannel, TensorMessage, TensorStreamLimits } from './index.ts'

/** The part of a libp2p node this layer uses. */
export type StreamNode = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>

// ------------------------------------------------------------ request/response

/** Serves `protocol`: each inbound stream carries one request message and gets one response. */
export async function handle (node: StreamNode, protocol: string, handler: CallHandler, limits?: TensorStreamLimits): Promise<void> {
  const l = resolveLimits(limits)
  await node.handle(protocol, async (stream, connection) => { await serveCall(stream, connection, protocol, handler, l) }, registrarOptions(l))
}

/** The libp2p registrar's options for a handler with limits `l` (stream counts, relayed links). */
function registrarOptions (l: ResolvedLimits): { maxInboundStreams: number, maxOutboundStreams: number, runOnLimitedConnection: boolean } {
  return { maxInboundStreams: l.maxInboundStreams, maxOutboundStreams: l.maxOutboundStreams, runOnLimitedConnection: l.runOnLimitedConnection }
}

/** Stops serving `protocol`. */
export async function unhandle (node: StreamNode, protocol: string): Promise<void> {
  await node.unhandle(protocol)
}

/** Serves one inbound request/response stream (what `handle` registers; the fuzz test calls it directly). */
async function serveCall (stream: Stream, connection: Connection, protocol: string, handler: CallHandler, limits?: TensorStreamLimits): Promise<void> {
  const l = resolveLimits(limits)
  const fs = new FramedStream(stream, { ...l, maxMessages: 1 }, { remotePeer: connection.remotePeer, protocol, streaming: false })
  const timer = setTimeout(() => { fs.abort(new StreamTimeoutError(`${protocol} handler ran past ${l.handlerTimeoutMs} ms`)) }, l.handlerTimeoutMs)
  try {
    const request = await fs.read()
    if (request === undefined) { await fs.closeWrite(); return } // the peer opened and closed: nothing to answer
    const ctx: HandlerContext = { remotePeer: connection.remotePeer, connection, protocol, signal: fs.failed.signal }
    let response: TensorMessage | undefined
    let failure: unknown
    try {
      response = await handler(request, ctx)
    } catch (err) {
      failure = err
    }
    if (response !== undefined) {
      try {
        await fs.write(response)
      } catch (err) {
        if (!(err instanceof InvalidTensorError)) throw err
        failure = err // nothing was sent: writeStart validates before the first byte
      }
    }
    if (failure !== undefined) writeFailure(fs, 1, failure)
    await fs.closeWrite()
  } catch (err) {
    fs.abort(err as Error)
  } finally {
    clearTimeout(timer)
  }
}

/** One request → one response. Rejects with RemoteError if the handler failed, typed errors otherwise. */
export async function call (node: StreamNode, peer: PeerId, protocol: string, request: TensorMessage, options: CallOptions = {}): Promise<TensorMessage> {
  const l = resolveLimits(options)
  const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS
  const total = AbortSignal.timeout(timeoutMs)
  const signal = options.signal === undefined ? total : AbortSignal.any([options.signal, total])
  const stream = await dial(node, peer, protocol, options, signal)
  const fs = new FramedStream(stream, { ...l, maxMessages: 1 }, { remotePeer: peer, protocol, streaming: false })
  try {
    await fs.write(request, signal)
    await fs.closeWrite(signal)
    const response = await fs.read(signal)
    if (response === undefined) throw new StreamEndedError(`${protocol} peer ${peer.toString()} closed without a response`)
    return response
  } catch (err) {
    fs.abort(err as Error)
    if (total.aborted && options.signal?.aborted !== true) throw new StreamTimeoutError(`${protocol} call to ${peer.toString()} took over ${timeoutMs} ms`)
    throw err
  }
}

// ------------------------------------------------------------ streaming

/** Serves `protocol` with a streaming handler: many messages each way, credit flow control. */
export async function handleStream (node: StreamNode, protocol: string, handler: StreamHandler, limits?: TensorStreamLimits): Promise<void> {
  const l = resolveLimits(limits)
  await node.handle(protocol, async (stream, connection) => { await serveStream(stream, connection, protocol, handler, l) }, registrarOptions(l))
}

/** Serves one inbound streaming stream (what `handleStream` registers). */
async function serveStream (stream: Stream, connection: Connection, protocol: string, handler: StreamHandler, limits?: TensorStreamLimits): Promise<void> {
  const l = resolveLimits(limits)
  const fs = new FramedStream(stream, l, { remotePeer: connection.remotePeer, protocol, streaming: true })
  const channel = new Channel(fs, connection.remotePeer)
  const timer = setTimeout(() => { fs.abort(new StreamTimeoutError(`${protocol} handler ran past ${l.handlerTimeoutMs} ms`)) }, l.handlerTimeoutMs)
  try {
    let failure: unknown
    try {
      await handler(channel, { remotePeer: connection.remotePeer, connection, protocol, signal: fs.failed.signal })
    } catch (err) {
      failure = err
    }
    if (fs.failed.signal.aborted) return // the stream already failed; the peer saw a reset
    if (failure !== undefined) {
      writeFailure(fs, 0, failure) // ERROR ends the exchange: no END after it
      await fs.finish()
    } else {
      await fs.closeWrite(undefined, true) // END, then close: the handler reads no more
    }
  } catch (err) {
    fs.abort(err as Error)
  } finally {
    clearTimeout(timer)
  }
}

/** Opens a streaming channel to `peer`. `options.signal` aborting resets the stream. */
export async function openStream (node: StreamNode, peer: PeerId, protocol: string, options: CallOptions = {}): Promise<TensorChannel> {
  const l = resolveLimits(options)
  const stream = await dial(node, peer, protocol, options, options.signal)
  const fs = new FramedStream(stream, l, { remotePeer: peer, protocol, streaming: true })
  const signal = options.signal
  if (signal !== undefined) {
    const onAbort = (): void => { fs.abort(new CancelledError(`${protocol} stream cancelled: ${String(signal.reason)}`)) }
    signal.addEventListener('abort', onAbort, { once: true })
    fs.failed.signal.addEventListener('abort', () => { signal.removeEventListener('abort', onAbort) }, { once: true })
    stream.addEventListener('close', () => { signal.removeEventListener('abort', onAbort) }, { once: true })
  }
  return new Channel(fs, peer)
}

class Channel implements TensorChannel {
  private writeClosed = false
  constructor (private readonly fs: FramedStream, readonly remotePeer: PeerId) {}

  async send (message: TensorMessage, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.writeClosed) throw new StreamEndedError('send after closeWrite')
    await this.fs.write(message, options.signal)
  }

  async read (options: { signal?: AbortSignal } = {}): Promise<TensorMessage | undefined> {
    return await this.fs.read(options.signal)
  }

  async closeWrite (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.writeClosed) return
    this.writeClosed = true
    await this.fs.closeWrite(options.signal)
  }

  abort (err: Error): void {
    this.fs.abort(err)
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<TensorMessage> {
    for (;;) {
      const m = await this.fs.read()
      if (m === undefined) return
      yield m
    }
  }
}

// ------------------------------------------------------------ helpers

async function dial (node: StreamNode, peer: PeerId, protocol: string, options: CallOptions, signal: AbortSignal | undefined): Promise<Stream> {
  const openMs = options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS
  const t = AbortSignal.timeout(openMs)
  try {
    return await node.dialProtocol(peer, protocol, {
      signal: signal === undefined ? t : AbortSignal.any([signal, t]),
      runOnLimitedConnection: options.runOnLimitedConnection ?? false
    })
  } catch (err) {
    if (signal?.aborted === true) throw new CancelledError(`${protocol} open to ${peer.toString()} cancelled: ${(err as Error).message}`)
    if (t.aborted) throw new StreamTimeoutError(`${protocol} open to ${peer.toString()} took over ${openMs} ms`)
    throw err
  }
}

function writeFailure (fs: FramedStream, id: number, err: unknown): void {
  const code = err instanceof HandlerError ? err.code : ErrorCode.HANDLER_FAILED
  const e = err as Error
  fs.writeError(id, code, `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`)
}
