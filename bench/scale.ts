/**
 * `npm run bench:scale` — the scale simulator (web/src/sim) on this machine:
 *
 * 1. DHT: N real libp2p nodes (the swarm's kad-dht over the sim's pipelined in-process transport,
 *    seeded latency) at each
 *    --dht-n; `--lookups` provide+find pairs between random live nodes, a 10 % churn round
 *    (stop + join) between each batch of 5 (a round stands for a minute: 10 %/min churn).
 *    dht_success = found / lookups, dht_hops_p95 over the found ones, with ⌈log₂ N⌉ beside it;
 *    --dht-runs seeds per N, the median of them reported (every run in scale.meta.json). An N
 *    measured replaces only its own figures: other Ns keep theirs.
 * 2. Swarm doc: at each --crdt-n live peers, 15 rounds of 60 s virtual time with 10 % churn per
 *    round through the real SwarmDoc; bytes of the hub's full state per live peer at the end,
 *    and the join sync (a fresh doc merging that state through applyRemote): bytes and ms.
 *    A long history (--crdt-history-n, --crdt-history-rounds rounds of 10 % churn) is run twice,
 *    with the relay's doc generations (net/crdt/generation.ts, DEFAULT_ROTATION_POLICY) and
 *    without: bytes per live peer and join bytes at the end (`…_after_history` keys).
 * 3. Routing: --route-servers real BlockServers (a seeded 32-layer tiny model on the CPU backend)
 *    and the real InferenceClient over the seeded MemoryNetwork in virtual time
 *    (web/src/sim/inference-routing.ts): --route-requests greedy completions of --route-tokens
 *    tokens, each planned from a directory one 10 % churn round stale (its leavers killed, its
 *    joiners unlisted), servers leaving at --route-churn-min per simulated minute while it runs
 *    (killed mid-completion, replaced by unlisted joiners); route_success = completions whose tokens equal
 *    the local reference, route_ratio_p50/p95 = decode steps' simulated time ÷ the global-knowledge
 *    best route's; --route-runs seeds (seed, seed + 1, …), the median reported. The planner alone
 *    (routing.ts, same servers and churn) gives the route_plan_* keys.
 *
 * 3b. Training under churn: --train-workers real DiLoCo workers and their all-reduce over the seeded
 *    in-memory network (web/src/sim/train-churn.ts), --train-syncs syncs, --train-churn of them
 *    leaving after each and as many joining from a fetched state: train_churn_syncs_identical (the
 *    fraction of syncs after which every live replica held the same θ_global) and the detail in meta.
 * 4. A tab's day of churn against the real ConnectionBudget (8 links, 10 %/min and 2 %/min; paced
 *    budget vs the cap-only policy; exponential and heavy-tailed peer lifetimes).
 * 5. Relay failover (bench/scale-relays.ts): 3 relay processes, --failover-peers Node peers, the
 *    relay most of them reserved on SIGKILLed (then restarted), --failover-rounds times:
 *    relay_failover_s (the median round's slowest peer) and CRDT entries lost.
 * 6. Relay capacity (bench/scale-relays.ts): light peers against one relay process in
 *    --capacity-steps until joins fail or their p95 passes 10 s: relay_peers_max, bytes per peer.
 *
 * Flags: --seed 1 --dht-n 16,64 --dht-runs 3 --dht-batch 32 --dht-max-connections 64 --dht-timeout-s 0 --dht-encrypter plaintext --dht-transport latency --dht-uplink-kbs 0 --lookups 20 --crdt-n 100,500,1000
 *        --crdt-history-n 100 --crdt-history-rounds 100
 *        --route-servers 1000 --route-requests 200 --route-tokens 12 --route-churn-min 0.1 --route-runs 3 --failover-peers 30 --failover-rounds 3
 *        --failover-steady-s 30 (two windows of it after the set-up) --failover-cpu-prof DIR (relays' and peer processes' V8 profiles)
 *        --capacity-steps 50,100,200,400 --train-workers 64 --train-syncs 6 --train-churn 0.1
 *        (0 / '' skips a section: it keeps its earlier figures)
 * Writes bench/results/scale.json and scale.meta.json (machine, load before/after, per-N detail).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { CrdtChurnSim } from '../web/src/sim/crdt-churn.ts'
import { TrainChurnSim } from '../web/src/sim/train-churn.ts'
import { brownCorpus } from '../web/src/model/data.ts'
import { DhtSwarm, type SimPeer } from '../web/src/sim/dht-swarm.ts'
import { NetModel, percentile } from '../web/src/sim/model.ts'
import { RoutingSim } from '../web/src/sim/routing.ts'
import { InferenceRoutingSim } from '../web/src/sim/inference-routing.ts'
import { relayCapacity, relayFailover } from './scale-relays.ts'
import { simulateTabDay } from '../web/src/sim/tab-connections.ts'
import { withVirtualTime } from '../web/src/sim/virtual-time.ts'

function arg (name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : dflt
}
const list = (s: string): number[] => s.split(',').filter(x => x !== '').map(Number)

const seed = Number(arg('seed', '1'))
const load = (): number[] => os.loadavg().map(x => Math.round(x * 100) / 100)
const loadBefore = load()
// The real Date, captured before any virtual-time run replaces the global: log lines carry wall time.
const RealDate = Date
const log = (l: string): void => { console.log(`[${new RealDate().toISOString().slice(11, 19)} load ${load()[0]}] ${l}`) }

/** --dht-timeout-s: one provide's and one find's budget (0: SwarmDht's 10 s and 30 s, as the swarm runs). */
const timeoutS = Number(arg('dht-timeout-s', '0'))
/** --dht-encrypter: the sim nodes' connection encrypter (plaintext: the sim's default; noise: as the swarm runs). */
const encrypterArg = arg('dht-encrypter', 'plaintext')
if (encrypterArg !== 'plaintext' && encrypterArg !== 'noise') throw new Error(`--dht-encrypter ${encrypterArg}: plaintext or noise`)
/**
 * --dht-max-connections: most connections a sim node holds (DhtSwarm `maxConnections`). Fewer
 * connections cost less CPU and memory per node (300 nodes: 64 → 24 halved start-up CPU and
 * RSS), and kad-dht dials on demand; BENCHMARKS.md records which a figure used.
 */
