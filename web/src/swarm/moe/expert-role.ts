/**
 * An expert host's life in the swarm (ServerRole's counterpart for MoE experts): take the
 * experts given (`--experts 1:0,1`) or choose them (placement.ts), announce JOINING, load their
 * layers, serve them over the `expert` protocol and announce ONLINE, refresh the records before
 * they expire, re-check the placement now and then (move only when clearly better, never leaving
 * an expert uncovered), and announce OFFLINE on leave.
 *
 * A move is make-before-break: the new experts are loaded and served before the records change,
 * and the dropped ones are still answered for DROP_GRACE_MS (callers may hold the old records).
 */
import { RECORD_REFRESH_MS, RECORD_TTL_MS } from '../constants.ts'
import { SwarmArgumentError } from '../errors.ts'
import type { ExpertRecord, ServerState, SwarmDirectory } from '../records.ts'
import type { RpcTransport } from '../transport/index.ts'
import { DROP_GRACE_MS, RECHECK_JITTER } from './constants.ts'
import { ExpertHost, type ExpertRunner } from './expert-host.ts'
import { chooseExperts, formatPlacement, proposeMove, type MoveDecision, type Placement } from './placement.ts'
import type { Affinity } from './summary.ts'
import { every, realClock, type Clock, type TimerHandle } from '../../util/clock.ts'

/** One MoE layer's experts, loaded: runs any of them on its rows. */
export interface LoadedExpertLayer {
  /** Each item's rows (count, C) through expert `expert` → (count, C). */
  run: (items: ReadonlyArray<{ expert: number, rows: Float32Array, count: number }>) => Promise<Float32Array[]>
  dispose: () => void
}

export interface ExpertRoleOptions {
  transport: RpcTransport
  directory: SwarmDirectory
  model: string
  /** C */
  hiddenSize: number
  /** Experts per MoE layer (E). */
  numExperts: number
  /** MoE layers this peer may host experts of (choosing) — all the model's MoE layers, or fewer. */
  layers: readonly number[]
  /** Host exactly these (layer → experts); otherwise choose `slots` of them and re-check. */
  hosted?: ReadonlyMap<number, ReadonlySet<number>>
  /** (layer, expert) pairs to host when choosing. @default numExperts (one layer's worth) */
  slots?: number
  /** Loads one layer's experts (the weights reader loads a layer's experts together). */
  loadLayer: (layer: number) => Promise<LoadedExpertLayer>
  /** Current co-selection rates (e.g. from the swarm's published summaries); undefined = coverage only. */
  affinity?: () => Promise<Affinity | undefined>
  /** Rows per second through one expert, announced. @default 1 */
  throughput?: number
  /** @default RECORD_TTL_MS */
  ttlMs?: number
  /** @default RECORD_REFRESH_MS */
  refreshMs?: number
  /** Re-check the placement this often, ms (± RECHECK_JITTER); 0 = never. Explicit placements never move. @default RECORD_REFRESH_MS */
  recheckMs?: number
  /** @default DROP_GRACE_MS */
  dropGraceMs?: number
  now?: () => number
  /** Times the record refresh, the placement re-check and the drop grace (tests: a ManualClock). @default realClock */
  clock?: Clock
  /** Jitter source in [0, 1). @default Math.random */
  random?: () => number
  log?: (line: string) => void
  /** Called with the records of each announcement (e.g. to mirror a summary into the swarm CRDT). */
  onAnnounce?: (records: ExpertRecord[]) => void
}

export class ExpertRole implements ExpertRunner {
  state: ServerState = 'offline'
  /** What this peer announces: layer → experts. */
  placement: Placement = new Map()
  /** Rows per second through one expert, announced; callers may update it after measuring. */
  throughput: number
  /** Re-check decisions that moved (for the page and tests). */
  readonly moves: MoveDecision[] = []
  private accepting = new Map<number, Set<number>>()
  private readonly loaded = new Map<number, LoadedExpertLayer>()
  private readonly host: ExpertHost
  private version = 0
  /** Stops the periodic re-announce (set while online). */
  private stopRefresher?: () => void
  private rechecker?: TimerHandle
  private graceTimer?: TimerHandle
  private readonly now: () => number
  private readonly clock: Clock
  private readonly log: (line: string) => void

