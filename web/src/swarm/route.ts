/**
 * Min-latency route planning (Petals' inference routing): the cheapest chain of servers covering
 * blocks [from, to). A hop to a server costs its RTT plus a framing overhead; each block on it costs
 * 1 / throughput. Servers that are not ONLINE, are banned, or lack cache room for the session are
 * skipped. Shortest path over the DAG of block boundaries, one edge per (server, sub-span).
 */
import { DEFAULT_RTT_MS, HOP_OVERHEAD_MS } from './constants.ts'
import { NoRouteError, SwarmArgumentError } from './errors.ts'
import type { BlockRecord } from './records.ts'

/** One hop of a route: blocks [start, end) on `peer`. */
export interface RouteSegment {
  peer: string
  start: number
  end: number
}

export interface PlanOptions {
  /** Measured round-trip times, ms; unmeasured peers cost DEFAULT_RTT_MS. */
  rttMs?: ReadonlyMap<string, number>
  /** Peers to avoid (banned after failures). */
  exclude?: ReadonlySet<string> | ((peer: string) => boolean)
  /** Cache positions the session needs on each server, in tokens. @default 0 */
  cacheTokens?: number
}

/** Estimated per-token latency of a route, in ms (same cost model as the planner). */
export function routeCostMs (route: readonly RouteSegment[], records: readonly BlockRecord[], rttMs?: ReadonlyMap<string, number>): number {
  let cost = 0
  for (const seg of route) {
    const r = records.find(x => x.peer === seg.peer)
    if (r === undefined) throw new SwarmArgumentError(`route names ${seg.peer}, which has no record`)
    cost += hopCost(r, seg.end - seg.start, rttMs)
  }
  return cost
}

function hopCost (r: BlockRecord, blocks: number, rttMs?: ReadonlyMap<string, number>): number {
  const rtt = rttMs?.get(r.peer) ?? DEFAULT_RTT_MS
  return rtt + HOP_OVERHEAD_MS + blocks * 1000 / Math.max(r.throughput, 1e-9)
}

/** Cheapest servers for blocks [from, to); throws NoRouteError naming the first uncoverable block. */
export function planRoute (records: readonly BlockRecord[], from: number, to: number, opts: PlanOptions = {}): RouteSegment[] {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to <= from) throw new SwarmArgumentError(`bad block range [${from}, ${to})`)
  const excluded = opts.exclude
  const isExcluded = (p: string): boolean => excluded === undefined ? false : typeof excluded === 'function' ? excluded(p) : excluded.has(p)
  const need = opts.cacheTokens ?? 0
  const usable = records
    .filter(r => r.state === 'online' && r.cacheTokensLeft >= need && !isExcluded(r.peer) && r.start < to && r.end > from)
    .sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)

  const n = to - from
  const dist = new Float64Array(n + 1).fill(Infinity)
  const prev: Array<{ at: number, peer: string } | undefined> = new Array(n + 1)
  dist[0] = 0
  // Boundaries are visited in order: every edge goes forward, so this is Dijkstra on a DAG.
  for (let i = 0; i < n; i++) {
    if (dist[i] === Infinity) continue
    const block = from + i
    for (const r of usable) {
      if (r.start > block || r.end <= block) continue
      const last = Math.min(r.end, to)
      for (let end = block + 1; end <= last; end++) {
        const c = dist[i] + hopCost(r, end - block, opts.rttMs)
        const j = end - from
        if (c < dist[j]) {
          dist[j] = c
          prev[j] = { at: i, peer: r.peer }
        }
      }
    }
  }
  if (dist[n] === Infinity) {
    let reach = 0
    for (let i = 0; i <= n; i++) if (dist[i] < Infinity) reach = i
    throw new NoRouteError(`no live, unbanned server with ${need} cache tokens free holds block ${from + reach} (route [${from}, ${to}))`)
  }
  const route: RouteSegment[] = []
  for (let j = n; j > 0;) {
    const p = prev[j]!
    route.push({ peer: p.peer, start: from + p.at, end: from + j })
    j = p.at
  }
  return route.reverse()
}
