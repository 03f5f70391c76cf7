/**
 * Which experts a peer hosts when it chooses itself (`--experts auto`): the expert scheduler.
 *
 * Coverage first: each slot goes to an (layer, expert) with the fewest live hosts in the DHT
 * expert records. Among equally covered ones, the expert the router most often picks together
 * with those already chosen on this peer (same layer, co-selection rates from `affinity`), so
 * that a token's top-k experts sit on one peer and cost one call (ExFlow-style affinity); pairs
 * another peer already holds together count for nothing (replicas add new pairings). Then
 * staying in a layer already chosen (one block's weights to load), then the lowest announced
 * throughput, then the most-picked expert, then the lowest ids. Without affinity it is coverage
 * only.
 *
 * Only same-layer pairs count: the router on the block server calls each MoE layer's hosts
 * separately, so an expert of layer l and one of layer l+1 on one peer (ExFlow's inter-layer
 * affinity, CoSelectionStats.next) save no call here; they would once hosts forward a token's
 * rows to the next layer's host themselves.
 *
 * Re-checks (`proposeMove`) move only when that clearly helps the swarm — fewer uncovered
 * experts, a higher least host count, or (coverage equal) MIN_AFFINITY_GAIN more co-selected
 * pairs kept on one peer — and never drop an expert nobody else covers. An expert is only
 * dropped if an ONLINE host with a smaller peer id also holds it: of peers re-checking at the
 * same moment, the smallest-id host of each expert always keeps it, so concurrent moves cannot
 * uncover it either.
 */
import { SwarmArgumentError } from '../errors.ts'
import type { ExpertRecord } from '../records.ts'
import { MIN_AFFINITY_GAIN } from './constants.ts'
import type { Affinity } from './summary.ts'

/** layer → sorted experts */
export type Placement = Map<number, number[]>

export interface PlacementInput {
  /** Experts per MoE layer (E). */
  numExperts: number
  /** MoE layers this peer may host experts of. */
  layers: readonly number[]
  /** (layer, expert) pairs this peer hosts: what its memory allows. */
  slots: number
  /** Live expert records of `layers` (any peer; `self`'s are ignored). */
  records: readonly ExpertRecord[]
  self: string
  /** Co-selection rates per layer; absent: coverage only. */
  affinity?: Affinity
  /** Experts that must stay in the placement (re-checks: those only this peer may keep). */
  pinned?: Placement
}

const key = (l: number, e: number): string => `${l}:${e}`

/** Records that count as hosting: not withdrawn (JOINING counts, so two joiners do not pick the same). */
function live (r: ExpertRecord): boolean {
  return r.state !== 'offline'
}

/** Host count and summed throughput per (layer, expert), over others' live records. */
function coverage (records: readonly ExpertRecord[], self: string): Map<string, { hosts: number, throughput: number }> {
  const out = new Map<string, { hosts: number, throughput: number }>()
  for (const r of records) {
    if (r.peer === self || !live(r)) continue
    for (const e of new Set(r.experts)) {
      const c = out.get(key(r.layer, e)) ?? { hosts: 0, throughput: 0 }
      c.hosts++
      c.throughput += r.throughput
      out.set(key(r.layer, e), c)
    }
  }
  return out
}

function checkInput (p: PlacementInput): void {
  if (!Number.isInteger(p.numExperts) || p.numExperts < 1) throw new SwarmArgumentError(`numExperts must be a positive integer, got ${p.numExperts}`)
  if (p.layers.length === 0) throw new SwarmArgumentError('placement needs at least one MoE layer to choose from')
  if (new Set(p.layers).size !== p.layers.length || !p.layers.every(l => Number.isInteger(l) && l >= 0)) throw new SwarmArgumentError(`layers must be distinct layer indices, got ${p.layers.join(', ')}`)
  const max = p.layers.length * p.numExperts
  if (!Number.isInteger(p.slots) || p.slots < 1 || p.slots > max) throw new SwarmArgumentError(`slots must be in [1, ${max}] (${p.layers.length} layers × ${p.numExperts} experts), got ${p.slots}`)
}

/** Chooses `slots` (layer, expert) pairs for `self` (see the file comment for the order). */
export function chooseExperts (p: PlacementInput): Placement {
  checkInput(p)
  const E = p.numExperts
  const cov = coverage(p.records, p.self)
  const chosen: Placement = new Map()
  const has = (l: number, e: number): boolean => chosen.get(l)?.includes(e) === true
  const add = (l: number, e: number): void => { chosen.set(l, [...(chosen.get(l) ?? []), e]) }
  let n = 0
  for (const [l, es] of p.pinned ?? []) {
    if (!p.layers.includes(l)) throw new SwarmArgumentError(`pinned layer ${l} is not among the layers ${p.layers.join(', ')}`)
    for (const e of es) if (!has(l, e) && n < p.slots) { add(l, e); n++ }
  }
  const aff = (l: number, a: number, b: number): number => p.affinity?.get(l)?.[a * E + b] ?? 0
  // Pairs some other peer already holds together gain nothing more from being together here.
  const cohosted = new Set<string>()
  for (const r of p.records) {
    if (r.peer === p.self || !live(r)) continue
    for (const a of r.experts) for (const b of r.experts) if (a < b) cohosted.add(`${r.layer}:${a}:${b}`)
  }
  const gain = (l: number, a: number, b: number): number => cohosted.has(`${l}:${Math.min(a, b)}:${Math.max(a, b)}`) ? 0 : aff(l, a, b)
  /** Picks of e at l: its row sum (pairs with everyone), a proxy of how busy it is. */
  const popularity = (l: number, e: number): number => { let s = 0; for (let x = 0; x < E; x++) s += aff(l, e, x); return s }
  while (n < p.slots) {
    let best: { l: number, e: number, score: number[] } | undefined
    for (const l of p.layers) {
      for (let e = 0; e < E; e++) {
        if (has(l, e)) continue
        const c = cov.get(key(l, e)) ?? { hosts: 0, throughput: 0 }
        const together = (chosen.get(l) ?? []).reduce((s, x) => s + gain(l, e, x), 0)
        // Lexicographic, smaller is better.
        const score = [c.hosts, -together, chosen.has(l) ? 0 : 1, c.throughput, -popularity(l, e), l, e]
        if (best === undefined || lexLess(score, best.score)) best = { l, e, score }
      }
    }
    add(best!.l, best!.e)
    n++
  }
  for (const es of chosen.values()) es.sort((a, b) => a - b)
  return new Map([...chosen].sort((a, b) => a[0] - b[0]))
}

