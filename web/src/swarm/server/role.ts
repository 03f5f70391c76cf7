/**
 * A block server's life in the swarm: choose a span (given, or Petals' least-served window),
 * announce JOINING, load only those blocks, serve and announce ONLINE, refresh the record before
 * it expires, and periodically check whether moving would balance the swarm better (then move,
 * never leaving a block uncovered). Leaving announces OFFLINE.
 */
import { every, realClock, type Clock } from '../../util/clock.ts'
import { RECORD_REFRESH_MS, RECORD_TTL_MS } from '../constants.ts'
import { SwarmArgumentError } from '../errors.ts'
import type { BlockRecord, ServerState, SwarmDirectory } from '../records.ts'
import { chooseSpan, shouldRebalance, type RebalanceDecision } from '../spans.ts'
import type { RpcTransport } from '../transport/index.ts'
import type { SpanBackend } from './backend.ts'
import { BlockServer, type BlockServerOptions } from './block-server.ts'

/** The block server's own knobs (see BlockServerOptions) pass straight through. */
export interface ServerRoleOptions extends Pick<BlockServerOptions, 'pushWaitMs' | 'pushTimeoutMs' | 'batchWindowMs' | 'inProcess' | 'now' | 'log'> {
  transport: RpcTransport
  directory: SwarmDirectory
  model: string
  /** Blocks in the model. */
  numBlocks: number
  /** Serve exactly these blocks (`--blocks A:B`); otherwise choose `numServed` blocks. */
  span?: { start: number, end: number }
  /** How many blocks to hold when choosing (what memory allows). @default numBlocks */
  numServed?: number
  /** Start on these blocks instead of choosing (the caller chose them); unlike `span`, they may move when rebalancing. */
  firstSpan?: { start: number, end: number }
  /** Loads blocks [start, end) (weights from a URL/dir or peers). */
  loadSpan: (start: number, end: number) => Promise<SpanBackend>
  /** KV-cache memory for sessions, bytes. */
  cacheBudgetBytes: number
  /** Tokens/s through one block before any measurement (from a micro-benchmark). @default 1 */
  throughput?: number
  /** Record lifetime, ms. @default RECORD_TTL_MS */
  ttlMs?: number
  /** Re-announce period, ms. @default RECORD_REFRESH_MS */
  refreshMs?: number
  /** Check for rebalancing this often, ms; 0 = never (explicit spans never move). @default 0 */
  rebalanceMs?: number
  balanceQuality?: number
  idleTimeoutMs?: number
  /** Times the refresher, the rebalancer and the block server's timers (tests: a ManualClock). @default realClock */
  clock?: Clock
  /** Called with every record announced (e.g. to mirror a summary into the swarm CRDT for the page). */
  onAnnounce?: (record: BlockRecord) => void
}

/** What a block server writes into its swarm-doc entry as `serving` (PROTOCOL.md § peers). */
export interface ServingEntry {
  model: string
  start: number
  end: number
  state: ServerState
  /** Tokens/s through one block, to 0.1; absent until measured. */
  throughput?: number
}

export class ServerRole {
  server?: BlockServer
  private backend?: SpanBackend
  state: ServerState = 'offline'
  private version = 0
  /** Stop the periodic re-announce / rebalancing check (set while started). */
  private stopRefresher?: () => void
  private stopRebalancer?: () => void
  private readonly now: () => number
  private readonly clock: Clock
  private readonly log: (line: string) => void
  private span?: { start: number, end: number }
  /** Rebalancing decisions taken (for the page and tests). */
  readonly moves: RebalanceDecision[] = []

  constructor (private readonly opts: ServerRoleOptions) {
    this.now = opts.now ?? Date.now
    this.clock = opts.clock ?? realClock
    this.log = opts.log ?? (() => {})
  }

  get self (): string {
    return this.opts.transport.self
  }

  get currentSpan (): { start: number, end: number } | undefined {
    return this.span
  }