const maxConnections = Number(arg('dht-max-connections', '64'))
if (!Number.isInteger(maxConnections) || maxConnections < 4) throw new Error(`--dht-max-connections ${maxConnections}: an integer ≥ 4`)
const encrypter: 'plaintext' | 'noise' = encrypterArg
/** --dht-transport: the sim's in-process transport (latency: pipelined one-way delay, the default since session 11; memory: @libp2p/memory, to compare). */
const transportArg = arg('dht-transport', 'latency')
if (transportArg !== 'latency' && transportArg !== 'memory') throw new Error(`--dht-transport ${transportArg}: latency or memory`)
const transport: 'latency' | 'memory' = transportArg
/** --dht-uplink-kbs: every sim node's uplink rate in kB/s (latency transport; 0: no limit, the figures' setting — kad messages are small). */
const uplinkKbs = Number(arg('dht-uplink-kbs', '0'))
if (!(uplinkKbs >= 0)) throw new Error(`--dht-uplink-kbs ${uplinkKbs}: a rate ≥ 0 (0: no limit)`)
interface DhtRow { n: number, seed: number, transport: string, uplink_kbs: number, max_connections: number, batch: number, timeout_s: number, encrypter: string, start_virtual_s: number, start_wall_s: number, wall_s: number, virtual_s: number, timer_events: number, rss_mb_per_node: number, routing_table_mean: number, routing_table_min: number, connected_groups: number, lookups: number, churn_rounds: number, provide_failed: number, found: number, dht_success: number, dht_hops_p95: number, log2n: number, lookup_ms_p50: number, lookup_ms_p95: number, load_1m_before: number, load_1m: number }
/** Wall-clock seconds (process.hrtime is left real on virtual time). */
const wallS = (): number => Number(process.hrtime.bigint() / 1_000_000n) / 1000
/** Lookups per churn round; a round is one virtual minute, so 10 % per round is the issue's 10 %/min. */
const LOOKUPS_PER_ROUND = 5
const ROUND_MS = 60_000
async function dhtAt (n: number, lookups: number, runSeed: number): Promise<DhtRow> {
  const loadBefore1m = load()[0]
  const rss0 = process.memoryUsage().rss
  const w0 = wallS()
  // The whole run on virtual time (web/src/sim/virtual-time.ts): latencies, timeouts and the
  // churn minute are network time; the CPU N nodes need on this machine costs none of it.
  return await withVirtualTime(async vt => {
    const model = new NetModel({ seed: runSeed, minLatencyMs: 2, medianLatencyMs: 10 })
    const s = await DhtSwarm.create(n, { model, startConcurrency: Number(arg('dht-batch', '32')), maxConnections, transport, uplinkBytesPerS: uplinkKbs > 0 ? uplinkKbs * 1000 : undefined, swarm: `sim-${runSeed}`, queryTimeoutMs: timeoutS > 0 ? timeoutS * 1000 : undefined, encrypter, selfWalk: arg('dht-self-walk', 'false') === 'true', onBatch: started => { if (n >= 200 && started % 100 < Number(arg('dht-batch', '32'))) log(`dht n=${n} seed ${runSeed}: ${started} nodes started, virtual ${(vt.elapsedMs() / 1000).toFixed(0)} s, wall ${(wallS() - w0).toFixed(0)} s, rss ${Math.round(process.memoryUsage().rss / 1e6)} MB`) } })
    const startVirtualS = vt.elapsedMs() / 1000
    const startWallS = wallS() - w0
    const rssPerNode = (process.memoryUsage().rss - rss0) / n / 1e6
    const groups = s.connectedGroups()
    const tables = s.live.map(p => routingTableSize(p))
    log(`dht n=${n} seed ${runSeed}: started in ${startVirtualS.toFixed(1)} s virtual, ${startWallS.toFixed(0)} s wall, ${rssPerNode.toFixed(2)} MB/node, routing table mean ${s.meanRoutingTableSize().toFixed(1)} min ${Math.min(...tables)}, ${groups} connected group(s)`)
    const hops: number[] = []
    const ms: number[] = []
    let found = 0
    let provideFailed = 0
    let rounds = 0
    let roundStart = vt.now()
    for (let i = 0; i < lookups; i++) {
      if (i > 0 && i % LOOKUPS_PER_ROUND === 0) {
        // The rest of the minute passes, then 10 % of the live nodes leave and as many join.
        await new Promise<void>(resolve => setTimeout(resolve, Math.max(0, roundStart + ROUND_MS - vt.now())))
        roundStart = vt.now()
        await s.churn(0.1)
        rounds++
      }
      const live = s.live
      const [a, b] = model.pick(live.length, 2).map(j => live[j])
      const key = `/sim/${n}/${i}`
      const t1 = vt.now()
      const provided = await s.provide(a, key)
      if (!provided) provideFailed++
      const provideMs = vt.now() - t1
      const r = await s.findProvider(b, key, a.id)
      if (r.found) { found++; hops.push(r.hops) }
      ms.push(r.ms)
      log(`dht n=${n} lookup ${i}: provide ${provided ? 'ok' : 'failed'} in ${provideMs} ms, find ${r.found ? `found at hop ${r.hops}` : 'not found'} in ${r.ms} ms (virtual), wall ${(wallS() - w0).toFixed(0)} s`)
    }
    const row = { n, seed: runSeed, transport, uplink_kbs: uplinkKbs, max_connections: maxConnections, batch: Number(arg('dht-batch', '32')), timeout_s: timeoutS, encrypter, start_virtual_s: startVirtualS, start_wall_s: startWallS, wall_s: 0, virtual_s: 0, timer_events: 0, rss_mb_per_node: rssPerNode, routing_table_mean: s.meanRoutingTableSize(), routing_table_min: Math.min(...s.live.map(p => routingTableSize(p))), connected_groups: s.connectedGroups(), lookups, churn_rounds: rounds, provide_failed: provideFailed, found, dht_success: found / lookups, dht_hops_p95: percentile(hops, 95), log2n: Math.ceil(Math.log2(n)), lookup_ms_p50: percentile(ms, 50), lookup_ms_p95: percentile(ms, 95), load_1m_before: loadBefore1m, load_1m: load()[0] }
    await s.stop()
    row.wall_s = wallS() - w0
    row.virtual_s = vt.elapsedMs() / 1000
    row.timer_events = vt.events()
    log(`dht n=${n}: ${JSON.stringify(row)}`)
    return row
  }, { maxVirtualMs: 24 * 3600_000 })
}

