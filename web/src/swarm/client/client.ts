/**
 * The inference client: finds servers in the directory, measures RTTs, plans a min-latency route
 * over all blocks, and opens sessions along it (session.ts). Embedding and LM head stay with the
 * caller (generate.ts).
 */
import { BanList } from '../ban-list.ts'
import { HEDGE_FLOOR_MS, INFER_PROTOCOL, INFER_TIMEOUT_MS, MAX_FAILOVERS_PER_STEP, PLAN_MAX_BAN_WAIT_MS } from '../constants.ts'
import { errorFromWire, NoRouteError, PeerProtocolError, PeerTimeoutError, PeerUnreachableError, SwarmArgumentError } from '../errors.ts'
import type { BlockRecord, SwarmDirectory } from '../records.ts'
import { planRoute, type RouteSegment } from '../route.ts'
import type { InProcessServer, InProcessServers } from '../server/in-process.ts'
import type { RpcTransport } from '../transport/index.ts'
import type { Clock } from '../../util/clock.ts'
import { readInfer, writeInfer, type InferMsg } from '../wire/infer.ts'
import { StepLatency } from './latency.ts'
import { VerifyPolicy, type VerifyOptions } from './verify.ts'
import { InferenceSession } from './session.ts'

export interface InferenceClientOptions {
  transport: RpcTransport
  directory: SwarmDirectory
  /** Model id as servers announce it. */
  model: string
  /** Blocks in the model. */
  numBlocks: number
  /** C */
  hiddenSize: number
  /** Per-request timeout, ms. @default INFER_TIMEOUT_MS */
  timeoutMs?: number
  /** Re-plans allowed per step before the generation fails. @default MAX_FAILOVERS_PER_STEP */
  maxFailovers?: number
  /** Clock, ms. @default Date.now (or `clock.now` when `clock` is given) */
  now?: () => number
  /**
   * Times RTT measurements and the wait for a ban to end (the scale sim's virtual time, where a
   * link's latency costs simulated ms, not wall time). @default performance.now and the
   * process's timers
   */
  clock?: Clock
  /** Failover and routing events (one line each). @default nothing */
  log?: (line: string) => void
  /**
   * Let servers push activations straight to the next server (CHAIN / PUSH): a token costs
   * hops + 1 one-way messages on its critical path instead of 2 · hops, but 5 requests instead
   * of 3 over 3 hops (CHAINs to every hop, PUSHes between them). That wins where a message's
   * latency is more than its handling (peers far apart); on loopback, where handling is the
   * cost, client-driven STEPs measured faster (BENCHMARKS.md), hence off by default. Servers
   * that predate push are found out and sent plain STEPs. @default false
   */
  push?: boolean
  /**
   * With push: after each step, send hops 1.. their CHAIN for the next one-token step right away,
   * so it travels while the next token is sampled. @default true
   */
  armAhead?: boolean
  /**
   * Hedge late steps: when a server has not answered by its deadline (srtt + 4 · rttvar of its
   * past one-token steps, or T × that of its past prefills per token for a T-token step; at least
   * `hedgeFloorMs`), re-run that span on a spare in parallel and take whichever answers first
   * (failover.ts). A server that dies without closing its connection
   * (SIGKILL, a crashed tab, a pulled cable) then costs about the deadline, not the hard timeout.
   * With push, each hop's CHAIN reply gets a deadline of its own. @default true
   */
  hedge?: boolean
  /** Least deadline before a hedge, in ms. @default HEDGE_FLOOR_MS */
  hedgeFloorMs?: number
  /**
   * Check servers' outputs on other servers (verify.ts): spot checks at `rate`, a liar banned
   * and the session rebuilt from its first wrong position (step() then throws
   * SessionRewoundError; swarmGenerate re-sends from there). @default off
   */
  verify?: VerifyOptions
  /**
   * Block servers of this process (the embedded peer of `npm start`): requests to them are
   * handed over as objects, neither encoded nor copied (server/in-process.ts). @default none
   */
  inProcess?: InProcessServers
}

/** A failover, as the session saw it: for logs, the page and the recovery benchmark. */
export interface FailoverEvent {
  peer: string
  error: string
  span: { start: number, end: number }
  replacement: RouteSegment[]
  /** Positions replayed into the replacement, in tokens. */
  replayed: number
  /** From the failure's detection to the replacement holding the cache again, ms. */
  ms: number
}

/**
 * Whether a request of this type extends the server's KV cache: one that ran twice would shift
 * it (the resend's position no longer matches), so the transport never resends it after writing.
 */
export function advancesCache (type: InferMsg['type']): boolean {
  return type === 'step' || type === 'stepCommit' || type === 'chain'
}

