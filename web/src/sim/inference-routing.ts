/**
 * Inference routing under churn through the real client/server stack: N real BlockServers, each
 * serving a seeded span of a seeded tiny model on the CPU backend, and one real InferenceClient
 * (routing, RTT measurement, sessions, failover, ban list) over the seeded MemoryNetwork, all in
 * virtual time (manual-time.ts: a ManualClock driven as a discrete-event clock), so the figures do not depend on the machine's load.
 *
 * The world (model.ts; servers drawn as in routing.ts, so a seed gives both sims the same
 * starting swarm, their churn draws then differ):
 * each server has a span of 1–8 blocks, a throughput (log-normal around 20 blocks/s) and a
 * one-way link latency; the client's own link costs nothing. A message between client and
 * server takes the server's latency; a server's forward takes HOP_OVERHEAD_MS plus tokens ×
 * blocks / throughput of simulated time (after the real forward has run). So a one-token step
 * through route R takes exactly the planner's `routeCostMs(R)` (rtt = 2 × latency), and what a
 * completion's decode steps take beyond the best route is routing: a stale directory, departed
 * servers, failovers.
 *
 * A completion: the client's directory is the live swarm one churn round ago — since then a
 * `churnPerRequest` fraction of servers has left (killed: it still lists them) and as many have
 * joined (it does not list them). While the completion runs, servers keep leaving at
 * `churnPerMinute` of simulated time (seeded exponential gaps; each is killed, so requests in
 * flight to it fail as a closed connection, and replaced by a joiner the directory does not
 * show). Success = the greedy tokens equal the reference computed locally with all blocks;
 * route ratio = the decode steps' simulated time ÷ what the best route over the servers live at
 * each step's start (global knowledge) costs.
 *
 * Shared, read-only: every server's span is a BlockSpan over one parameter store (the model's
 * weights are held once, whatever N). Not run: hedging (its deadlines are real timers and would
 * race the virtual clock; departures here close connections, which failover handles without
 * it), push (client-driven STEPs are the cost the planner models), servers' idle sweeps
 * (sessions end by CLOSE or with their server), verification.
 */
import { cpu } from '../gpu/cpu-backend.ts'
import { parseConfig, type ModelConfig } from '../model/config.ts'
import { BlockSpan, CausalLM, initHostWeights, uploadParams } from '../model/model.ts'
import { partParams, wholeModel } from '../model/params.ts'
import { Sampler } from '../model/sampler.ts'
import { InferenceClient } from '../swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../swarm/client/generate.ts'
import type { InferenceSession } from '../swarm/client/session.ts'
import { HOP_OVERHEAD_MS } from '../swarm/constants.ts'
import { NoRouteError, PeerUnreachableError } from '../swarm/errors.ts'
import { modelEnds, ModelSpanBackend } from '../swarm/model-backend.ts'
import type { BlockRecord, ExpertRecord, SwarmDirectory } from '../swarm/records.ts'
import { planRoute, routeCostMs } from '../swarm/route.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../swarm/server/backend.ts'
import { SpanWrapper } from '../swarm/server/span-wrapper.ts'
import { BlockServer } from '../swarm/server/block-server.ts'
import type { RpcTransport } from '../swarm/transport/index.ts'
import { MemoryNetwork } from '../swarm/transport/memory.ts'
import { ManualClock, type Clock, type TimerHandle } from '../util/clock.ts'
import { SimConfigError, SimStateError } from './errors.ts'
import { NetModel } from './model.ts'
import { inVirtualTime } from './manual-time.ts'

const MODEL = 'sim-tiny-llama'
const CLIENT = 'client'
/** HF's init is N(0, 0.02): logits that close make greedy picks hang on rounding; ×15 separates them. */
const WEIGHT_SCALE = 15
/** Longest span a server holds, in blocks (as routing.ts). */
const MAX_SPAN = 8