  /** Chooses (unless given), loads and starts serving a span. */
  async start (): Promise<void> {
    const o = this.opts
    let span = o.span ?? o.firstSpan
    if (span !== undefined) {
      if (!(Number.isInteger(span.start) && Number.isInteger(span.end) && span.start >= 0 && span.end <= o.numBlocks && span.start < span.end)) {
        throw new SwarmArgumentError(`--blocks ${span.start}:${span.end} is not a span of the model's ${o.numBlocks} blocks`)
      }
    } else {
      const others = (await o.directory.blockRecords(o.model)).filter(r => r.peer !== this.self && r.state !== 'offline')
      span = chooseSpan(others, o.numBlocks, o.numServed ?? o.numBlocks)
    }
    await this.serve(span)
    this.stopRefresher = every(this.clock, o.refreshMs ?? RECORD_REFRESH_MS, () => { void this.announce().catch(e => this.log(`announce failed: ${(e as Error).message}`)) })
    if (o.span === undefined && (o.rebalanceMs ?? 0) > 0) {
      this.stopRebalancer = every(this.clock, o.rebalanceMs ?? 0, () => { void this.rebalanceOnce().catch(e => this.log(`rebalance failed: ${(e as Error).message}`)) })
    }
  }

  private async serve (span: { start: number, end: number }): Promise<void> {
    this.span = span
    this.state = 'joining'
    await this.announce()
    const backend = this.backend = await this.opts.loadSpan(span.start, span.end)
    this.server = new BlockServer({
      transport: this.opts.transport,
      backend,
      cacheBudgetBytes: this.opts.cacheBudgetBytes,
      throughput: this.opts.throughput,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      pushWaitMs: this.opts.pushWaitMs,
      pushTimeoutMs: this.opts.pushTimeoutMs,
      batchWindowMs: this.opts.batchWindowMs,
      inProcess: this.opts.inProcess,
      now: this.now,
      clock: this.opts.clock,
      log: this.log
    })
    this.server.start()
    this.state = 'online'
    await this.announce()
    this.log(`serving ${this.opts.model} blocks [${span.start}, ${span.end})`)
  }

  /** The record as it would be announced now. */
  record (): BlockRecord {
    const s = this.span ?? { start: 0, end: 0 }
    return {
      peer: this.self,
      model: this.opts.model,
      start: s.start,
      end: s.end,
      state: this.state,
      throughput: this.server?.throughput ?? this.opts.throughput ?? 1,
      cacheTokensLeft: this.server?.sessions.tokensLeft() ?? 0,
      version: ++this.version,
      expiresAt: this.now() + (this.opts.ttlMs ?? RECORD_TTL_MS)
    }
  }

  /**
   * The `serving` field of this peer's swarm-doc entry (PROTOCOL.md § peers), which the page's
   * map reads: `throughput` only once measured — the record's starting guess is for routing, and
   * shown it read as a speed nobody measured. Undefined before a span is chosen.
   */
  servingEntry (): ServingEntry | undefined {
    if (this.span === undefined) return undefined
    const tp = this.server?.measuredThroughput
    return { model: this.opts.model, start: this.span.start, end: this.span.end, state: this.state, ...(tp === undefined ? {} : { throughput: Math.round(tp * 10) / 10 }) }
  }

  async announce (): Promise<void> {
    if (this.span === undefined) return
    const r = this.record()
    await this.opts.directory.announceBlocks(r)
    this.opts.onAnnounce?.(r)
  }

  /** One rebalancing check; moves (reloading blocks) when Petals' rule says so. Returns whether it moved. */
  async rebalanceOnce (): Promise<boolean> {
    if (this.span === undefined || this.state !== 'online') return false
    const records = (await this.opts.directory.blockRecords(this.opts.model)).filter(r => r.state !== 'offline')
    if (!records.some(r => r.peer === this.self)) records.push(this.record())
    const d = shouldRebalance(this.self, records, this.opts.numBlocks, { balanceQuality: this.opts.balanceQuality, seed: this.version })
    if (!d.move) return false
    this.moves.push(d)
    const len = this.span.end - this.span.start
    this.log(`rebalancing: [${this.span.start}, ${this.span.end}) → [${d.start}, ${d.start + len}) (${d.reason})`)
    this.server?.stop()
    this.backend?.dispose()
    await this.serve({ start: d.start, end: d.start + len })
    return true
  }

  /** Announces OFFLINE and stops serving. */
  async stop (): Promise<void> {
    this.stopRefresher?.()
    this.stopRebalancer?.()
    this.state = 'offline'
    // Best effort: an offline record that cannot be published expires within its lifetime.
    await this.announce().catch(() => {})
    this.server?.stop()
    this.backend?.dispose()
  }
}