export class InferenceClient {
  readonly transport: RpcTransport
  readonly directory: SwarmDirectory
  readonly model: string
  readonly numBlocks: number
  readonly hiddenSize: number
  readonly timeoutMs: number
  readonly maxFailovers: number
  readonly now: () => number
  readonly bans: BanList
  readonly rttMs = new Map<string, number>()
  readonly log: (line: string) => void
  readonly push: boolean
  readonly armAhead: boolean
  /** Peers that answered a CHAIN `malformed` (they predate push): routes through them use STEP. */
  readonly noPush = new Set<string>()
  readonly hedge: boolean
  /** One-token step latency per server, for hedge deadlines. */
  readonly latency: StepLatency
  /** Per-token time of multi-token (prefill) steps per server; a T-token step's deadline is T times its. */
  readonly prefillLatency: StepLatency
  /** Output verification, when asked for: its policy and counters over all sessions. */
  readonly verify?: VerifyPolicy
  readonly inProcess?: InProcessServers
  /** Times RTTs, ms (sub-millisecond in the real client). */
  private readonly elapsedNow: () => number
  /** Waits `ms` (for a ban to end). */
  private readonly sleep: (ms: number) => Promise<void>

  constructor (opts: InferenceClientOptions) {
    if (!Number.isInteger(opts.numBlocks) || opts.numBlocks < 1) throw new SwarmArgumentError(`numBlocks must be ≥ 1, got ${opts.numBlocks}`)
    this.transport = opts.transport
    this.directory = opts.directory
    this.model = opts.model
    this.numBlocks = opts.numBlocks
    this.hiddenSize = opts.hiddenSize
    this.timeoutMs = opts.timeoutMs ?? INFER_TIMEOUT_MS
    this.maxFailovers = opts.maxFailovers ?? MAX_FAILOVERS_PER_STEP
    this.now = opts.now ?? opts.clock?.now ?? Date.now
    const clock = opts.clock
    this.elapsedNow = clock === undefined ? () => performance.now() : clock.now
    this.sleep = async ms => { await new Promise<void>(resolve => { if (clock === undefined) setTimeout(resolve, ms); else clock.setTimeout(resolve, ms) }) }
    this.bans = new BanList(this.now)
    this.log = opts.log ?? (() => {})
    this.push = opts.push ?? false
    this.armAhead = opts.armAhead ?? true
    this.hedge = opts.hedge ?? true
    this.latency = new StepLatency(Math.min(opts.hedgeFloorMs ?? HEDGE_FLOOR_MS, this.timeoutMs), this.timeoutMs)
    this.prefillLatency = new StepLatency(this.latency.floorMs, this.timeoutMs)
    this.verify = opts.verify === undefined ? undefined : new VerifyPolicy(opts.verify)
    this.inProcess = opts.inProcess
  }

  /**
   * When a `tokens`-token step of `peer` is late (ms after it was sent), or undefined when that
   * kind of step of `peer` was never measured. One token: the one-token estimate. More (prefill):
   * T × the per-token estimate of earlier multi-token steps (a session's first prefill is never
   * hedged; later ones, e.g. the next chat turn, are).
   */
  stepDeadline (peer: string, tokens: number): number | undefined {
    return tokens === 1 ? this.latency.deadline(peer) : this.prefillLatency.deadline(peer, tokens)
  }

  /** Records an answered step of `peer` that took `ms` for `tokens` positions. */
  sampleStep (peer: string, tokens: number, ms: number): void {
    if (tokens === 1) this.latency.sample(peer, ms)
    else this.prefillLatency.sample(peer, ms / tokens)
  }

  /** One `infer` request (timing out after `timeoutMs`, default the client's); a server's ERROR comes back as its typed error. */
  async call (peer: string, msg: InferMsg, timeoutMs = this.timeoutMs, signal?: AbortSignal): Promise<InferMsg> {
    const servers = this.inProcess
    const local = servers?.get(peer)
    let reply: InferMsg
    if (servers !== undefined && local !== undefined) {
      reply = await this.callInProcess(local, peer, msg, timeoutMs, signal)
      servers.served++
    } else if (peer === this.transport.self) {
      // This client's own peer id (the API on the embedded peer's node, cli/api.ts) with no block
      // server of this process registered: it stopped. Over the network this would dial itself.
      throw new PeerUnreachableError(peer, 'the block server of this process has stopped')
    } else {
      reply = await this.callRemote(peer, msg, timeoutMs, signal)
    }
    if (reply.type === 'error') throw errorFromWire(reply.code, reply.message)
    return reply
  }