export interface InferenceRoutingInit {
  seed?: number
  /** Live servers held throughout. */
  servers: number
  /** Blocks (decoder layers) of the model. @default 32 */
  numBlocks?: number
  /** Fraction of servers replaced between the client's directory read and its completion (one churn round). @default 0.1 */
  churnPerRequest?: number
  /** Servers leaving (each replaced by an unseen joiner) per live server per simulated minute while a completion runs. @default 0.1 */
  churnPerMinute?: number
  /** Tokens of each (seeded) prompt. @default 8 */
  promptTokens?: number
  /** Greedy tokens per completion. @default 12 */
  newTokens?: number
}

export interface CompletionRecord {
  /** The tokens equal the local reference. */
  ok: boolean
  /** Why it failed, when it threw. */
  error?: string
  /** Hops replaced mid-session (FailoverEvents). */
  failovers: number
  /** Servers of the session's route killed while it ran. */
  killedOnRoute: number
  /** Decode steps' simulated time ÷ the global-knowledge best route's cost over the same steps; undefined when it threw or the live swarm could not cover the model. */
  ratio?: number
  /** Simulated ms of the decode steps. */
  decodeMs: number
}

export interface InferenceRoutingResult {
  requests: number
  /** Completions whose tokens equal the reference. */
  succeeded: number
  /** Hops replaced mid-session, over all completions. */
  failovers: number
  /** Route servers killed while their completion ran. */
  killedOnRoute: number
  /** Client requests that found their server gone (closed connection, or left before the request). */
  requestsToGone: number
  /** Per completion with a ratio. */
  ratios: number[]
  /** The first few failures' messages. */
  errors: string[]
  /** Simulated time of the whole run, ms. */
  virtualMs: number
}

interface SimServer {
  server: BlockServer
  record: BlockRecord
}

/** The directory the client reads: a snapshot the sim takes at each round's start (one churn step stale). */
class SnapshotDirectory implements SwarmDirectory {
  snapshot: readonly BlockRecord[] = []

  async blockRecords (model: string): Promise<BlockRecord[]> {
    return model === MODEL ? this.snapshot.map(r => ({ ...r })) : []
  }

  async announceBlocks (rec: BlockRecord): Promise<void> {
    throw new SimStateError(`${rec.peer} announced to the sim's directory, which only the sim writes`)
  }

  async expertRecords (): Promise<ExpertRecord[]> {
    return []
  }

  async announceExperts (rec: ExpertRecord): Promise<void> {
    throw new SimStateError(`${rec.peer} announced experts to the sim's directory, which only the sim writes`)
  }
}

/** A span whose forward costs simulated time: HOP_OVERHEAD_MS + tokens × blocks × `msPerTokenBlock`, after the real forward. */
class TimedSpan extends SpanWrapper {
  constructor (inner: ModelSpanBackend, private readonly clock: Clock, private readonly msPerTokenBlock: number, private readonly work: { computing: number }) {
    super(inner)
  }

  override async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    this.work.computing++
    let out: Float32Array[]
    try {
      out = await super.forward(steps)
    } finally {
      this.work.computing--
    }
    const ms = HOP_OVERHEAD_MS + steps.reduce((a, s) => a + s.tokens * (s.cache.end - s.cache.start), 0) * this.msPerTokenBlock
    await new Promise<void>(resolve => { this.clock.setTimeout(resolve, ms) })
    return out
  }

  /** The weights are every server's: never freed by one. */
  override dispose (): void {}
}

/** Counts the client's requests that found their server gone. */
function countingGone (t: RpcTransport, counter: { gone: number }): RpcTransport {
  return {
    self: t.self,
    handle: (p, h) => t.handle(p, h),
    unhandle: p => t.unhandle(p),
    request: async (peer, protocol, body, opts) => {
      try {
        return await t.request(peer, protocol, body, opts)
      } catch (e) {
        if (e instanceof PeerUnreachableError) counter.gone++
        throw e
      }
    }
  }
}