function lexLess (a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i]
  return false
}

/** How well a set of records serves `layers`: what a move must improve. */
export interface PlacementQuality {
  /** (layer, expert) pairs nobody hosts. */
  uncovered: number
  /** Fewest hosts of any expert. */
  minHosts: number
  /** Share of co-selections (affinity-weighted pairs) whose two experts share a host, 0..1; 0 without affinity. */
  togetherShare: number
}

export function placementQuality (records: readonly ExpertRecord[], layers: readonly number[], numExperts: number, affinity?: Affinity): PlacementQuality {
  const E = numExperts
  const cov = coverage(records, '')
  let uncovered = 0
  let minHosts = Infinity
  for (const l of layers) {
    for (let e = 0; e < E; e++) {
      const h = cov.get(key(l, e))?.hosts ?? 0
      if (h === 0) uncovered++
      minHosts = Math.min(minHosts, h)
    }
  }
  let within = 0
  let total = 0
  for (const l of layers) {
    const m = affinity?.get(l)
    if (m === undefined) continue
    const sets = records.filter(r => r.layer === l && live(r)).map(r => new Set(r.experts))
    for (let i = 0; i < E; i++) {
      for (let j = i + 1; j < E; j++) {
        total += m[i * E + j]
        if (sets.some(s => s.has(i) && s.has(j))) within += m[i * E + j]
      }
    }
  }
  return { uncovered, minHosts: minHosts === Infinity ? 0 : minHosts, togetherShare: total === 0 ? 0 : within / total }
}

/** Whether `b` is clearly better than `a` (the move threshold). */
export function clearlyBetter (b: PlacementQuality, a: PlacementQuality, minAffinityGain = MIN_AFFINITY_GAIN): boolean {
  if (b.uncovered !== a.uncovered) return b.uncovered < a.uncovered
  if (b.minHosts !== a.minHosts) return b.minHosts > a.minHosts
  return b.togetherShare - a.togetherShare >= minAffinityGain
}

export interface MoveDecision {
  move: boolean
  /** The placement to move to (when move). */
  to?: Placement
  reason: string
}

function asRecords (self: string, pl: Placement, like: { model: string, throughput: number }): ExpertRecord[] {
  return [...pl].map(([layer, experts]) => ({ peer: self, model: like.model, layer, experts, throughput: like.throughput, version: 0, expiresAt: Infinity, state: 'online' as const }))
}

/**
 * One re-check: given the current placement of `self` and everyone's live records, whether to
 * move and where. `minAffinityGain` defaults to MIN_AFFINITY_GAIN.
 */
export function proposeMove (p: Omit<PlacementInput, 'pinned'> & { current: Placement, model: string, throughput: number, minAffinityGain?: number }): MoveDecision {
  checkInput(p)
  const others = p.records.filter(r => r.peer !== p.self && live(r))
  // Experts only this peer may keep: no ONLINE host with a smaller id holds them too.
  const pinned: Placement = new Map()
  for (const [l, es] of p.current) {
    const keep = es.filter(e => !others.some(r => r.layer === l && r.state !== 'joining' && r.peer < p.self && r.experts.includes(e)))
    if (keep.length > 0) pinned.set(l, keep)
  }
  const to = chooseExperts({ ...p, records: others, pinned })
  const same = to.size === p.current.size && [...to].every(([l, es]) => p.current.get(l)?.join(',') === es.join(','))
  if (same) return { move: false, reason: 'placement unchanged' }
  const layers = [...new Set([...p.layers, ...p.current.keys()])]
  const before = placementQuality([...others, ...asRecords(p.self, p.current, p)], layers, p.numExperts, p.affinity)
  const after = placementQuality([...others, ...asRecords(p.self, to, p)], layers, p.numExperts, p.affinity)
  const fmt = (q: PlacementQuality): string => `${q.uncovered} uncovered, min ${q.minHosts} hosts, ${(q.togetherShare * 100).toFixed(0)}% pairs together`
  if (!clearlyBetter(after, before, p.minAffinityGain)) return { move: false, reason: `not clearly better (${fmt(before)} → ${fmt(after)})` }
  return { move: true, to, reason: `${fmt(before)} → ${fmt(after)}` }
}

/** "1:0,3;2:1" — the `--experts` notation, for logs. */
export function formatPlacement (pl: ReadonlyMap<number, Iterable<number>>): string {
  return [...pl].map(([l, es]) => `${l}:${[...es].join(',')}`).join(';')
}