  private async callRemote (peer: string, msg: InferMsg, timeoutMs: number, signal?: AbortSignal): Promise<InferMsg> {
    const bytes = await this.transport.request(peer, INFER_PROTOCOL, writeInfer(msg), { timeoutMs, idempotent: !advancesCache(msg.type), signal })
    try {
      return readInfer(bytes)
    } catch (e) {
      throw new PeerProtocolError(peer, (e as Error).message)
    }
  }

  /**
   * A request to a block server of this process: the message itself, as a transport would deliver
   * it otherwise — the same timeout and abort (a forward stuck on a dead span thread), a thrown
   * handler as a stream reset. The server keeps no reference to the request's arrays after it
   * answers; its reply's are fresh (the backends' outputs), so neither side copies.
   */
  private async callInProcess (server: InProcessServer, peer: string, msg: InferMsg, timeoutMs: number, signal?: AbortSignal): Promise<InferMsg> {
    if (signal?.aborted === true) throw new PeerUnreachableError(peer, 'request aborted')
    let timer: ReturnType<typeof setTimeout> | undefined
    let onAbort: (() => void) | undefined
    const cut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new PeerTimeoutError(peer, timeoutMs)), timeoutMs)
      onAbort = () => reject(new PeerUnreachableError(peer, 'request aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
    })
    const answer = server.serve(this.transport.self, msg).catch((e: unknown) => {
      throw new PeerUnreachableError(peer, `stream reset: ${(e as Error).name}: ${(e as Error).message}`)
    })
    // An answer after a timeout or abort is dropped, as a network's would be.
    answer.catch(() => {})
    try {
      return await Promise.race([answer, cut])
    } finally {
      clearTimeout(timer)
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    }
  }

  /** RTT to each peer not yet measured, by an INFO round trip on an open connection; peers that fail are banned. */
  async measureRtts (peers: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(peers)].filter(p => !this.rttMs.has(p) && !this.bans.isBanned(p)).map(async p => {
      try {
        // The first INFO also sets up the connection (WebRTC, stream): time the second one.
        let r = await this.call(p, { type: 'info' })
        const t0 = this.elapsedNow()
        r = await this.call(p, { type: 'info' })
        if (r.type !== 'infoOk') throw new PeerProtocolError(p, `expected infoOk, got ${r.type}`)
        this.rttMs.set(p, this.elapsedNow() - t0)
      } catch (e) {
        this.bans.ban(p)
        this.log(`rtt: ${p} did not answer INFO (${(e as Error).message}); banned`)
      }
    }))
  }

  /** The last records() answer and when it came (this.now()), for plans that cannot wait on the directory. */
  private lastRecords?: { at: number, records: BlockRecord[] }

  /** Live records of this model's servers. */
  async records (): Promise<BlockRecord[]> {
    const records = await this.directory.blockRecords(this.model)
    this.lastRecords = { at: this.now(), records }
    return records
  }

  /**
   * Plan blocks [from, to) over unbanned servers with `cacheTokens` of room, measuring new peers'
   * RTT first; `avoid` (a server being hedged: late, not banned) is left out too. With
   * `cachedMs`, a first try plans over records fetched at most that long ago: a DHT lookup may
   * wait seconds on the very server that stopped answering (a hedge cannot).
   */
  async plan (from: number, to: number, cacheTokens: number, avoid?: string | ReadonlySet<string>, cachedMs?: number): Promise<RouteSegment[]> {
    const avoided = (p: string): boolean => typeof avoid === 'string' ? p === avoid : avoid?.has(p) === true
    for (let attempt = 0; ; attempt++) {
      const last = this.lastRecords
      const cached = attempt === 0 && cachedMs !== undefined && last !== undefined && this.now() - last.at <= cachedMs
      const records = (cached ? last.records : await this.records()).filter(r => r.start < to && r.end > from)
      await this.measureRtts(records.filter(r => r.state === 'online').map(r => r.peer))
      try {
        return planRoute(records, from, to, { rttMs: this.rttMs, exclude: p => avoided(p) || this.bans.isBanned(p), cacheTokens })
      } catch (e) {
        // Old records may lack a newer spare: ask the directory.
        if (cached && e instanceof NoRouteError) continue
        // Only bans stand in the way, and the first ends soon: wait for it and try again.
        const wait = this.bans.msUntilUnban(records.map(r => r.peer))
        if (!(e instanceof NoRouteError) || wait === undefined || wait > PLAN_MAX_BAN_WAIT_MS || attempt >= this.maxFailovers) throw e
        this.log(`plan [${from}, ${to}): ${e.message}; retrying in ${wait} ms when a ban ends`)
        await this.sleep(wait + 1)
      }
    }
  }

  /** A session over all blocks, able to hold `maxTokens` positions. */
  async openSession (maxTokens: number): Promise<InferenceSession> {
    const s = new InferenceSession(this, maxTokens)
    await s.open()
    return s
  }
}
