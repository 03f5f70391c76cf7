/**
 * The caller's side of a distributed MoE layer (DMoE): the router runs here, and the rows routed
 * to each expert go, in one batched `expert` call per hosting peer, to whoever hosts that expert.
 * A host that fails or times out is banned and its experts re-requested from another host.
 *
 * Works on the layout of web/src/model/moe.ts: xs (N, C) = token rows sorted by expert, with
 * offsets (E + 1) delimiting expert e's rows [offsets[e], offsets[e+1]); returns ys (N, C) in the
 * same layout, which MoeLayer.combine weights and sums — so the result equals the local layer's.
 */
import { BanList } from '../ban-list.ts'
import { EXPERT_PROTOCOL, EXPERT_TIMEOUT_MS } from '../constants.ts'
import { errorFromWire, ExpertReplyError, MalformedMessageError, NoExpertHostError, PeerProtocolError, SwarmArgumentError, TensorShapeError } from '../errors.ts'
import type { ExpertRecord, SwarmDirectory } from '../records.ts'
import type { RpcTransport } from '../transport/index.ts'
import { readExpert, writeExpert, type ExpertMsg } from '../wire/expert.ts'
import type { ExpertRunner } from './expert-host.ts'

export interface RemoteExpertsOptions {
  transport: RpcTransport
  directory: SwarmDirectory
  model: string
  /** C */
  hiddenSize: number
  numExperts: number
  /** Experts this peer runs itself (no network), if any. */
  local?: ExpertRunner
  /** Per-call timeout, ms. @default EXPERT_TIMEOUT_MS */
  timeoutMs?: number
  /** Shared ban list. @default a fresh one */
  bans?: BanList
  /** Host failures tolerated per layer call before giving up. @default 8 */
  maxRetries?: number
  log?: (line: string) => void
}

/** Hosts of each expert of a layer: expert → peers. */
export type ExpertHosts = Map<number, string[]>

/** expert → hosts that serve it now (ONLINE records; JOINING hosts have not loaded, OFFLINE ones left). */
export function hostsFromRecords (records: readonly ExpertRecord[]): ExpertHosts {
  const hosts: ExpertHosts = new Map()
  for (const r of records.filter(r => (r.state ?? 'online') === 'online').sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)) {
    for (const e of r.experts) {
      const list = hosts.get(e) ?? []
      list.push(r.peer)
      hosts.set(e, list)
    }
  }
  return hosts
}

/**
 * Assign each needed expert to one host: greedily the host covering the most still-unassigned
 * experts (fewest calls), `self` first when it hosts them (no network), ties by peer id.
 */
export function assignHosts (needed: readonly number[], hosts: ExpertHosts, usable: (peer: string) => boolean, self?: string): Map<string, number[]> {
  const left = new Set(needed)
  const plan = new Map<string, number[]>()
  while (left.size > 0) {
    const cover = new Map<string, number[]>()
    for (const e of left) {
      for (const p of hosts.get(e) ?? []) {
        if (!usable(p)) continue
        const l = cover.get(p) ?? []
        l.push(e)
        cover.set(p, l)
      }
    }
    if (cover.size === 0) throw new NoExpertHostError(`no live, unbanned host for experts ${[...left].join(', ')}`)
    let best: string | undefined
    for (const [p, es] of cover) {
      const b = best === undefined ? undefined : cover.get(best)!
      if (best === undefined || (p === self && best !== self) || (best !== self && (es.length > b!.length || (es.length === b!.length && p < best)))) best = p
    }
    const es = cover.get(best!)!
    plan.set(best!, es.sort((a, b) => a - b))
    for (const e of es) left.delete(e)
  }
  return plan
}

export class RemoteExperts {
  readonly bans: BanList
  readonly stats = { calls: 0, retries: 0, rowsSent: 0 }
  private readonly timeoutMs: number
  private readonly maxRetries: number
  private readonly log: (line: string) => void

  constructor (private readonly opts: RemoteExpertsOptions) {
    this.bans = opts.bans ?? new BanList()
    this.timeoutMs = opts.timeoutMs ?? EXPERT_TIMEOUT_MS
    this.maxRetries = opts.maxRetries ?? 8
    this.log = opts.log ?? (() => {})
  }