  constructor (private readonly opts: ExpertRoleOptions) {
    this.now = opts.now ?? Date.now
    this.clock = opts.clock ?? realClock
    this.log = opts.log ?? (() => {})
    this.throughput = opts.throughput ?? 1
    this.host = new ExpertHost({ transport: opts.transport, runner: this, log: this.log })
  }

  // ---- ExpertRunner: what the `expert` protocol handler calls ----
  get model (): string { return this.opts.model }
  get hiddenSize (): number { return this.opts.hiddenSize }
  get self (): string { return this.opts.transport.self }
  /** Experts answered now (the announced ones, plus dropped ones during their grace). */
  get hosted (): ReadonlyMap<number, ReadonlySet<number>> { return this.accepting }

  async run (layer: number, items: ReadonlyArray<{ expert: number, rows: Float32Array, count: number }>): Promise<Float32Array[]> {
    const l = this.loaded.get(layer)
    if (l === undefined) throw new SwarmArgumentError(`layer ${layer} is not loaded`)
    return await l.run(items)
  }

  get stats (): ExpertHost['stats'] { return this.host.stats }

  /** Chooses (unless given), loads and starts hosting. */
  async start (): Promise<void> {
    const o = this.opts
    let pl: Placement
    if (o.hosted !== undefined) {
      pl = new Map([...o.hosted].map(([l, es]) => [l, [...es].sort((a, b) => a - b)]))
      for (const [l, es] of pl) {
        if (es.length === 0 || es.some(e => !Number.isInteger(e) || e < 0 || e >= o.numExperts)) throw new SwarmArgumentError(`layer ${l}: experts ${es.join(', ')} are not in [0, ${o.numExperts})`)
      }
    } else {
      pl = chooseExperts({ numExperts: o.numExperts, layers: o.layers, slots: o.slots ?? o.numExperts, records: await this.records(), self: this.self, affinity: await this.affinityNow() })
    }
    this.placement = pl
    this.state = 'joining'
    await this.announce()
    try {
      await this.loadLayers([...pl.keys()])
    } catch (e) {
      // Withdraw the JOINING claim at once: others would avoid these experts until it expired.
      this.state = 'offline'
      // Best effort: the error below is what the caller learns; an unpublished withdrawal expires.
      await this.announce().catch(() => {})
      for (const l of this.loaded.values()) l.dispose()
      this.loaded.clear()
      throw e
    }
    this.accepting = toSets(pl)
    this.host.start()
    this.state = 'online'
    await this.announce()
    this.log(`hosting experts ${formatPlacement(pl)} of ${o.model}`)
    this.stopRefresher = every(this.clock, o.refreshMs ?? RECORD_REFRESH_MS, () => { void this.announce().catch(e => this.log(`expert announce failed: ${(e as Error).message}`)) })
    if (o.hosted === undefined && (o.recheckMs ?? RECORD_REFRESH_MS) > 0) this.scheduleRecheck()
  }

  private scheduleRecheck (): void {
    const period = this.opts.recheckMs ?? RECORD_REFRESH_MS
    const jitter = 1 + RECHECK_JITTER * (2 * (this.opts.random ?? Math.random)() - 1)
    this.rechecker = this.clock.setTimeout(() => {
      void this.recheckOnce().catch(e => this.log(`expert placement re-check failed: ${(e as Error).message}`))
        .finally(() => { if (this.state === 'online') this.scheduleRecheck() })
    }, period * jitter)
  }

  private async records (): Promise<ExpertRecord[]> {
    const per = await Promise.all(this.opts.layers.map(async l => await this.opts.directory.expertRecords(this.opts.model, l)))
    return per.flat().filter(r => r.peer !== this.self)
  }

