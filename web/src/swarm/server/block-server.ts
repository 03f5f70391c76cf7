/**
 * The `infer` protocol's server side: sessions on a span of blocks, validated steps, concurrent
 * sessions' steps batched into one backend call. Bad input ends that session with a typed error
 * to its client; other sessions carry on.
 *
 * Push (CHAIN / PUSH): the client arms each hop with a CHAIN naming the peer that will push its
 * input and the next hop's (peer, session); the server runs the step when the PUSH comes, pushes
 * its output on, and answers the client with it. A PUSH is only taken for a session's next
 * position, from the peer its CHAIN named (or, if it comes first, held until that CHAIN); it
 * never ends the session, whoever sent it.
 */
import { commit } from '../commitment.ts'
import { CONNECT_AHEAD_TIMEOUT_MS, INFER_PROTOCOL, MAX_STEP_TOKENS, PUSH_TIMEOUT_MS, PUSH_WAIT_MS, SESSION_IDLE_TIMEOUT_MS, SESSION_SWEEP_INTERVAL_MS } from '../constants.ts'
import {
  errorFromWire, MalformedMessageError, PositionError, PushNotReceivedError, reportable, ServerInternalError, SpanNotServedError, SupersededError,
  TensorShapeError, UnknownSessionError
} from '../errors.ts'
import type { RpcTransport, TensorMessage } from '../transport/index.ts'
import { every, realClock, type Clock } from '../../util/clock.ts'
import { nextTurn } from '../../util/next-turn.ts'
import type { WireTensor } from '../wire/schema.ts'
import { readInfer, writeInfer, type ChainedMsg, type ChainMsg, type ChainNext, type InferMsg, type PushedMsg, type PushMsg, type StepMsg } from '../wire/infer.ts'
import type { SpanBackend } from './backend.ts'
import type { InProcessServers } from './in-process.ts'
import { SessionTable, type ServerSession } from './sessions.ts'

export interface BlockServerOptions {
  transport: RpcTransport
  backend: SpanBackend
  /** KV-cache memory for sessions, in bytes. */
  cacheBudgetBytes: number
  /** Close sessions idle this long, in ms. @default SESSION_IDLE_TIMEOUT_MS */
  idleTimeoutMs?: number
  /** How often to look for idle sessions, in ms. @default SESSION_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number
  /** Announced tokens/s through one block; refreshed by measurement as steps run. @default 1 */
  throughput?: number
  /** How long a CHAIN waits for its pushed input, ms. @default PUSH_WAIT_MS */
  pushWaitMs?: number
  /** How long a PUSH to the next server may take to be accepted, ms: the client's CHAIN reply waits for it. @default PUSH_TIMEOUT_MS */
  pushTimeoutMs?: number
  /**
   * How long an idle server with other sessions open waits for their steps before it runs a
   * batch, ms (a real timer, not `clock`). Steps from other peers arrive spread out, so a short
   * wait batches more of them; 0 = the next turn of the event loop, enough for steps delivered
   * in-process together (the API's co-located peer, in-process.ts), where any wait is a
   * token's latency. A busy server batches whatever queued meanwhile either way.
   * @default BATCH_WINDOW_MS
   */
  batchWindowMs?: number
  /** Where this server registers while started, for clients of its own process (in-process.ts). @default none */
  inProcess?: InProcessServers
  /** Clock, ms. @default Date.now */
  now?: () => number
  /** Times the idle sweep, a CHAIN's wait for its push and how long an early push is held (tests: a ManualClock). @default realClock */
  clock?: Clock
  /** Where refused requests are reported (one line each). @default console.warn */
  log?: (line: string) => void
}

/** See BlockServerOptions.batchWindowMs: Node's shortest timer (a 0 ms timer waits as long). */
const BATCH_WINDOW_MS = 1

interface QueuedStep {
  session: ServerSession
  msg: StepMsg
  resolve: (out: Float32Array) => void
  reject: (e: Error) => void
}

/** Serves `infer` for one span. */
export class BlockServer {
  readonly sessions: SessionTable
  private readonly transport: RpcTransport
  private backend: SpanBackend
  private readonly idleMs: number
  private readonly sweepMs: number
  private readonly pushWaitMs: number
  private readonly pushTimeoutMs: number
  private readonly batchWindowMs: number
  private readonly now: () => number
  private readonly clock: Clock
  private readonly log: (line: string) => void
  private readonly inProcess?: InProcessServers
  /** Stops the idle sweeps (set while started). */
  private stopSweeper?: () => void
  private readonly queue: QueuedStep[] = []
  /** Next hops being connected to in the background. */
  private readonly connecting = new Set<string>()
  /** A turn of the event loop is collecting the next batch. */
  private collecting = false
  /** Batches handed to the backend and not yet answered. */
  private inFlight = 0
  /** Measured tokens/s through one block (exponential moving average), from the starting guess on. */
  throughput: number
  /** Whether a batch was timed yet (before, `throughput` is only the starting guess). */
  private measured = false
  /** Counters for /metrics, the page and tests. */
  readonly stats = { steps: 0, batches: 0, maxBatch: 0, tokens: 0, errors: 0, pushesSent: 0, pushesTaken: 0, sweeps: 0 }