function routingTableSize (p: SimPeer): number {
  return (p.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
}

interface CrdtRow { n: number, rounds: number, ever_joined: number, hub_entries: number, stale_held: number, crdt_bytes_per_live_peer: number, crdt_bytes_per_live_peer_round1: number, join_sync_bytes: number, join_sync_ms: number, wall_s: number }
async function crdtAt (n: number): Promise<CrdtRow> {
  const t0 = Date.now()
  const sim = new CrdtChurnSim({ livePeers: n, seed, churnPerRound: 0.1, roundMs: 60_000, observers: 1 })
  await sim.join(n)
  let first = 0
  let last = await sim.measure()
  for (let r = 0; r < 15; r++) {
    last = await sim.step()
    if (r === 0) first = last.bytesPerLivePeer
  }
  const join = await sim.joinSync()
  const row = { n, rounds: last.round, ever_joined: last.everJoined, hub_entries: last.hubEntries, stale_held: last.staleHeld, crdt_bytes_per_live_peer: Math.round(last.bytesPerLivePeer), crdt_bytes_per_live_peer_round1: Math.round(first), join_sync_bytes: join.bytes, join_sync_ms: Math.round(join.ms), wall_s: (Date.now() - t0) / 1000 }
  log(`crdt n=${n}: ${JSON.stringify(row)}`)
  return row
}

interface CrdtHistoryRow { n: number, generations: boolean, rounds: number, rotations: number, hub_entries: number, stale_held: number, crdt_bytes_per_live_peer: number, join_sync_bytes: number, join_sync_ms: number, join_entries: number, wall_s: number }
/** `rounds` rounds of 10 % churn at `n` live peers (60 s each), with or without doc generations. */
async function crdtHistoryAt (n: number, rounds: number, generations: boolean): Promise<CrdtHistoryRow> {
  const t0 = Date.now()
  const sim = new CrdtChurnSim({ livePeers: n, seed, churnPerRound: 0.1, roundMs: 60_000, observers: 1, generations: generations ? {} : false })
  await sim.join(n)
  let last = await sim.measure()
  for (let r = 0; r < rounds; r++) last = await sim.step()
  const join = await sim.joinSync()
  const row = { n, generations, rounds: last.round, rotations: last.rotations, hub_entries: last.hubEntries, stale_held: last.staleHeld, crdt_bytes_per_live_peer: Math.round(last.bytesPerLivePeer), join_sync_bytes: join.bytes, join_sync_ms: Math.round(join.ms), join_entries: join.entries, wall_s: (Date.now() - t0) / 1000 }
  log(`crdt history n=${n}: ${JSON.stringify(row)}`)
  return row
}

// --dht-runs seeds per N (seed, seed + 1, …); the headline per N is the median over them.
const dhtRuns: DhtRow[] = []
for (const n of list(arg('dht-n', '16,64'))) {
  for (let r = 0; r < Number(arg('dht-runs', '3')); r++) dhtRuns.push(await dhtAt(n, Number(arg('lookups', '20')), seed + r))
}
const dhtRows = [...new Set(dhtRuns.map(r => r.n))].map(n => {
  const runs = dhtRuns.filter(r => r.n === n)
  return { n, runs: runs.length, dht_success: percentile(runs.map(r => r.dht_success), 50), dht_hops_p95: percentile(runs.map(r => r.dht_hops_p95), 50) }
})
const crdtRows: CrdtRow[] = []
for (const n of list(arg('crdt-n', '100,500,1000'))) crdtRows.push(await crdtAt(n))
const historyRows: CrdtHistoryRow[] = []
for (const n of list(arg('crdt-history-n', '100'))) {
  // Interleaved per N, so both see the same minutes of machine load.
  for (const g of [true, false]) historyRows.push(await crdtHistoryAt(n, Number(arg('crdt-history-rounds', '100')), g))
}
const servers = Number(arg('route-servers', '1000'))
const requests = Number(arg('route-requests', '200'))
const routePlan = requests > 0 ? new RoutingSim({ servers, seed, numBlocks: 32, churnPerRequest: 0.1 }).run(requests) : undefined
const routePlanRow = routePlan === undefined ? undefined : { servers, requests: routePlan.requests, succeeded: routePlan.succeeded, failovers: routePlan.failovers, route_ratio_p50: percentile(routePlan.ratios, 50), route_ratio_p95: percentile(routePlan.ratios, 95) }
log(`routing (planner only): ${JSON.stringify(routePlanRow ?? 'skipped')}`)
interface RouteRun { seed: number, servers: number, requests: number, new_tokens: number, churn_per_min: number, succeeded: number, route_success: number, failovers: number, killed_on_route: number, requests_to_gone: number, route_ratio_p50: number, route_ratio_p95: number, route_ratio_max: number, virtual_s: number, wall_s: number, rss_mb: number, load_1m_before: number, load_1m_after: number, errors: string[] }
const routeRuns: RouteRun[] = []
for (let r = 0; requests > 0 && r < Number(arg('route-runs', '3')); r++) {
  const runSeed = seed + r
  const t0 = Date.now()
  const loadAt = load()[0]
  const churnPerMinute = Number(arg('route-churn-min', '0.1'))
  const sim = new InferenceRoutingSim({ servers, seed: runSeed, numBlocks: 32, churnPerRequest: 0.1, churnPerMinute, newTokens: Number(arg('route-tokens', '12')) })
  const res = await sim.run(requests)
  const row: RouteRun = { seed: runSeed, servers, requests: res.requests, new_tokens: Number(arg('route-tokens', '12')), churn_per_min: churnPerMinute, succeeded: res.succeeded, route_success: res.succeeded / res.requests, failovers: res.failovers, killed_on_route: res.killedOnRoute, requests_to_gone: res.requestsToGone, route_ratio_p50: percentile(res.ratios, 50), route_ratio_p95: percentile(res.ratios, 95), route_ratio_max: Math.max(...res.ratios), virtual_s: res.virtualMs / 1000, wall_s: (Date.now() - t0) / 1000, rss_mb: Math.round(process.memoryUsage().rss / 1e6), load_1m_before: loadAt, load_1m_after: load()[0], errors: res.errors }
  sim.stop()
  routeRuns.push(row)
  log(`routing (real stack) seed ${runSeed}: ${JSON.stringify(row)}`)
}
const median = (k: 'route_success' | 'route_ratio_p50' | 'route_ratio_p95'): number => percentile(routeRuns.map(x => x[k]), 50)
const routeRow = routeRuns.length === 0 ? undefined : { servers, seeds: routeRuns.length, route_success: median('route_success'), route_ratio_p50: median('route_ratio_p50'), route_ratio_p95: median('route_ratio_p95') }
// A tab holding PeerManager's 8 links for a simulated day, at the issue's 10 %/min churn and at 2 %/min:
// the paced budget (the default) with exponential (memoryless) and heavy-tailed lifetimes, and the
// session-7 policy (cap only, no uptime preference) beside it for comparison.
const tabDay = (churnPerMinute: number, lifetimes: 'exponential' | 'heavy-tailed'): Record<string, ReturnType<typeof simulateTabDay>> => ({
  paced: simulateTabDay({ seed, target: 8, churnPerMinute, lifetimes }),
  cap_only_random: simulateTabDay({ seed, target: 8, churnPerMinute, lifetimes, paced: false, order: 'random' })
})
const tab = {
  churn_10pct_min: tabDay(0.1, 'exponential'),
  churn_2pct_min: tabDay(0.02, 'exponential'),
  churn_10pct_min_heavy_tailed: tabDay(0.1, 'heavy-tailed'),
  churn_2pct_min_heavy_tailed: tabDay(0.02, 'heavy-tailed')
}
log(`tab day: ${JSON.stringify(tab)}`)

// Training under churn (web/src/sim/train-churn.ts): --train-workers real DiLoCo workers, a
// --train-churn fraction leaving after each of --train-syncs syncs and as many joining.
const trainWorkers = Number(arg('train-workers', '64'))
let trainChurn: (Awaited<ReturnType<TrainChurnSim['run']>> & { churn_per_sync: number, wall_s: number, load_1m_before: number, load_1m_after: number }) | undefined
if (trainWorkers > 0) {
  const churnPerSync = Number(arg('train-churn', '0.1'))
  const loadAt = load()[0]
  const t0 = wallS()
  const sim = new TrainChurnSim({ workers: trainWorkers, churnPerSync, seed, corpus: (await brownCorpus()).slice(0, 400_000) })
  try {
    trainChurn = { ...await sim.run(Number(arg('train-syncs', '6'))), churn_per_sync: churnPerSync, wall_s: wallS() - t0, load_1m_before: loadAt, load_1m_after: load()[0] }
  } finally {
    sim.stop()
  }
}
log(`training under churn: ${JSON.stringify(trainChurn ?? 'skipped')}`)

const failoverPeers = Number(arg('failover-peers', '30'))
const failoverProf = arg('failover-cpu-prof', '')
const failover = failoverPeers > 0 ? await relayFailover(failoverPeers, Number(arg('failover-rounds', '3')), log, { steadyS: Number(arg('failover-steady-s', '30')), cpuProfDir: failoverProf === '' ? undefined : failoverProf }) : undefined
log(`relay failover: ${JSON.stringify(failover ?? 'skipped')}`)
const capacitySteps = list(arg('capacity-steps', '50,100,200,400'))
const capacity = capacitySteps.length > 0 ? await relayCapacity(capacitySteps, 10_000, log) : undefined
log(`relay capacity: ${JSON.stringify(capacity ?? 'skipped')}`)

const byN = <T extends { n: number }>(rows: T[], k: keyof T): Record<string, unknown> => Object.fromEntries(rows.map(r => [String(r.n), r[k]]))
// A section skipped in this run (`--dht-n ''`, `--crdt-n ''`, `--route-requests 0`) keeps the
// figures of the run that measured it; scale.meta.json says which run measured what.
const prevFile = 'bench/results/scale.json'
const prev = existsSync(prevFile) ? JSON.parse(readFileSync(prevFile, 'utf8')) as Record<string, unknown> : {}
const prevMetaFile = 'bench/results/scale.meta.json'
const prevMeta = existsSync(prevMetaFile) ? JSON.parse(readFileSync(prevMetaFile, 'utf8')) as Record<string, unknown> : {}
const now = new Date().toISOString()
/** A previous run's section, with the time it was measured (older meta files held bare rows). */
const kept = (k: string): unknown => {
  const v = prevMeta[k]
  return v === undefined || v === null ? null : Array.isArray(v) ? { measured: prevMeta.date, rows: v } : typeof v === 'object' && !('measured' in v) ? { measured: prevMeta.date, ...v } : v
}
const realBudget = timeoutS > 0 ? [] : dhtRows
const longBudget = timeoutS > 0 ? dhtRows : []
const prevByN = (k: string): Record<string, unknown> => typeof prev[k] === 'object' && prev[k] !== null ? prev[k] as Record<string, unknown> : {}
/** The DHT rows per N: this run's (medians and every run) over the earlier ones of other Ns. */
function mergedDhtMeta (key: string, rows: typeof dhtRows, runs: DhtRow[]): unknown {
  const before = kept(key) as { rows?: Array<{ n: number }>, runs?: Array<{ n: number }>, measured?: string } | null
  const measuredNow = new Set(rows.map(r => r.n))
  const old = (xs: Array<{ n: number }> | undefined): Array<Record<string, unknown>> => (xs ?? []).filter(r => !measuredNow.has(r.n)).map(r => ({ measured: before?.measured, ...r }))
  return {
    rows: [...old(before?.rows), ...rows.map(r => ({ measured: now, ...r }))].sort((a, b) => Number(a.n) - Number(b.n)),
    runs: [...old(before?.runs), ...runs.map(r => ({ measured: now, ...r }))]
  }
}
const result = {
  // Per N: an N measured now replaces its earlier figure; other Ns keep theirs (meta says when).
  dht_success: { ...prevByN('dht_success'), ...byN(realBudget, 'dht_success') },
  dht_hops_p95: { ...prevByN('dht_hops_p95'), ...byN(realBudget, 'dht_hops_p95') },
  // Runs with a longer query budget (--dht-timeout-s): a diagnosis, kept apart from the headline.
  dht_success_long_budget: { ...prevByN('dht_success_long_budget'), ...byN(longBudget, 'dht_success') },
  dht_hops_p95_long_budget: { ...prevByN('dht_hops_p95_long_budget'), ...byN(longBudget, 'dht_hops_p95') },
  crdt_bytes_per_live_peer: crdtRows.length > 0 ? byN(crdtRows, 'crdt_bytes_per_live_peer') : prev.crdt_bytes_per_live_peer ?? null,
  join_sync_ms: crdtRows.length > 0 ? byN(crdtRows, 'join_sync_ms') : prev.join_sync_ms ?? null,
  join_sync_bytes: crdtRows.length > 0 ? byN(crdtRows, 'join_sync_bytes') : prev.join_sync_bytes ?? null,
  // After --crdt-history-rounds of churn: with the relay's doc generations, and without them.
  crdt_bytes_per_live_peer_after_history: historyRows.length > 0 ? byN(historyRows.filter(r => r.generations), 'crdt_bytes_per_live_peer') : prev.crdt_bytes_per_live_peer_after_history ?? null,
  crdt_bytes_per_live_peer_after_history_no_generations: historyRows.length > 0 ? byN(historyRows.filter(r => !r.generations), 'crdt_bytes_per_live_peer') : prev.crdt_bytes_per_live_peer_after_history_no_generations ?? null,
  join_sync_bytes_after_history: historyRows.length > 0 ? byN(historyRows.filter(r => r.generations), 'join_sync_bytes') : prev.join_sync_bytes_after_history ?? null,
  join_sync_bytes_after_history_no_generations: historyRows.length > 0 ? byN(historyRows.filter(r => !r.generations), 'join_sync_bytes') : prev.join_sync_bytes_after_history_no_generations ?? null,
  // Completions through the real client/server stack (median over --route-runs seeds).
  route_success: routeRow !== undefined ? routeRow.route_success : prev.route_success ?? null,
  route_ratio_p50: routeRow !== undefined ? routeRow.route_ratio_p50 : prev.route_ratio_p50 ?? null,
  route_ratio_p95: routeRow !== undefined ? routeRow.route_ratio_p95 : prev.route_ratio_p95 ?? null,
  // The planner alone (web/src/sim/routing.ts): the figures route_* held before session 9.
  route_plan_success: routePlanRow !== undefined ? routePlanRow.succeeded / routePlanRow.requests : prev.route_plan_success ?? null,
  route_plan_ratio_p50: routePlanRow !== undefined ? routePlanRow.route_ratio_p50 : prev.route_plan_ratio_p50 ?? null,
  route_plan_ratio_p95: routePlanRow !== undefined ? routePlanRow.route_ratio_p95 : prev.route_plan_ratio_p95 ?? null,
  // Every sync of the training run completed with every live worker holding the same θ_global.
  train_churn_syncs_identical: trainChurn !== undefined ? trainChurn.identicalSyncs / trainChurn.syncs : prev.train_churn_syncs_identical ?? null,
  train_churn_workers: trainChurn !== undefined ? trainChurn.workers : prev.train_churn_workers ?? null,
  relay_failover_s: failover !== undefined ? failover.relay_failover_s : prev.relay_failover_s ?? null,
  relay_failover_crdt_entries_lost: failover !== undefined ? Math.max(...failover.crdt_entries_lost) : prev.relay_failover_crdt_entries_lost ?? null,
  relay_peers_max: capacity !== undefined ? capacity.relay_peers_max : prev.relay_peers_max ?? null,
  relay_bytes_per_peer: capacity !== undefined ? capacity.relay_bytes_per_peer : prev.relay_bytes_per_peer ?? null,
  tab_peer_connections_24h: tab.churn_10pct_min.paced.opened,
  tab_mean_links_24h: tab.churn_10pct_min.paced.meanLinks,
  tab_budget_exhausted_minute: tab.churn_10pct_min.paced.exhaustedAtMinute,
  tab_peer_connections_24h_churn_2pct_min: tab.churn_2pct_min.paced.opened,
  tab_mean_links_24h_churn_2pct_min: tab.churn_2pct_min.paced.meanLinks,
  tab_peer_connections_24h_heavy_tailed: tab.churn_10pct_min_heavy_tailed.paced.opened,
  tab_mean_links_24h_heavy_tailed: tab.churn_10pct_min_heavy_tailed.paced.meanLinks
}
const meta = {
  date: now,
  seed,
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model,
  mem_gb: Math.round(os.totalmem() / 2 ** 30),
  load_before: loadBefore,
  load_after: load(),
  dht: mergedDhtMeta('dht', realBudget, timeoutS > 0 ? [] : dhtRuns),
  dht_long_budget: mergedDhtMeta('dht_long_budget', longBudget, timeoutS > 0 ? dhtRuns : []),
  crdt: crdtRows.length > 0 ? { measured: now, rows: crdtRows } : kept('crdt'),
  crdt_history: historyRows.length > 0 ? { measured: now, rows: historyRows } : kept('crdt_history'),
  routing: routeRow !== undefined ? { measured: now, ...routeRow, runs: routeRuns, plan: routePlanRow } : kept('routing'),
  tab: { measured: now, ...tab },
  train_churn: trainChurn !== undefined ? { measured: now, ...trainChurn } : kept('train_churn'),
  relay_failover: failover !== undefined ? { measured: now, ...failover } : kept('relay_failover'),
  relay_capacity: capacity !== undefined ? { measured: now, ...capacity } : kept('relay_capacity')
}
mkdirSync('bench/results', { recursive: true })
writeFileSync(prevFile, JSON.stringify(result, null, 2) + '\n')
writeFileSync(prevMetaFile, JSON.stringify(meta, null, 2) + '\n')
log('wrote bench/results/scale.json')
process.exit(0)