/** A Llama of `numBlocks` layers at width 16 with seeded weights, on the CPU backend. */
function tinyModel (numBlocks: number, seed: number): CausalLM {
  const config: ModelConfig = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 64, hidden_size: 16, intermediate_size: 32, num_hidden_layers: numBlocks, num_attention_heads: 2, num_key_value_heads: 1, rms_norm_eps: 1e-5 })
  const host = initHostWeights(partParams(config, wholeModel(config)), seed)
  for (const [name, t] of host) {
    if (!name.endsWith('norm.weight')) for (let i = 0; i < t.data.length; i++) t.data[i] *= WEIGHT_SCALE
  }
  return new CausalLM(config, uploadParams(cpu, host), cpu)
}

export class InferenceRoutingSim {
  readonly clock = new ManualClock()
  /** Never advanced: the servers' idle sweeps do not run (sessions end by CLOSE or with their server). */
  private readonly idleClock = new ManualClock()
  readonly net: MemoryNetwork
  readonly client: InferenceClient
  private readonly model: NetModel
  private readonly lm: CausalLM
  private readonly ends: ClientEnds
  private readonly reference: ModelSpanBackend
  private readonly numBlocks: number
  private readonly churn: number
  private readonly churnPerMinute: number
  private readonly promptTokens: number
  private readonly newTokens: number
  private readonly directory = new SnapshotDirectory()
  private readonly live = new Map<string, SimServer>()
  /** One-way latency of each peer's link, ms (the client's: 0). */
  private readonly latency = new Map<string, number>()
  /** True RTTs (2 × latency): the global knowledge the best route is planned with. */
  readonly rttMs = new Map<string, number>()
  private readonly work = { computing: 0 }
  private readonly counter = { gone: 0 }
  private session?: InferenceSession
  private killedOnRoute = 0
  private next = 0
  private best?: { version: number, ms: number }
  private version = 0

  constructor (init: InferenceRoutingInit) {
    const int = (v: number | undefined, name: string, min: number, dflt: number): number => {
      const x = v ?? dflt
      if (!Number.isInteger(x) || x < min) throw new SimConfigError(`${name} must be an integer ≥ ${min}, got ${v}`)
      return x
    }
    const servers = int(init.servers, 'servers', 1, Number.NaN)
    this.numBlocks = int(init.numBlocks, 'numBlocks', 1, 32)
    this.promptTokens = int(init.promptTokens, 'promptTokens', 1, 8)
    // Two at least: the ratio is over decode steps, the first token comes from the prefill.
    this.newTokens = int(init.newTokens, 'newTokens', 2, 12)
    this.churn = init.churnPerRequest ?? 0.1
    if (!(this.churn >= 0 && this.churn < 1)) throw new SimConfigError(`churnPerRequest ${this.churn} must be in [0, 1)`)
    this.churnPerMinute = init.churnPerMinute ?? 0.1
    if (!(this.churnPerMinute >= 0 && this.churnPerMinute < Number.POSITIVE_INFINITY)) throw new SimConfigError(`churnPerMinute ${this.churnPerMinute} must be a finite rate ≥ 0`)
    const seed = init.seed ?? 1
    this.model = new NetModel({ seed })
    this.lm = tinyModel(this.numBlocks, seed)
    this.ends = modelEnds(this.lm)
    this.reference = new ModelSpanBackend(MODEL, this.lm.span)
    this.net = new MemoryNetwork({ seed, clock: this.clock, linkLatencyMs: (a, b) => (this.latency.get(a) ?? 0) + (this.latency.get(b) ?? 0) })
    this.client = new InferenceClient({
      transport: countingGone(this.net.endpoint(CLIENT), this.counter),
      directory: this.directory,
      model: MODEL,
      numBlocks: this.numBlocks,
      hiddenSize: this.lm.config.hiddenSize,
      clock: this.clock,
      hedge: false,
      push: false
    })
    for (let i = 0; i < servers; i++) this.addServer()
  }