  /** Co-selection rates if the source has them; a failing source means coverage only, not a failed placement. */
  private async affinityNow (): Promise<Affinity | undefined> {
    try {
      return await this.opts.affinity?.()
    } catch (e) {
      this.log(`co-selection rates unavailable, placing by coverage only: ${(e as Error).message}`)
      return undefined
    }
  }

  private async loadLayers (layers: number[]): Promise<void> {
    for (const l of layers) if (!this.loaded.has(l)) this.loaded.set(l, await this.opts.loadLayer(l))
  }

  /** The records as they would be announced now, one per layer. */
  private recordsNow (): ExpertRecord[] {
    return [...this.placement].map(([layer, experts]) => ({
      peer: this.self,
      model: this.opts.model,
      layer,
      experts: [...experts],
      throughput: this.throughput,
      version: ++this.version,
      expiresAt: this.now() + (this.opts.ttlMs ?? RECORD_TTL_MS),
      state: this.state
    }))
  }

  async announce (): Promise<void> {
    const recs = this.recordsNow()
    for (const r of recs) await this.opts.directory.announceExperts(r)
    this.opts.onAnnounce?.(recs)
  }

  /** Withdraws the records of layers this peer no longer hosts experts of. */
  private async withdrawLayers (layers: Array<[number, number[]]>): Promise<void> {
    for (const [layer, experts] of layers) {
      await this.opts.directory.announceExperts({ peer: this.self, model: this.opts.model, layer, experts, throughput: this.throughput, version: ++this.version, expiresAt: this.now() + (this.opts.ttlMs ?? RECORD_TTL_MS), state: 'offline' })
    }
  }

  /** One placement re-check; moves when proposeMove says so. Returns whether it moved. */
  async recheckOnce (): Promise<boolean> {
    const o = this.opts
    if (o.hosted !== undefined || this.state !== 'online') return false
    const d = proposeMove({ numExperts: o.numExperts, layers: o.layers, slots: o.slots ?? o.numExperts, records: await this.records(), self: this.self, affinity: await this.affinityNow(), current: this.placement, model: o.model, throughput: this.throughput })
    if (!d.move || d.to === undefined) return false
    this.moves.push(d)
    const from = this.placement
    const to = d.to
    this.log(`moving experts ${formatPlacement(from)} → ${formatPlacement(to)} (${d.reason})`)
    await this.loadLayers([...to.keys()])
    // Serve both until the grace ends; announce only the new placement.
    this.accepting = toSets(new Map([...from, ...to].map(([l]) => [l, [...new Set([...(from.get(l) ?? []), ...(to.get(l) ?? [])])]])))
    this.placement = to
    await this.announce()
    await this.withdrawLayers([...from].filter(([l]) => !to.has(l)))
    this.clock.clearTimeout(this.graceTimer)
    this.graceTimer = this.clock.setTimeout(() => { this.endGrace() }, o.dropGraceMs ?? DROP_GRACE_MS)
    return true
  }

  /** Stops answering dropped experts and frees layers nobody needs any more. */
  private endGrace (): void {
    this.graceTimer = undefined
    this.accepting = toSets(this.placement)
    for (const [l, layer] of this.loaded) {
      if (!this.placement.has(l)) {
        layer.dispose()
        this.loaded.delete(l)
      }
    }
  }

  /** Announces OFFLINE and stops hosting. */
  async stop (): Promise<void> {
    this.stopRefresher?.()
    this.stopRefresher = undefined
    this.clock.clearTimeout(this.rechecker)
    this.clock.clearTimeout(this.graceTimer)
    this.state = 'offline'
    await this.announce().catch(e => this.log(`expert withdrawal failed: ${(e as Error).message}`))
    this.host.stop()
    this.accepting = new Map()
    for (const l of this.loaded.values()) l.dispose()
    this.loaded.clear()
  }
}

function toSets (pl: Placement): Map<number, Set<number>> {
  return new Map([...pl].map(([l, es]) => [l, new Set(es)]))
}
