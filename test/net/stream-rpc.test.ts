import { describe, expect, it } from 'vitest'
import {
  call, CancelledError, ErrorCode, handle, handleStream, HandlerError, LimitExceededError, openStream, RemoteError, StreamEndedError, StreamTimeoutError
} from '../../web/src/net/stream/index.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { memoryNetwork, patternBytes, quiet, sleep, waitFor } from './stream-harness.ts'

const P = '/webswarm/test-echo/1.0.0'

function tensorMsg (bytes: number, seed: number, meta?: TensorMessage['meta']): TensorMessage {
  return { meta, tensors: [{ name: 'x', dtype: 'u8', shape: [bytes], data: patternBytes(bytes, seed) }] }
}

describe('call / handle', () => {
  it('round-trips named tensors and metadata; the handler sees the caller and the request', async () => {
    const [a, b] = await memoryNetwork(2)
    const seen: string[] = []
    await handle(b, P, async (req, ctx) => {
      seen.push(ctx.remotePeer.toString())
      const x = req.tensors[0]
      const sum = x.data.reduce((s, v) => s + v, 0)
      return { meta: { sum, echo: req.meta ?? null }, tensors: [...req.tensors, { name: 'y', dtype: 'i32', shape: [1], data: new Uint8Array(new Int32Array([sum]).buffer) }] }
    })
    const req = { meta: { op: 'sum' }, tensors: [{ name: 'x', dtype: 'f32' as const, shape: [100_000], data: patternBytes(400_000, 5) }] }
    const res = await call(a, b.peerId, P, req, { timeoutMs: 10_000 })
    const sum = req.tensors[0].data.reduce((s, v) => s + v, 0)
    expect(res.meta).toEqual({ sum, echo: { op: 'sum' } })
    expect(res.tensors[0]).toEqual(req.tensors[0])
    expect(new Int32Array(res.tensors[1].data.slice().buffer)[0]).toBe(sum)
    expect(seen).toEqual([a.peerId.toString()])
  })

  it('a throwing handler answers with an ERROR frame: RemoteError with its code', async () => {
    const [a, b] = await memoryNetwork(2)
    await handle(b, P, async (req) => {
      if (req.meta?.op === 'missing') throw new HandlerError(ErrorCode.NOT_FOUND, 'no such chunk')
      throw new Error('boom')
    })
    await expect(call(a, b.peerId, P, { meta: { op: 'missing' }, tensors: [] })).rejects.toMatchObject({ name: 'RemoteError', code: ErrorCode.NOT_FOUND, message: expect.stringContaining('no such chunk') })
    const err = await call(a, b.peerId, P, { tensors: [] }).catch(e => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect(err.code).toBe(ErrorCode.HANDLER_FAILED)
    expect(err.message).toContain('boom')
  })

  it('an oversized request is reset by the receiver with one log line; the handler never runs', async () => {
    const [a, b] = await memoryNetwork(2)
    const lines: string[] = []
    let ran = 0
    await handle(b, P, async (req) => { ran++; return req }, { maxMessageBytes: 1000, log: (l) => lines.push(l) })
    const err = await call(a, b.peerId, P, tensorMsg(1001, 1), { timeoutMs: 5000 }).catch(e => e)
    expect(err).toBeInstanceOf(StreamEndedError)
    expect(ran).toBe(0)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/reset .*test-echo.* from .*LimitExceededError: message payload 1001\+ bytes > limit 1000/)
    // the handler still serves well-formed requests afterwards
    expect((await call(a, b.peerId, P, tensorMsg(1000, 2))).tensors[0].data).toEqual(patternBytes(1000, 2))
  })

  it('a caller enforces its own limit on the response', async () => {
    const [a, b] = await memoryNetwork(2)
    await handle(b, P, async () => tensorMsg(5000, 1))
    await expect(call(a, b.peerId, P, { tensors: [] }, { maxMessageBytes: 4096, log: () => {} })).rejects.toBeInstanceOf(LimitExceededError)
  })

  it('a silent handler makes the caller fail with StreamTimeoutError within the idle timeout', async () => {
    const [a, b] = await memoryNetwork(2)
    let handlerSignal: AbortSignal | undefined
    await handle(b, P, async (_req, ctx) => {
      handlerSignal = ctx.signal
      await new Promise(resolve => ctx.signal.addEventListener('abort', resolve))
      return { tensors: [] }
    })
    // The total timeout is far off, so only the idle timer can end the call: its message says so.
    const err = await call(a, b.peerId, P, { tensors: [] }, { idleTimeoutMs: 300, timeoutMs: 600_000 }).catch(e => e)
    expect(err).toBeInstanceOf(StreamTimeoutError)
    expect(err.message).toMatch(/sent nothing for \d+ ms \(read\)/)
    await waitFor(() => handlerSignal?.aborted === true)
    expect(handlerSignal?.aborted).toBe(true) // the reset reached the handler
  })

  it('a total timeout bounds the call even while the peer keeps talking', async () => {
    const [a, b] = await memoryNetwork(2)
    // A handler that answers only once aborted: however slow the machine, only the 200 ms total timeout ends the call.
    await handle(b, P, async (_r, ctx) => { await aborted(ctx.signal); ctx.signal.throwIfAborted(); return { tensors: [] } })
    await expect(call(a, b.peerId, P, { tensors: [] }, { timeoutMs: 200 })).rejects.toBeInstanceOf(StreamTimeoutError)
  })

  it('cancelling mid-transfer fails the caller with CancelledError and aborts the handler side', async () => {
    const [a, b] = await memoryNetwork(2, 2)
    const ac = new AbortController()
    let handlerStarted = false
    let handlerAborted = false
    await handle(b, P, async (_r, ctx) => {
      handlerStarted = true
      ctx.signal.addEventListener('abort', () => { handlerAborted = true })
      await aborted(ctx.signal) // a handler still busy when the caller cancels
      return { tensors: [] }
    })
    const p = call(a, b.peerId, P, tensorMsg(4 << 20, 9), { signal: ac.signal })
    await waitFor(() => a.streams.length === 1) // mid-transfer: the stream is open, 4 MiB do not fit its 2-message capacity
    ac.abort(new Error('user'))
    await expect(p).rejects.toBeInstanceOf(CancelledError)
    // the reset reached the handler side (if the handler ever started, it saw the abort)
    await waitFor(() => b.streams.length === 1 && b.streams[0].status !== 'open')
    await waitFor(() => !handlerStarted || handlerAborted)
    // the request was cut off mid-message, so the handler never started; or it started and saw the abort
    expect(handlerStarted ? handlerAborted : true).toBe(true)
    expect(a.streams[0].status).not.toBe('open')
  })
})

