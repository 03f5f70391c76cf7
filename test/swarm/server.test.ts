import { afterEach, describe, expect, it, vi } from 'vitest'
import { INFER_PROTOCOL, WIRE_VERSION } from '../../web/src/swarm/constants.ts'
import { CacheFullError, errorFromWire, PositionError, PushNotReceivedError, ServerInternalError, SpanNotServedError, SupersededError, TensorShapeError, UnknownSessionError, MalformedMessageError, MessageTooLargeError } from '../../web/src/swarm/errors.ts'
import { BlockServer } from '../../web/src/swarm/server/block-server.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { C, FakeSpanBackend } from './fakes.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const servers: BlockServer[] = []
afterEach(() => { for (const s of servers.splice(0)) s.stop() })

function setup (opts: { budgetTokens?: number, idleMs?: number, now?: () => number, pushWaitMs?: number, clock?: ManualClock, batchWindowMs?: number } = {}) {
  const net = new MemoryNetwork({ seed: 3 })
  const backend = new FakeSpanBackend('m', 0, 2)
  const server = new BlockServer({
    transport: net.endpoint('S'),
    backend,
    cacheBudgetBytes: (opts.budgetTokens ?? 100) * 2 * backend.cacheBytesPerToken,
    idleTimeoutMs: opts.idleMs,
    sweepIntervalMs: 5,
    pushWaitMs: opts.pushWaitMs,
    batchWindowMs: opts.batchWindowMs,
    now: opts.now,
    clock: opts.clock,
    log: () => {}
  })
  server.start()
  servers.push(server)
  const peer = (id: string) => {
    const t = net.endpoint(id)
    return async (m: InferMsg | TensorMessage): Promise<InferMsg> => {
      const r = readInfer(await t.request('S', INFER_PROTOCOL, 'tensors' in m ? m : writeInfer(m), { timeoutMs: 2000 }))
      if (r.type === 'error') throw errorFromWire(r.code, r.message)
      return r
    }
  }
  return { net, backend, server, peer }
}

const rows = (T: number, v = 0.1) => ({ shape: [T, C], data: new Float32Array(T * C).fill(v) })

/** Resolves once `cond()` holds, checking after each macrotask: waits for an event, not for an amount of time. */
async function until (cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise(resolve => setImmediate(resolve))
}

