/**
 * Inference routing under churn with the real planner (swarm/route.ts planRoute, routeCostMs):
 * N servers hold seeded block spans, throughputs and link latencies; a client plans from the
 * directory it read one refresh ago (servers that left since are still listed, joiners are not)
 * and, like the real client, bans a server that fails and re-plans. Each request's route cost is
 * compared with the best route planned from global knowledge of the live servers at that moment.
 */
import { NoRouteError } from '../swarm/errors.ts'
import type { BlockRecord } from '../swarm/records.ts'
import { planRoute, routeCostMs, type RouteSegment } from '../swarm/route.ts'
import { SimConfigError } from './errors.ts'
import { NetModel } from './model.ts'

export interface RoutingSimInit {
  seed?: number
  /** Live servers held throughout. */
  servers: number
  /** Blocks of the model. @default 32 */
  numBlocks?: number
  /** Fraction of servers replaced between the client's directory read and its request. @default 0.1 */
  churnPerRequest?: number
}

export interface RoutingResult {
  requests: number
  /** Requests that got a complete route over live servers (after failovers). */
  succeeded: number
  /** Servers found gone mid-request (each one a ban + re-plan). */
  failovers: number
  /** Per request: cost of the route used / cost of the global-knowledge best route. */
  ratios: number[]
}

export class RoutingSim {
  private readonly model: NetModel
  private readonly numBlocks: number
  private readonly churn: number
  private live = new Map<string, BlockRecord>()
  private readonly rtt = new Map<string, number>()
  private next = 0

  constructor (init: RoutingSimInit) {
    if (!Number.isInteger(init.servers) || init.servers < 1) throw new SimConfigError(`servers must be a positive integer, got ${init.servers}`)
    this.model = new NetModel({ seed: init.seed ?? 1 })
    this.numBlocks = init.numBlocks ?? 32
    this.churn = init.churnPerRequest ?? 0.1
    for (let i = 0; i < init.servers; i++) this.addServer()
  }

  /** A server with a seeded span (1–8 blocks), throughput (log-normal around 20 blocks/s) and RTT. */
  private addServer (): void {
    const peer = `server-${this.next++}`
    const len = 1 + this.model.rng.int(8)
    const start = this.model.rng.int(this.numBlocks - len + 1)
    const throughput = 20 * Math.exp(0.6 * this.model.rng.normal())
    this.live.set(peer, { peer, model: 'sim', start, end: start + len, state: 'online', throughput, cacheTokensLeft: 4096, version: 1, expiresAt: Number.MAX_SAFE_INTEGER })
    this.rtt.set(peer, 2 * this.model.latencyMs())
  }

  private replace (fraction: number): void {
    const ids = [...this.live.keys()]
    for (const i of this.model.pick(ids.length, Math.round(ids.length * fraction))) this.live.delete(ids[i])
    while (this.live.size < ids.length) this.addServer()
  }

  /** `n` requests, each planned from a directory one churn step old. */
  run (n: number): RoutingResult {
    const out: RoutingResult = { requests: n, succeeded: 0, failovers: 0, ratios: [] }
    for (let q = 0; q < n; q++) {
      const directory = [...this.live.values()]
      this.replace(this.churn)
      const liveNow = [...this.live.values()]
      let best: RouteSegment[]
      try {
        best = planRoute(liveNow, 0, this.numBlocks, { rttMs: this.rtt })
      } catch (e) {
        if (e instanceof NoRouteError) continue // nobody can serve it: not a routing miss
        throw e
      }
      const banned = new Set<string>()
      let used: RouteSegment[] | undefined
      // Each failed hop bans its server and re-plans from the same (stale) directory plus what was learnt.
      for (let attempt = 0; attempt < 16 && used === undefined; attempt++) {
        let route: RouteSegment[]
        try {
          route = planRoute(directory, 0, this.numBlocks, { rttMs: this.rtt, exclude: banned })
        } catch (e) {
          if (!(e instanceof NoRouteError)) throw e
          // The stale directory cannot cover it: a fresh read (what the client does after a NoRoute).
          route = planRoute(liveNow, 0, this.numBlocks, { rttMs: this.rtt, exclude: banned })
        }
        const gone = route.find(s => !this.live.has(s.peer))
        if (gone === undefined) used = route
        else {
          banned.add(gone.peer)
          out.failovers++
        }
      }
      if (used === undefined) continue
      out.succeeded++
      out.ratios.push(routeCostMs(used, liveNow, this.rtt) / routeCostMs(best, liveNow, this.rtt))
    }
    return out
  }
}