  /** Servers live now. */
  get servers (): number {
    return this.live.size
  }

  /** A server with a seeded span, throughput and latency (drawn in routing.ts's order), serving at once. */
  private addServer (): void {
    const rng = this.model.rng
    const peer = `server-${this.next++}`
    const len = 1 + rng.int(Math.min(MAX_SPAN, this.numBlocks))
    const start = rng.int(this.numBlocks - len + 1)
    const throughput = 20 * Math.exp(0.6 * rng.normal())
    const latency = this.model.latencyMs()
    this.latency.set(peer, latency)
    this.rttMs.set(peer, 2 * latency)
    const span = new ModelSpanBackend(MODEL, new BlockSpan(this.lm.config, { start, end: start + len }, this.lm.params, cpu))
    const server = new BlockServer({
      transport: this.net.endpoint(peer),
      backend: new TimedSpan(span, this.clock, 1000 / throughput, this.work),
      cacheBudgetBytes: 1 << 24,
      batchWindowMs: 0,
      clock: this.idleClock,
      now: this.clock.now,
      log: () => {} // refusals here are requests of sessions whose server was killed: expected
    })
    server.start()
    const record: BlockRecord = { peer, model: MODEL, start, end: start + len, state: 'online', throughput, cacheTokensLeft: 1 << 20, version: 1, expiresAt: Number.MAX_SAFE_INTEGER }
    this.live.set(peer, { server, record })
    this.version++
  }

  /** A server leaves without a word: its connections close, its sessions are gone. */
  kill (peer: string): void {
    const s = this.live.get(peer)
    if (s === undefined) return
    this.live.delete(peer)
    this.version++
    if (this.session?.route.some(h => h.peer === peer) === true) this.killedOnRoute++
    this.net.kill(peer)
    s.server.stop()
  }

  /** Cost of one token through the best route over the live servers (global knowledge); NaN when they cannot cover the model. */
  bestStepMs (): number {
    if (this.best?.version === this.version) return this.best.ms
    const records = [...this.live.values()].map(s => s.record)
    let ms: number
    try {
      ms = routeCostMs(planRoute(records, 0, this.numBlocks, { rttMs: this.rttMs }), records, this.rttMs)
    } catch (e) {
      if (!(e instanceof NoRouteError)) throw e
      ms = Number.NaN
    }
    this.best = { version: this.version, ms }
    return ms
  }

  /** The greedy tokens after `prompt` with every block run here. */
  async referenceTokens (prompt: readonly number[]): Promise<number[]> {
    const C = this.lm.config.hiddenSize
    const cache = this.reference.createCache(prompt.length + this.newTokens, 0, this.numBlocks)
    const sampler = new Sampler({})
    const out: number[] = []
    try {
      let [h] = await this.reference.forward([{ cache, hidden: await this.ends.embed(prompt), tokens: prompt.length }])
      for (;;) {
        out.push(sampler.sample(await this.ends.logits(h.subarray(h.length - C))))
        if (out.length >= this.newTokens) return out
        ;[h] = await this.reference.forward([{ cache, hidden: await this.ends.embed([out[out.length - 1]]), tokens: 1 }])
      }
    } finally {
      cache.dispose()
    }
  }