  constructor (opts: BlockServerOptions) {
    this.transport = opts.transport
    this.backend = opts.backend
    this.now = opts.now ?? Date.now
    this.clock = opts.clock ?? realClock
    this.idleMs = opts.idleTimeoutMs ?? SESSION_IDLE_TIMEOUT_MS
    this.sweepMs = opts.sweepIntervalMs ?? SESSION_SWEEP_INTERVAL_MS
    this.pushWaitMs = opts.pushWaitMs ?? PUSH_WAIT_MS
    this.pushTimeoutMs = opts.pushTimeoutMs ?? PUSH_TIMEOUT_MS
    this.batchWindowMs = opts.batchWindowMs ?? BATCH_WINDOW_MS
    this.throughput = opts.throughput ?? 1
    this.log = opts.log ?? (line => console.warn(line))
    this.inProcess = opts.inProcess
    this.sessions = new SessionTable(this.backend, opts.cacheBudgetBytes, this.now)
  }

  get span (): { model: string, start: number, end: number } {
    return { model: this.backend.model, start: this.backend.start, end: this.backend.end }
  }

  start (): void {
    this.transport.handle(INFER_PROTOCOL, (from, body) => this.handle(from, body))
    this.stopSweeper = every(this.clock, this.sweepMs, () => { this.sessions.sweep(this.idleMs); this.stats.sweeps++ })
    this.inProcess?.add(this.transport.self, this)
  }

  stop (): void {
    this.inProcess?.remove(this.transport.self, this)
    this.transport.unhandle(INFER_PROTOCOL)
    this.stopSweeper?.()
    this.sessions.closeAll()
  }

  /** One request in, one reply out. Never throws: failures become ERROR replies. */
  async handle (from: string, body: TensorMessage): Promise<TensorMessage> {
    let msg: InferMsg | undefined
    try {
      msg = readInfer(body)
      return writeInfer(await this.dispatch(from, msg))
    } catch (e) {
      return writeInfer(this.refuse(from, msg, e))
    }
  }

  /** `handle` for a client of this process (in-process.ts): the message itself, neither decoded nor copied. */
  async serve (from: string, msg: InferMsg): Promise<InferMsg> {
    try {
      return await this.dispatch(from, msg)
    } catch (e) {
      return this.refuse(from, msg, e)
    }
  }

  /** The ERROR reply to a failed request (`msg` undefined: it did not decode). */
  private refuse (from: string, msg: InferMsg | undefined, e: unknown): InferMsg {
    const { error: err, code } = reportable(e)
    this.stats.errors++
    // A CHAIN replaced by the client's own STEP is the normal fallback, not worth a line.
    if (!(err instanceof SupersededError)) this.log(`infer: refused ${msg?.type ?? 'message'} from ${from}: ${err.name}: ${err.message}`)
    // Bad input ends that session (its cache may be half-written); others are untouched.
    // Only the owner's own bad step ends a session: naming another peer's session id must not close it.
    // A CHAIN that lost its wait for a push (or was replaced by a newer step) was not bad input.
    const own = msg !== undefined && (msg.type === 'step' || msg.type === 'stepCommit' || msg.type === 'chain') && this.sessions.owns(from, msg.session) ? msg.session : undefined
    if (own !== undefined && !(err instanceof PushNotReceivedError || err instanceof SupersededError)) this.sessions.close(own)
    return { type: 'error', code, message: err.message }
  }