describe('openStream / handleStream', () => {
  it('streams many messages each way in order; the window bounds how far a sender runs ahead', async () => {
    const [a, b] = await memoryNetwork(2)
    let served = 0
    await handleStream(b, P, async (ch) => {
      for await (const m of ch) {
        served++
        await ch.send({ meta: { n: m.meta?.n ?? -1 }, tensors: [{ ...m.tensors[0], name: 'back' }] })
      }
    }, { windowMessages: 3 })
    const ch = await openStream(a, b.peerId, P)
    const N = 40
    const sender = (async () => {
      for (let n = 0; n < N; n++) await ch.send(tensorMsg(20_000 + n, n, { n }))
      await ch.closeWrite()
    })()
    const got: number[] = []
    for await (const m of ch) {
      expect(m.tensors[0].data).toEqual(patternBytes(20_000 + got.length, got.length))
      got.push(m.meta?.n as number)
    }
    await sender
    expect(got).toEqual([...Array(N).keys()])
    expect(served).toBe(N)
  })

  it('a sender blocks once the window is used up and resumes when the reader consumes', async () => {
    const [a, b] = await memoryNetwork(2)
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const readAt: number[] = []
    await handleStream(b, P, async (ch) => {
      await gate
      for await (const m of ch) readAt.push(m.meta?.n as number)
    }, { windowMessages: 2 })
    const ch = await openStream(a, b.peerId, P)
    let sent = 0
    const sender = (async () => { for (let n = 0; n < 6; n++) { await ch.send(tensorMsg(10, n, { n })); sent++ } await ch.closeWrite() })()
    await quiet([a, b]) // both messages arrived, and the reader (gated) granted nothing more
    expect(sent).toBe(2) // two credits, then blocked
    release()
    await sender
    await waitFor(() => readAt.length === 6)
    expect(readAt).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('credit returns in batches of half the window, and a request/response exchange never stalls', async () => {
    const [a, b] = await memoryNetwork(2)
    await handleStream(b, P, async (ch) => { for await (const m of ch) await ch.send(m) }, { windowMessages: 4 })
    const ch = await openStream(a, b.peerId, P, { windowMessages: 4 })
    // Count the CREDIT frames the opener sends (frame type is byte 1 of a frame header).
    const raw = a.streams[0]
    const send = raw.send.bind(raw)
    let credits = 0
    raw.send = (bytes: Uint8Array) => { if (bytes[1] === 4) credits++; return send(bytes) }
    const N = 20
    for (let i = 0; i < N; i++) { // strict alternation: one request, one reply
      await ch.send(tensorMsg(8, 1, { i }))
      const r = await ch.read()
      expect(r?.meta).toEqual({ i })
    }
    expect(credits).toBe(N / 2) // one CREDIT (of 2) per two replies read, not one per reply
    await ch.closeWrite()
  })

  it('a peer that sends past its credit is reset', async () => {
    const [a, b] = await memoryNetwork(2)
    const lines: string[] = []
    let got = 0
    await handleStream(b, P, async (ch) => { await sleep(200) /* paces the fake: a slow reader, so the forged START lands first */; for await (const _ of ch) got++ }, { windowMessages: 1, log: l => lines.push(l) })
    const ch = await openStream(a, b.peerId, P)
    // bypass the credit check by writing raw frames on the underlying stream
    await ch.send(tensorMsg(10, 1, { n: 0 }))
    const { writeStart, encodeFrame, FrameType } = await import('../../web/src/net/stream/codec.ts')
    const { crc32 } = await import('../../web/src/net/stream/crc32.ts')
    const start = writeStart({ tensors: [] })
    a.streams[0].send(encodeFrame(FrameType.START, 2, start, crc32(start)))
    await waitFor(() => lines.length > 0)
    expect(lines.join('\n')).toMatch(/UnexpectedFrameError: START without credit/)
    expect(got).toBeLessThanOrEqual(1)
  })

  it('a handler error reaches the reader as RemoteError', async () => {
    const [a, b] = await memoryNetwork(2)
    await handleStream(b, P, async (ch) => { await ch.read(); throw new HandlerError(ErrorCode.UNAVAILABLE, 'draining') })
    const ch = await openStream(a, b.peerId, P)
    await ch.send({ tensors: [] })
    await expect(ch.read()).rejects.toMatchObject({ name: 'RemoteError', code: ErrorCode.UNAVAILABLE })
  })

  it('aborting the opener signal resets the stream; the handler read fails', async () => {
    const [a, b] = await memoryNetwork(2)
    let handlerErr: unknown
    await handleStream(b, P, async (ch) => { try { await ch.read(); await ch.read() } catch (e) { handlerErr = e } })
    const ac = new AbortController()
    const ch = await openStream(a, b.peerId, P, { signal: ac.signal })
    await ch.send({ tensors: [] })
    ac.abort()
    await expect(ch.read()).rejects.toBeInstanceOf(CancelledError)
    await waitFor(() => handlerErr !== undefined)
    expect(handlerErr).toBeInstanceOf(StreamEndedError)
  })
})

/** Resolves once `signal` aborts (a handler that never finishes on its own). */
async function aborted (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>(resolve => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}