  /**
   * One churn round, then one completion under churn. `killRouteAt`: also kill the server of the
   * route's hop `hop` once `token` tokens are out (a test's departure of a server in use).
   */
  async complete (opts: { killRouteAt?: { token: number, hop: number } } = {}): Promise<CompletionRecord> {
    const rng = this.model.rng
    this.directory.snapshot = [...this.live.values()].map(s => s.record)
    const ids = [...this.live.keys()]
    const leavers = this.model.pick(ids.length, Math.round(ids.length * this.churn)).map(i => ids[i])
    for (const peer of leavers) this.kill(peer)
    for (let i = 0; i < leavers.length; i++) this.addServer()
    // Departures during the completion: a Poisson process over the live servers, in simulated time.
    const perMs = this.live.size * this.churnPerMinute / 60_000
    let departure: TimerHandle | undefined
    const nextDeparture = (): void => {
      if (perMs <= 0) return
      departure = this.clock.setTimeout(() => {
        const live = [...this.live.keys()]
        this.kill(live[rng.int(live.length)])
        this.addServer()
        nextDeparture()
      }, -Math.log(1 - rng.next()) / perMs)
    }
    nextDeparture()
    const prompt = Array.from({ length: this.promptTokens }, () => rng.int(this.lm.config.vocabSize))
    const expected = await this.referenceTokens(prompt)

    const steps: Array<{ at: number, best: number }> = []
    const killedBefore = this.killedOnRoute
    const run = swarmGenerate(this.client, this.ends, prompt, {
      maxNewTokens: this.newTokens,
      stopTokens: [],
      onSession: s => { this.session = s },
      onToken: () => {
        steps.push({ at: this.clock.now(), best: this.bestStepMs() })
        const k = opts.killRouteAt
        if (k !== undefined && steps.length === k.token) {
          const hop = this.session?.route[k.hop]
          if (hop === undefined) throw new SimStateError(`killRouteAt: the route has no hop ${k.hop}`)
          this.kill(hop.peer)
        }
      }
    })
    let rec: CompletionRecord
    try {
      const r = await inVirtualTime(this.clock, this.net, run, { busy: () => this.work.computing > 0 })
      const ok = r.tokens.length === expected.length && r.tokens.every((t, i) => t === expected[i])
      let decodeMs = 0
      let bestMs = 0
      for (let k = 1; k < steps.length; k++) {
        decodeMs += steps[k].at - steps[k - 1].at
        bestMs += steps[k - 1].best
      }
      rec = { ok, failovers: r.session.failovers.length, killedOnRoute: this.killedOnRoute - killedBefore, decodeMs, ...(Number.isFinite(bestMs) ? { ratio: decodeMs / bestMs } : {}) }
      if (!ok) rec.error = `tokens ${r.tokens.join(',')} differ from the reference ${expected.join(',')}`
    } catch (e) {
      if (e instanceof SimStateError) throw e
      rec = { ok: false, error: (e as Error).message, failovers: this.session?.failovers.length ?? 0, killedOnRoute: this.killedOnRoute - killedBefore, decodeMs: Number.NaN }
    }
    this.session = undefined
    this.clock.clearTimeout(departure)
    return rec
  }

  /** `n` completions, each in its own churn round. */
  async run (n: number): Promise<InferenceRoutingResult> {
    if (!Number.isInteger(n) || n < 1) throw new SimConfigError(`completions must be an integer ≥ 1, got ${n}`)
    const out: InferenceRoutingResult = { requests: n, succeeded: 0, failovers: 0, killedOnRoute: 0, requestsToGone: 0, ratios: [], errors: [], virtualMs: 0 }
    const t0 = this.clock.now()
    const gone0 = this.counter.gone
    for (let q = 0; q < n; q++) {
      const c = await this.complete()
      if (c.ok) out.succeeded++
      else if (out.errors.length < 5) out.errors.push(c.error ?? 'failed')
      out.failovers += c.failovers
      out.killedOnRoute += c.killedOnRoute
      if (c.ok && c.ratio !== undefined) out.ratios.push(c.ratio)
    }
    out.requestsToGone = this.counter.gone - gone0
    out.virtualMs = this.clock.now() - t0
    return out
  }

  /** Stops every server (their sessions' caches freed) and frees the model. */
  stop (): void {
    for (const peer of [...this.live.keys()]) this.kill(peer)
    this.lm.dispose()
  }
}
