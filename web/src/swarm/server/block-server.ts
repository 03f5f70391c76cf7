/**
 * The `infer` protocol's server side: sessions on a span of blocks, validated steps, concurrent
 * sessions' steps batched into one backend call. Bad input ends that session with a typed error
 * to its client; other sessions carry on.
 */
import { INFER_PROTOCOL, MAX_STEP_TOKENS, SESSION_IDLE_TIMEOUT_MS, SESSION_SWEEP_INTERVAL_MS } from '../constants.ts'
import { MalformedMessageError, PositionError, RemoteReportableError, ServerInternalError, SpanNotServedError, TensorShapeError } from '../errors.ts'
import type { RpcTransport } from '../transport/index.ts'
import { readInfer, writeInfer, type InferMsg, type StepMsg } from '../wire/infer.ts'
import type { SpanBackend } from './backend.ts'
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
  /** Clock, ms. @default Date.now */
  now?: () => number
  /** Where refused requests are reported (one line each). @default console.warn */
  log?: (line: string) => void
}

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
  private readonly now: () => number
  private readonly log: (line: string) => void
  private sweeper?: ReturnType<typeof setInterval>
  private readonly queue: QueuedStep[] = []
  private running = false
  /** Measured tokens/s through one block (exponential moving average). */
  throughput: number
  /** Counters for /metrics, the page and tests. */
  readonly stats = { steps: 0, batches: 0, maxBatch: 0, tokens: 0, errors: 0 }

  constructor (opts: BlockServerOptions) {
    this.transport = opts.transport
    this.backend = opts.backend
    this.now = opts.now ?? Date.now
    this.idleMs = opts.idleTimeoutMs ?? SESSION_IDLE_TIMEOUT_MS
    this.sweepMs = opts.sweepIntervalMs ?? SESSION_SWEEP_INTERVAL_MS
    this.throughput = opts.throughput ?? 1
    this.log = opts.log ?? (line => console.warn(line))
    this.sessions = new SessionTable(this.backend, opts.cacheBudgetBytes, this.now)
  }

  get span (): { model: string, start: number, end: number } {
    return { model: this.backend.model, start: this.backend.start, end: this.backend.end }
  }

  start (): void {
    this.transport.handle(INFER_PROTOCOL, (from, body) => this.handle(from, body))
    this.sweeper = setInterval(() => this.sessions.sweep(this.idleMs), this.sweepMs)
  }

  stop (): void {
    this.transport.unhandle(INFER_PROTOCOL)
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    this.sessions.closeAll()
  }

  /** One request in, one reply out. Never throws: failures become ERROR replies. */
  async handle (from: string, body: Uint8Array): Promise<Uint8Array> {
    let msg: InferMsg | undefined
    try {
      msg = readInfer(body)
      return writeInfer(await this.dispatch(from, msg))
    } catch (e) {
      const err = e instanceof RemoteReportableError ? e : new ServerInternalError((e as Error).message)
      this.stats.errors++
      this.log(`infer: refused ${msg?.type ?? 'message'} from ${from}: ${err.name}: ${err.message}`)
      // Bad input ends that session (its cache may be half-written); others are untouched.
      // Only the owner's own bad step ends a session: naming another peer's session id must not close it.
      if (msg !== undefined && msg.type === 'step' && this.sessions.owns(from, msg.session)) this.sessions.close(msg.session)
      return writeInfer({ type: 'error', code: err.code, message: err.message })
    }
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
        const run = s.busy.then(() => this.step(s, msg))
        s.busy = run.catch(() => {})
        const out = await run
        return { type: 'output', session: s.id, position: msg.position, hidden: { shape: msg.hidden.shape, data: out } }
      }
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

  private validate (s: ServerSession, msg: StepMsg): void {
    const C = this.backend.hiddenSize
    const shape = msg.hidden.shape
    if (shape.length !== 2 || shape[1] !== C || shape[0] < 1) throw new TensorShapeError(`hidden must be (T, ${C}) with T ≥ 1, got [${shape.join(', ')}]`)
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
      void this.drain()
    })
  }

  /** Runs queued steps in batches: whatever queued while the previous batch ran goes together. */
  private async drain (): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.queue.length)
        const t0 = this.now()
        let outs: Float32Array[]
        try {
          outs = await this.backend.forward(batch.map(q => ({ cache: q.session.cache, hidden: q.msg.hidden.data, tokens: q.msg.hidden.shape[0] })))
        } catch (e) {
          for (const q of batch) q.reject(new ServerInternalError(`span forward failed: ${(e as Error).message}`))
          continue
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
    } finally {
      this.running = false
    }
  }

  /** Blend a batch's measured speed (token-blocks per ms) into the announced throughput (tokens/s through one block). */
  private measure (tokenBlocks: number, ms: number): void {
    if (ms <= 0) return
    const tps = tokenBlocks * 1000 / ms
    this.throughput = 0.8 * this.throughput + 0.2 * tps
  }
}