  /** xs (N, C) sorted by expert with offsets (E + 1) → ys (N, C), same layout. */
  async run (layer: number, xs: Float32Array, offsets: ArrayLike<number>): Promise<Float32Array> {
    const { hiddenSize: C, numExperts: E } = this.opts
    if (offsets.length !== E + 1) throw new SwarmArgumentError(`offsets must have E + 1 = ${E + 1} entries, got ${offsets.length}`)
    const N = offsets[E]
    if (xs.length !== N * C) throw new SwarmArgumentError(`xs must be (N=${N}, C=${C}), got ${xs.length} values`)
    const ys = new Float32Array(N * C)
    const needed = Array.from({ length: E }, (_, e) => e).filter(e => offsets[e + 1] > offsets[e])
    const rowsOf = (e: number): Float32Array => xs.subarray(offsets[e] * C, offsets[e + 1] * C)
    const self = this.opts.transport.self
    const localHosted = this.opts.local?.hosted.get(layer)
    const hosts = hostsFromRecords(await this.opts.directory.expertRecords(this.opts.model, layer))
    if (localHosted !== undefined) {
      for (const e of localHosted) hosts.set(e, [self, ...(hosts.get(e) ?? []).filter(p => p !== self)])
    }
    let todo = needed
    for (let failures = 0; todo.length > 0;) {
      const plan = assignHosts(todo, hosts, p => !this.bans.isBanned(p), self)
      const failed: number[] = []
      await Promise.all([...plan].map(async ([peer, experts]) => {
        try {
          const outs = await this.call(peer, layer, experts.map(e => ({ expert: e, rows: rowsOf(e), count: offsets[e + 1] - offsets[e] })))
          experts.forEach((e, i) => ys.set(outs[i], offsets[e] * C))
          this.bans.clear(peer)
        } catch (e) {
          if (e instanceof TensorShapeError || e instanceof MalformedMessageError) throw e
          const ms = this.bans.ban(peer)
          this.log(`expert: layer ${layer} host ${peer} failed (${(e as Error).message}); banned for ${ms} ms, re-requesting experts ${experts.join(', ')}`)
          failed.push(...experts)
        }
      }))
      if (failed.length > 0 && ++failures > this.maxRetries) throw new NoExpertHostError(`layer ${layer}: experts ${failed.join(', ')} failed on ${failures} hosts`)
      this.stats.retries += failed.length > 0 ? 1 : 0
      todo = failed
    }
    return ys
  }

  private async call (peer: string, layer: number, items: Array<{ expert: number, rows: Float32Array, count: number }>): Promise<Float32Array[]> {
    const C = this.opts.hiddenSize
    if (peer === this.opts.transport.self && this.opts.local !== undefined) return await this.opts.local.run(layer, items)
    this.stats.calls++
    for (const it of items) this.stats.rowsSent += it.count
    const body = writeExpert({ type: 'call', model: this.opts.model, layer, items: items.map(it => ({ expert: it.expert, rows: { shape: [it.count, C], data: it.rows } })) })
    const bytes = await this.opts.transport.request(peer, EXPERT_PROTOCOL, body, { timeoutMs: this.timeoutMs })
    let reply: ExpertMsg
    try {
      reply = readExpert(bytes)
    } catch (e) {
      throw new PeerProtocolError(peer, (e as Error).message)
    }
    if (reply.type === 'error') throw errorFromWire(reply.code, reply.message)
    if (reply.type !== 'result') throw new PeerProtocolError(peer, `expected result, got ${reply.type}`)
    if (reply.items.length !== items.length) throw new ExpertReplyError(`host ${peer} returned ${reply.items.length} experts for ${items.length}`)
    return reply.items.map((r, i) => {
      if (r.expert !== items[i].expert || r.rows.shape[0] !== items[i].count || r.rows.shape[1] !== C) {
        throw new ExpertReplyError(`host ${peer} answered expert ${r.expert} [${r.rows.shape.join(', ')}] for expert ${items[i].expert} (${items[i].count}, ${C})`)
      }
      return r.rows.data
    })
  }
}