describe('block server', () => {
  it('opens, steps, closes; answers INFO with span, throughput and cache room', async () => {
    const { peer, server } = setup()
    const a = peer('A')
    const info = await a({ type: 'info' })
    expect(info).toMatchObject({ type: 'infoOk', spans: [{ model: 'm', start: 0, end: 2 }], cacheTokensLeft: 100 })
    const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
    if (o.type !== 'opened') throw new Error('not opened')
    expect(o.cacheTokensLeft).toBe(90)
    const out = await a({ type: 'step', session: o.session, position: 0, hidden: rows(3) })
    expect(out.type === 'output' && out.hidden.shape).toEqual([3, C])
    await a({ type: 'step', session: o.session, position: 3, hidden: rows(1) })
    await a({ type: 'close', session: o.session })
    expect(server.sessions.size).toBe(0)
    await expect(a({ type: 'step', session: o.session, position: 4, hidden: rows(1) })).rejects.toThrow(UnknownSessionError)
  })

  it('has no measured throughput until a batch was timed (the announced 1 is a starting guess), then the blended measurement', async () => {
    let t = 0
    const { peer, server, backend } = setup({ now: () => t })
    expect(server.measuredThroughput).toBeUndefined()
    const a = peer('A')
    const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
    if (o.type !== 'opened') throw new Error('not opened')
    expect(server.measuredThroughput).toBeUndefined()
    let release!: () => void
    backend.gate = new Promise(resolve => { release = resolve })
    const step = a({ type: 'step', session: o.session, position: 0, hidden: rows(4) })
    await until(() => backend.forwardCalls.length === 1)
    t += 100
    release()
    await step
    // 4 tokens through 2 blocks in 100 ms: 80 tokens/s per block, blended into the guess of 1.
    expect(server.measuredThroughput).toBeCloseTo(0.8 * 1 + 0.2 * 80, 9)
  })

  it('refuses a session that does not fit the KV-cache budget, with the numbers', async () => {
    const { peer } = setup({ budgetTokens: 20 })
    const a = peer('A')
    await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 15 })
    await expect(a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })).rejects.toThrow(CacheFullError)
    await expect(a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })).rejects.toThrow(/5 tokens/)
    // A sub-span session costs half: 10 tokens × 1 block fits in what is left.
    await a({ type: 'open', model: 'm', start: 1, end: 2, maxTokens: 10 })
    await expect(a({ type: 'open', model: 'x', start: 0, end: 2, maxTokens: 1 })).rejects.toThrow(SpanNotServedError)
    await expect(a({ type: 'open', model: 'm', start: 1, end: 3, maxTokens: 1 })).rejects.toThrow(SpanNotServedError)
  })

  it('closes idle sessions and frees their cache', async () => {
    let now = 0
    // The sweeps run on a ManualClock: one runs where the test advances it by the 5 ms interval.
    const clock = new ManualClock()
    const { peer, server } = setup({ idleMs: 1000, now: () => now, clock })
    const a = peer('A')
    const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
    if (o.type !== 'opened') throw new Error('not opened')
    now = 2000
    const sweeps = server.stats.sweeps
    clock.advance(5)
    expect(server.stats.sweeps).toBe(sweeps + 1)
    expect(server.sessions.size).toBe(0)
    expect(server.sessions.reservedBytes).toBe(0)
    await expect(a({ type: 'step', session: o.session, position: 0, hidden: rows(1) })).rejects.toThrow(UnknownSessionError)
  })

  it('never closes a session whose step runs longer than the idle timeout; idle time counts from its end', async () => {
    let now = 0
    const clock = new ManualClock() // sweeps run where the test advances it (5 ms each)
    const { peer, server, backend } = setup({ idleMs: 1000, now: () => now, clock })
    const a = peer('A')
    const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
    if (o.type !== 'opened') throw new Error('not opened')
    let release = (): void => {}
    backend.gate = new Promise<void>(resolve => { release = resolve })
    const step = a({ type: 'step', session: o.session, position: 0, hidden: rows(1) })
    await until(() => backend.forwardCalls.length === 1) // the forward is running
    now = 5000 // far past the idle timeout while it runs
    const sweeps = server.stats.sweeps
    clock.advance(10)
    expect(server.stats.sweeps).toBe(sweeps + 2)
    expect(server.sessions.size).toBe(1)
    backend.gate = undefined
    release()
    expect((await step).type).toBe('output')
    now = 5500 // 500 ms after the step ended: still open
    const after = server.stats.sweeps
    clock.advance(10)
    expect(server.stats.sweeps).toBe(after + 2)
    expect(server.sessions.size).toBe(1)
    now = 6600
    clock.advance(5)
    expect(server.sessions.size).toBe(0)
  })

  it('bad input ends that session with a typed error; other clients keep being served', async () => {
    const { peer, server, backend } = setup()
    const a = peer('A')
    const b = peer('B')
    const ob = await b({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 20 })
    if (ob.type !== 'opened') throw new Error('not opened')
    const bad: Array<[(s: string) => InferMsg | TensorMessage, new (...a: any[]) => Error]> = [
      [s => ({ type: 'step', session: s, position: 0, hidden: { shape: [2, C + 1], data: new Float32Array(2 * (C + 1)) } }), TensorShapeError],
      [s => ({ type: 'step', session: s, position: 0, hidden: { shape: [1, 2, C], data: new Float32Array(2 * C) } }), TensorShapeError],
      [s => ({ type: 'step', session: s, position: 5, hidden: rows(1) }), PositionError],
      [s => ({ type: 'step', session: s, position: 0, hidden: rows(11) }), PositionError],
      [s => ({ type: 'step', session: s, position: 0, hidden: rows(1, NaN) }), TensorShapeError],
      [s => ({ type: 'step', session: s, position: 0, hidden: rows(600) }), TensorShapeError],
      [() => ({ type: 'step', session: 'no-such-session', position: 0, hidden: rows(1) }), UnknownSessionError],
      [() => ({ type: 'output', session: 'x', position: 0, hidden: rows(1) }), MalformedMessageError],
      [() => ({ meta: { v: WIRE_VERSION, t: 3, session: 200 }, tensors: [] }), MalformedMessageError],
      // (a tensor over the message cap never reaches the server: the stream refuses it, transport-limits.test.ts)
      [() => ({ ...writeInfer({ type: 'step', session: 's', position: 0, hidden: rows(1) }), meta: { v: WIRE_VERSION, t: 3, session: 'x'.repeat(2000), position: 0 } }), MessageTooLargeError]
    ]
    for (const [make, cls] of bad) {
      const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
      if (o.type !== 'opened') throw new Error('not opened')
      await expect(a(make(o.session))).rejects.toThrow(cls)
      // The offending session is gone (for step errors on a real session).
      if (cls !== UnknownSessionError && cls !== MalformedMessageError && cls !== MessageTooLargeError) {
        await expect(a({ type: 'step', session: o.session, position: 0, hidden: rows(1) })).rejects.toThrow(UnknownSessionError)
      }
      await b({ type: 'step', session: ob.session, position: server.sessions.get('B', ob.session).cache.length, hidden: rows(1) })
    }
    // A peer cannot drive another peer's session.
    await expect(a({ type: 'step', session: ob.session, position: 10, hidden: rows(1) })).rejects.toThrow(UnknownSessionError)
    // A compute failure is the server's: an internal error, and the session ends.
    backend.failNext = true
    await expect(b({ type: 'step', session: ob.session, position: 10, hidden: rows(1) })).rejects.toThrow(ServerInternalError)
    expect(server.stats.errors).toBeGreaterThanOrEqual(bad.length)
  })

  it('batches concurrent sessions\' steps into one backend call, each with its own cache', async () => {
    const { peer, backend, server } = setup()
    backend.delayMs = 20
    const clients = ['A', 'B', 'C', 'D'].map(peer)
    const sessions = await Promise.all(clients.map(async c => {
      const o = await c({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
      if (o.type !== 'opened') throw new Error('not opened')
      return o.session
    }))
    for (let pos = 0; pos < 3; pos++) {
      const outs = await Promise.all(clients.map((c, i) => c({ type: 'step', session: sessions[i], position: pos, hidden: rows(1, 0.1 * (i + 1)) })))
      // Different inputs → different outputs: no mixing of caches.
      const first = outs.map(o => o.type === 'output' ? o.hidden.data[0] : NaN)
      expect(new Set(first).size).toBe(4)
    }
    expect(server.stats.maxBatch).toBeGreaterThan(1)
    expect(backend.forwardCalls.length).toBeLessThan(12)
  })

  it('batchWindowMs 0: collects the steps that arrive in one turn of the event loop into one batch without waiting on a timer', async () => {
    // Only timers are faked: a batch that waited on a timer (≥ 1 ms in Node, paid by every
    // batched step) would never run here.
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval'] })
    try {
      const { server, backend } = setup({ clock: new ManualClock(), batchWindowMs: 0 })
      const ask = async (from: string, m: InferMsg): Promise<InferMsg> => readInfer(await server.handle(from, writeInfer(m)))
      const opened = await Promise.all(['A', 'B', 'C'].map(async p => await ask(p, { type: 'open', model: 'm', start: 0, end: 2, maxTokens: 4 })))
      const ids = opened.map(o => { if (o.type !== 'opened') throw new Error(`not opened: ${o.type}`); return o.session })
      let done = false
      const steps = Promise.all(['A', 'B', 'C'].map(async (p, i) => await ask(p, { type: 'step', session: ids[i], position: 0, hidden: rows(1, 0.1 * (i + 1)) }))).finally(() => { done = true })
      for (let turns = 0; turns < 20 && !done; turns++) await new Promise(resolve => setImmediate(resolve))
      expect(done).toBe(true)
      expect((await steps).map(o => o.type)).toEqual(['output', 'output', 'output'])
      expect(backend.forwardCalls).toEqual([3])
    } finally {
      vi.useRealTimers()
    }
  })

  for (const depth of [1, 2]) {
    it(`pipelineDepth ${depth}: ${depth === 2 ? 'hands the next batch over while the first runs' : 'waits for the running batch'}; outputs equal the unpipelined run`, async () => {
      const run = async (d: number, hold: boolean): Promise<{ outs: number[], callsWhileHeld: number }> => {
        const { peer, backend, server } = setup()
        backend.pipelineDepth = d
        const [a, b] = ['A', 'B'].map(peer)
        const open = async (c: typeof a): Promise<string> => {
          const o = await c({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
          if (o.type !== 'opened') throw new Error('not opened')
          return o.session
        }
        const [sa, sb] = [await open(a), await open(b)]
        let release = (): void => {}
        if (hold) backend.gate = new Promise(resolve => { release = resolve })
        const first = a({ type: 'step', session: sa, position: 0, hidden: rows(2, 0.3) })
        await until(() => backend.forwardCalls.length === 1)
        const second = b({ type: 'step', session: sb, position: 0, hidden: rows(1, 0.7) })
        // B's step is queued while A's forward is held, then handed over (depth 2) or kept (depth 1)
        // when the server's collecting timer (setTimeout 0, set as B's step queued) fires: before this one.
        await until(() => server.sessions.peek(sb)?.active === 1)
        await new Promise(resolve => setTimeout(resolve, 1))
        const callsWhileHeld = backend.forwardCalls.length
        backend.gate = undefined
        release()
        const outs = (await Promise.all([first, second])).map(o => o.type === 'output' ? o.hidden.data[0] : NaN)
        return { outs, callsWhileHeld }
      }
      const ref = await run(1, false)
      const got = await run(depth, true)
      expect(got.callsWhileHeld).toBe(depth)
      expect(got.outs).toEqual(ref.outs)
    })
  }

  it('pipelineDepth 2: a batch holds at most half the open sessions (two groups, not one lockstep batch); outputs equal depth 1', async () => {
    const run = async (d: number): Promise<{ outs: number[][], calls: number[] }> => {
      const { peer, backend, server } = setup()
      backend.pipelineDepth = d
      const clients = ['A', 'B', 'C', 'D', 'E', 'F'].map(peer)
      const sessions = await Promise.all(clients.map(async c => {
        const o = await c({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
        if (o.type !== 'opened') throw new Error('not opened')
        return o.session
      }))
      const active = (i: number) => () => server.sessions.peek(sessions[i])?.active === 1
      const outs: number[][] = []
      for (let pos = 0; pos < 2; pos++) {
        // A's forward (and B's, at depth 2) is held while C–F queue together behind them.
        let release = (): void => {}
        backend.gate = new Promise(resolve => { release = resolve })
        const calls = backend.forwardCalls.length
        const send = async (i: number): Promise<InferMsg> => await clients[i]({ type: 'step', session: sessions[i], position: pos, hidden: rows(1, 0.1 * (i + 1)) })
        const a = send(0)
        await until(() => backend.forwardCalls.length === calls + 1)
        const b = send(1)
        await until(() => active(1)() && (d === 1 || backend.forwardCalls.length === calls + 2))
        const rest = [2, 3, 4, 5].map(send)
        await until(() => [2, 3, 4, 5].every(i => active(i)()))
        // The server's collecting timer (set as the first of C–F queued) fires before this one.
        await new Promise(resolve => setTimeout(resolve, 1))
        backend.gate = undefined
        release()
        const step = await Promise.all([a, b, ...rest])
        outs.push(step.map(o => o.type === 'output' ? o.hidden.data[0] : NaN))
      }
      return { outs, calls: backend.forwardCalls }
    }
    const one = await run(1)
    const two = await run(2)
    // Depth 1: C–F join B's batch (5 of 6 sessions); depth 2: at most ceil(6 / 2) = 3 at once.
    expect(Math.max(...one.calls)).toBe(5)
    expect(Math.max(...two.calls)).toBe(3)
    expect(two.outs).toEqual(one.outs)
  })

  it('CHAIN / PUSH: takes a push only from the named peer, for the next position, well-shaped; refuses loops; bad pushes never end the session', async () => {
    // The push wait runs on a ManualClock: it expires where the test advances it, not when a
    // loaded machine is slow to deliver the pushes below.
    const clock = new ManualClock()
    const { peer, server } = setup({ pushWaitMs: 300, clock })
    const waitingForPush = (session: string) => () => server.sessions.peek(session)?.pending !== undefined
    const a = peer('A')
    const p = peer('P')
    const q = peer('Q')
    const open = async (): Promise<string> => {
      const o = await a({ type: 'open', model: 'm', start: 0, end: 2, maxTokens: 10 })
      if (o.type !== 'opened') throw new Error('not opened')
      return o.session
    }
    // Reference: the same input by STEP on another session.
    const ref = await a({ type: 'step', session: await open(), position: 0, hidden: rows(2) })
    const sid = await open()
    const chain = a({ type: 'chain', session: sid, position: 0, tokens: 2, input: { from: 'P' } })
    chain.catch(() => {})
    await until(waitingForPush(sid))
    const bad: Array<[() => Promise<InferMsg>, new (...a: any[]) => Error]> = [
      [() => p({ type: 'push', session: 'no-such-session', position: 0, hidden: rows(2) }), UnknownSessionError],
      [() => q({ type: 'push', session: sid, position: 0, hidden: rows(2) }), UnknownSessionError], // not the named pusher
      [() => p({ type: 'push', session: sid, position: 1, hidden: rows(2) }), PositionError],
      [() => p({ type: 'push', session: sid, position: 0, hidden: rows(3) }), PositionError], // CHAIN said 2 tokens
      [() => p({ type: 'push', session: sid, position: 0, hidden: { shape: [2, C + 1], data: new Float32Array(2 * (C + 1)) } }), TensorShapeError],
      [() => p({ type: 'push', session: sid, position: 0, hidden: rows(600) }), TensorShapeError],
      [() => p({ type: 'push', session: sid, position: 0, hidden: rows(2, NaN) }), TensorShapeError],
      [() => p({ ...writeInfer({ type: 'push', session: sid, position: 0, hidden: rows(2) }), meta: { v: WIRE_VERSION, t: 11, session: 'x'.repeat(2000), position: 0 } }), MessageTooLargeError]
    ]
    for (const [send, cls] of bad) await expect(send()).rejects.toThrow(cls)
    // The session still waits, and the right push completes the CHAIN with the STEP's numbers.
    expect(await p({ type: 'push', session: sid, position: 0, hidden: rows(2) })).toEqual({ type: 'pushed', session: sid, position: 0 })
    const out = await chain
    expect(out.type === 'chained' && [...out.hidden.data]).toEqual(ref.type === 'output' && [...ref.hidden.data])
    expect(out.type === 'chained' && out.pushError).toBe('')
    // A push that comes before its CHAIN is held for it.
    await p({ type: 'push', session: sid, position: 2, hidden: rows(1) })
    await expect(p({ type: 'push', session: sid, position: 2, hidden: rows(1) })).rejects.toThrow(PositionError) // one held at a time
    expect(await a({ type: 'chain', session: sid, position: 2, tokens: 1, input: { from: 'P' } })).toMatchObject({ type: 'chained', position: 2 })
    // Loops: a session pushing to itself.
    await expect(a({ type: 'chain', session: sid, position: 3, tokens: 1, input: { hidden: rows(1) }, next: { peer: 'S', session: sid } })).rejects.toThrow(/route loop/)
    // …which is the owner's bad input: like a bad STEP, it ends that session.
    await expect(a({ type: 'step', session: sid, position: 3, hidden: rows(1) })).rejects.toThrow(UnknownSessionError)
    const s2 = await open()
    // A CHAIN whose push never comes: pushWait, and the session lives on.
    const never = a({ type: 'chain', session: s2, position: 0, tokens: 1, input: { from: 'P' } })
    never.catch(() => {})
    await until(waitingForPush(s2))
    clock.advance(300)
    await expect(never).rejects.toThrow(PushNotReceivedError)
    // A CHAIN still waiting is replaced by the client's own STEP.
    const waiting = a({ type: 'chain', session: s2, position: 0, tokens: 1, input: { from: 'P' } })
    waiting.catch(() => {})
    await until(waitingForPush(s2))
    await a({ type: 'step', session: s2, position: 0, hidden: rows(1) })
    await expect(waiting).rejects.toThrow(SupersededError)
    // Pushing on: the output goes to the next server's session (here the same server, another session).
    const s3 = await open()
    const s4 = await open()
    const next = a({ type: 'chain', session: s3, position: 0, tokens: 1, input: { from: 'S' } })
    next.catch(() => {})
    const first = await a({ type: 'chain', session: s4, position: 0, tokens: 1, input: { hidden: rows(1) }, next: { peer: 'S', session: s3 } })
    expect(first.type === 'chained' && first.pushError).toBe('')
    const second = await next
    expect(second.type === 'chained' && second.position).toBe(0)
    expect(server.stats.pushesSent).toBe(1)
    // None of the refused pushes or waits ended a session (only the loop did).
    expect(server.sessions.size).toBe(4)
  })
})