  private async dispatch (from: string, msg: InferMsg): Promise<InferMsg> {
    switch (msg.type) {
      case 'open': {
        const b = this.backend
        if (msg.model !== b.model || msg.start < b.start || msg.end > b.end) {
          throw new SpanNotServedError(`this server runs ${b.model} blocks [${b.start}, ${b.end}), asked for ${msg.model} [${msg.start}, ${msg.end})`)
        }
        const s = this.sessions.open(from, msg.maxTokens, msg.start, msg.end)
        return { type: 'opened', session: s.id, cacheTokensLeft: this.sessions.tokensLeft() }
      }
      case 'step': {
        const s = this.sessions.get(from, msg.session)
        this.supersede(s)
        const out = await this.run(s, msg)
        return { type: 'output', session: s.id, position: msg.position, hidden: { shape: msg.hidden.shape, data: out } }
      }
      case 'stepCommit': {
        const s = this.sessions.get(from, msg.session)
        this.supersede(s)
        const out = await this.run(s, { type: 'step', session: msg.session, position: msg.position, hidden: msg.hidden })
        const c = commit(out, this.backend.hiddenSize, msg.k)
        return { type: 'commitment', session: s.id, position: msg.position, k: c.k, rows: c.rows, data: c.bytes }
      }
      case 'chain':
        return await this.chain(from, msg)
      case 'push':
        return this.takePush(from, msg)
      case 'close': {
        this.sessions.get(from, msg.session)
        this.sessions.close(msg.session)
        return { type: 'closed', session: msg.session }
      }
      case 'info':
        return { type: 'infoOk', spans: [this.span], throughput: this.throughput, cacheTokensLeft: this.sessions.tokensLeft() }
      default:
        throw new MalformedMessageError(`infer: a server does not accept '${msg.type}' messages`)
    }
  }

  /** Queues a step behind the session's earlier ones. */
  private run (s: ServerSession, msg: StepMsg): Promise<Float32Array> {
    // Counted while queued or running: a forward longer than the idle timeout (a big span on a
    // software adapter) must not have its cache freed under it; idle time restarts when it ends.
    s.active++
    const run = s.busy.then(() => this.step(s, msg)).finally(() => { s.active--; s.lastUsed = this.now() })
    // The caller gets `run`'s failure; the queue only orders the next step after it.
    s.busy = run.catch(() => {})
    return run
  }

  /** A newer STEP / CHAIN from the client replaces a CHAIN still waiting for its push. */
  private supersede (s: ServerSession): void {
    const p = s.pending
    if (p === undefined) return
    s.pending = undefined
    p.fail(new SupersededError(`the CHAIN at position ${p.position} of session ${s.id} was replaced by a newer request before its push came`))
  }

  private async chain (from: string, msg: ChainMsg): Promise<ChainedMsg> {
    const s = this.sessions.get(from, msg.session)
    const C = this.backend.hiddenSize
    const self = this.transport.self
    if (msg.next !== undefined && msg.next.peer === self && msg.next.session === s.id) throw new MalformedMessageError(`chain: route loop: session ${s.id} would push to itself`)
    if ('from' in msg.input && msg.input.from === self && msg.next?.peer === self) throw new MalformedMessageError('chain: route loop: pushed by and pushing to this same server')
    this.supersede(s)
    let hidden: WireTensor
    if ('hidden' in msg.input) {
      hidden = msg.input.hidden
      if (hidden.shape[0] !== msg.tokens) throw new TensorShapeError(`chain: ${msg.tokens} tokens announced, hidden is [${hidden.shape.join(', ')}]`)
    } else {
      hidden = { shape: [msg.tokens, C], data: await this.awaitPush(s, msg.position, msg.tokens, msg.input.from) }
    }
    const out = await this.run(s, { type: 'step', session: s.id, position: msg.position, hidden })
    const pushError = msg.next === undefined ? '' : await this.push(msg.next, msg.position, msg.tokens, out)
    return { type: 'chained', session: s.id, position: msg.position, hidden: { shape: [msg.tokens, C], data: out }, pushError }
  }

  /** The input the CHAIN at `position` waits for: a PUSH already held, or the next one from `pusher`. */
  private async awaitPush (s: ServerSession, position: number, tokens: number, pusher: string): Promise<Float32Array> {
    const early = s.early
    s.early = undefined
    if (early !== undefined && early.position === position && early.from === pusher && early.tokens === tokens) return early.hidden
    return await new Promise<Float32Array>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        if (s.pending !== pending) return
        s.pending = undefined
        reject(new PushNotReceivedError(`no push from ${pusher} for position ${position} of session ${s.id} within ${this.pushWaitMs} ms`))
      }, this.pushWaitMs)
      const pending = {
        position,
        tokens,
        from: pusher,
        deliver: (h: Float32Array) => { this.clock.clearTimeout(timer); resolve(h) },
        fail: (e: Error) => { this.clock.clearTimeout(timer); reject(e) }
      }
      s.pending = pending
    })
  }

  /** A PUSH from another server: validated, then handed to the waiting CHAIN or held for it. */
  private takePush (from: string, msg: PushMsg): PushedMsg {
    const s = this.sessions.peek(msg.session)
    const C = this.backend.hiddenSize
    const shape = msg.hidden.shape
    if (shape.length !== 2 || shape[1] !== C || shape[0] < 1 || shape[0] > MAX_STEP_TOKENS) throw new TensorShapeError(`push: hidden must be (T, ${C}) with 1 ≤ T ≤ ${MAX_STEP_TOKENS}, got [${shape.join(', ')}]`)
    for (const v of msg.hidden.data) {
      if (!Number.isFinite(v)) throw new TensorShapeError('push: hidden holds NaN or infinite values')
    }
    const tokens = shape[0]
    const p = s.pending
    if (p !== undefined) {
      if (p.from !== from) throw new UnknownSessionError(`session ${s.id} awaits a push from ${p.from}, not from ${from}`)
      if (p.position !== msg.position || p.tokens !== tokens) throw new PositionError(`session ${s.id} awaits ${p.tokens} tokens at position ${p.position}, got ${tokens} at ${msg.position}`)
      s.pending = undefined
      this.stats.pushesTaken++
      p.deliver(msg.hidden.data)
      return { type: 'pushed', session: s.id, position: msg.position }
    }
    // Its CHAIN has not come yet (the two race on different links): hold it, once, for the next position.
    if (msg.position !== s.cache.length) throw new PositionError(`push at position ${msg.position}, but session ${s.id} is at ${s.cache.length}`)
    if (s.early !== undefined) throw new PositionError(`session ${s.id} already holds a push for position ${s.early.position}`)
    const early = { position: msg.position, from, tokens, hidden: msg.hidden.data }
    s.early = early
    this.clock.setTimeout(() => { if (s.early === early) s.early = undefined }, this.pushWaitMs)
    this.stats.pushesTaken++
    return { type: 'pushed', session: s.id, position: msg.position }
  }

  /** Pushes a CHAIN's output to the next hop; returns '' when it was taken, else why not (for the client). */
  private async push (next: ChainNext, position: number, tokens: number, out: Float32Array): Promise<string> {
    const self = this.transport.self
    // A first connection (WebRTC through the relay) takes far longer than a step: set it up in
    // the background and let the client send this one itself.
    if (next.peer !== self && this.transport.connected?.(next.peer) === false) {
      this.connectSoon(next.peer)
      return `no connection to ${next.peer} yet (connecting); not pushed`
    }
    const body = writeInfer({ type: 'push', session: next.session, position, hidden: { shape: [tokens, this.backend.hiddenSize], data: out } })
    let why: string
    try {
      // The same server may hold the next hop too (a peer can appear twice in a route).
      const reply = readInfer(next.peer === self
        ? await this.handle(next.peer, body)
        : await this.transport.request(next.peer, INFER_PROTOCOL, body, { timeoutMs: this.pushTimeoutMs, idempotent: false }))
      if (reply.type === 'pushed' && reply.session === next.session && reply.position === position) {
        this.stats.pushesSent++
        return ''
      }
      why = reply.type === 'error' ? `${errorFromWire(reply.code, reply.message).name}: ${reply.message}` : `unexpected reply ${reply.type}`
    } catch (e) {
      why = `${(e as Error).name}: ${(e as Error).message}`
    }
    this.log(`infer: push to ${next.peer} failed: ${why}`)
    // Fits the wire's 1 KiB string cap whatever the characters.
    return `push to ${next.peer} failed: ${why}`.slice(0, 250)
  }

  /** Connects to a next hop in the background, once at a time per peer. */
  private connectSoon (peer: string): void {
    if (this.connecting.has(peer) || this.transport.connect === undefined) return
    this.connecting.add(peer)
    this.transport.connect(peer, CONNECT_AHEAD_TIMEOUT_MS)
      .catch(e => this.log(`infer: could not connect to next hop ${peer}: ${(e as Error).message}`))
      .finally(() => this.connecting.delete(peer))
  }

  private validate (s: ServerSession, msg: StepMsg): void {
    const C = this.backend.hiddenSize
    const shape = msg.hidden.shape
    if (shape.length !== 2 || shape[1] !== C || shape[0] < 1) throw new TensorShapeError(`hidden must be (T, ${C}) with T ≥ 1, got [${shape.join(', ')}]`)
    // The wire's decoder checks this; an in-process request (serve) is not decoded.
    if (msg.hidden.data.length !== shape[0] * C) throw new TensorShapeError(`hidden of shape [${shape.join(', ')}] holds ${msg.hidden.data.length} values`)
    if (shape[0] > MAX_STEP_TOKENS) throw new TensorShapeError(`step of ${shape[0]} tokens exceeds ${MAX_STEP_TOKENS}; send it in chunks`)
    if (msg.position !== s.cache.length) throw new PositionError(`session ${s.id} holds ${s.cache.length} positions; a step must start there, not at ${msg.position}`)
    if (msg.position + shape[0] > s.maxTokens) throw new PositionError(`positions [${msg.position}, ${msg.position + shape[0]}) exceed the session's ${s.maxTokens} tokens`)
    for (const v of msg.hidden.data) {
      if (!Number.isFinite(v)) throw new TensorShapeError('hidden holds NaN or infinite values')
    }
  }

  /** Validate, then queue for the next batch. */
  private step (s: ServerSession, msg: StepMsg): Promise<Float32Array> {
    this.validate(s, msg)
    return new Promise((resolve, reject) => {
      this.queue.push({ session: s, msg, resolve, reject })
      this.drain()
    })
  }

  /**
   * Runs queued steps in batches: whatever queued while earlier batches ran goes together. Up to
   * the backend's pipelineDepth batches are handed over at once (a worker backend: it computes
   * one while this thread answers the other's sessions and collects the next).
   */
  private drain (): void {
    if (this.collecting || this.queue.length === 0 || this.inFlight >= (this.backend.pipelineDepth ?? 1)) return
    this.collecting = true
    const go = (): void => {
      this.collecting = false
      const depth = this.backend.pipelineDepth ?? 1
      while (this.queue.length > 0 && this.inFlight < depth) {
        this.inFlight++
        void this.runBatch(this.nextBatch(depth)).finally(() => {
          this.inFlight--
          this.drain()
        })
      }
    }
    // Continuous batching: with other sessions open, give their steps a moment to arrive (on
    // the CPU twins a forward never yields, so none would queue behind it).
    if (this.sessions.size <= 1) go()
    else if (this.batchWindowMs > 0) setTimeout(go, this.batchWindowMs)
    else nextTurn(go)
  }

  /** Takes the next batch off the queue (grouping never changes results: batched-span.ts). */
  private nextBatch (depth: number): QueuedStep[] {
    const lane = this.backend.lane
    if (lane !== undefined) {
      // Lanes compute at once: the first queued step's lane's steps, all of them.
      const l = lane(this.queue[0].session.cache)
      const batch: QueuedStep[] = []
      const rest: QueuedStep[] = []
      for (const q of this.queue) (lane(q.session.cache) === l ? batch : rest).push(q)
      this.queue.splice(0, this.queue.length, ...rest)
      return batch
    }
    // Sessions in lockstep (all answered together, all back together) would leave the other
    // thread idle while this one answers them, and this one idle while it computes: with a
    // pipelined backend a batch holds at most half the open sessions, so they run as two
    // groups, one group's answers overlapping the other's forward.
    const n = depth > 1 ? Math.min(this.queue.length, Math.ceil(this.sessions.size / 2)) : this.queue.length
    return this.queue.splice(0, n)
  }

  private async runBatch (batch: QueuedStep[]): Promise<void> {
    const t0 = this.now()
    let outs: Float32Array[]
    try {
      outs = await this.backend.forward(batch.map(q => ({ cache: q.session.cache, hidden: q.msg.hidden.data, tokens: q.msg.hidden.shape[0] })))
    } catch (e) {
      for (const q of batch) q.reject(new ServerInternalError(`span forward failed: ${(e as Error).message}`))
      return
    }
    const tokens = batch.reduce((a, q) => a + q.msg.hidden.shape[0], 0)
    this.measure(batch.reduce((a, q) => a + q.msg.hidden.shape[0] * (q.session.cache.end - q.session.cache.start), 0), this.now() - t0)
    this.stats.batches++
    this.stats.steps += batch.length
    this.stats.tokens += tokens
    this.stats.maxBatch = Math.max(this.stats.maxBatch, batch.length)
    batch.forEach((q, i) => {
      q.session.lastUsed = this.now()
      q.resolve(outs[i])
    })
  }

  /**
   * `throughput` once a batch was timed, else undefined: the starting guess serves routing (the
   * announced record needs a number) but is no speed to show people (the page's swarm map).
   */
  get measuredThroughput (): number | undefined {
    return this.measured ? this.throughput : undefined
  }

  /** Blend a batch's measured speed (token-blocks per ms) into the announced throughput (tokens/s through one block). */
  private measure (tokenBlocks: number, ms: number): void {
    if (ms <= 0) return
    const tps = tokenBlocks * 1000 / ms
    this.throughput = 0.8 * this.throughput + 0.2 * tps
    this.measured = true
  }
}

