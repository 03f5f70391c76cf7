/**
 * The relay figures of `npm run bench:scale` (bench/scale.ts runs these; BENCHMARKS.md § Scale):
 *
 * - relayFailover: 3 real relays, each its own process (relay/main.ts on 127.0.0.1, linked with
 *   --peer-relay), and N light Node peers, 5 to a forked process (bench/scale-failover-peers.ts:
 *   joinSwarm = libp2p + swarm doc + reservations on 2 relays; no models, no WebRTC links). Every
 *   peer writes its entry twice; once
 *   every peer holds every second write, the relay most peers reserved on is SIGKILLed (a crash: no
 *   flush, sockets reset). Measured: per affected peer, the time until it holds reservations on two
 *   live relays again (relay_failover_s = the slowest), whether it kept one throughout, and the
 *   entries missing from what each surviving relay persisted (its CRDT log, read back after a
 *   SIGTERM).
 * - relayCapacity: one relay process, light peers added in steps (websocket + reservation + one
 *   crdt-sync from an empty doc each) until joins fail or slow past a goal: relay_peers_max and
 *   the relay's RSS and heap per peer (from its /metrics).
 */
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as Y from 'yjs'
import { CrdtStore } from '../relay/crdt-store.ts'
import { SwarmDoc } from '../web/src/net/crdt/swarm-doc.ts'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import { ipcPeer, stopPeers, type IpcPeer } from './ipc.ts'
import type { FailoverCmd, FailoverReply } from './scale-failover-peers.ts'
import { SYNC_STEP1, SYNC_STEP2, decodeSyncFrame, encodeSyncFrame } from '../web/src/net/crdt/sync.ts'
import { CRDT_SYNC } from '../web/src/net/protocols.ts'

const quiet = (): void => {}
/** Bound of every wait here, ms: a figure past it is reported as a failure, not waited for. */
const WAIT_MS = 180_000

async function until (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`bench: ${what} not reached within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** `--cpu-prof` flags: the process writes a V8 CPU profile into `dir` when it exits (a SIGKILLed relay writes none). */
function profFlags (dir: string | undefined): string[] {
  return dir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', dir]
}

const CLK_TCK = 100 // Linux's USER_HZ: /proc/PID/stat counts ticks of 10 ms

/** A process's CPU so far (all threads), ms; NaN where /proc is not there (not Linux, or it exited). */
async function procCpuMs (pid: number | undefined): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  if (stat === '') return NaN
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 1000 / CLK_TCK // utime, stime (fields 14, 15)
}

/** A relay in its own process (relay/main.ts, no API): killed with SIGKILL, as a crash. */
interface RelayProc { child: ChildProcess, id: string, addr: string, dataDir: string }

async function spawnRelay (dataDir: string, peerRelays: string[], extra: string[] = [], profDir?: string): Promise<RelayProc> {
  await fs.mkdir(dataDir, { recursive: true })
  const args = [...profFlags(profDir), '--import', 'tsx', 'relay/main.ts', '--no-api', '--port', '0', '--ice-server', 'none', '--data-dir', dataDir, '--static-dir', dataDir, ...peerRelays.flatMap(a => ['--peer-relay', a]), ...extra]
  // BENCH_RELAY_LOG_DIR: each relay process's output goes to a file there (with BENCH_RELAY_DEBUG as its DEBUG: libp2p's logging).
  const logDir = process.env.BENCH_RELAY_LOG_DIR
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: logDir === undefined ? process.env : { ...process.env, DEBUG: process.env.BENCH_RELAY_DEBUG ?? '' } })
  if (logDir !== undefined) {
    const file = (await fs.open(path.join(logDir, `${path.basename(dataDir)}-${Date.now()}.log`), 'a')).createWriteStream()
    child.stdout.on('data', (d: Buffer) => { file.write(`${new Date().toISOString()} ${d.toString()}`) })
    child.stderr.on('data', (d: Buffer) => { file.write(d) })
  }
  let out = ''
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`bench: relay in ${dataDir} did not start: ${out}`)) }, WAIT_MS)
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /relay (\S+) listening: (\S+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve({ child, id: m[1], addr: m[2], dataDir }) }
    })
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`bench: relay in ${dataDir} exited with ${code}: ${out}`)) })
  })
}

async function stopRelay (r: RelayProc, signal: NodeJS.Signals): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return
  const exited = new Promise(resolve => r.child.once('exit', resolve))
  r.child.kill(signal)
  await exited
}

/** The swarm doc a stopped relay left on disk (its CRDT log). */
async function storedDoc (r: RelayProc): Promise<SwarmDoc> {
  const doc = new Y.Doc()
  const store = await CrdtStore.open(path.join(r.dataDir, 'crdt'), 'default', doc, { compactIntervalMs: 0, log: quiet })
  await store.close()
  return new SwarmDoc('default', 'bench-reader', undefined, doc)
}

/** Peers of `ids` whose entry in `doc` lacks generation `gen` (missing or older). */
async function missingIn (doc: SwarmDoc, ids: string[], gen: number): Promise<number> {
  const entries = await doc.peers()
  return ids.filter(id => (entries.get(id)?.data.gen as number | undefined ?? -1) < gen).length
}

/** Peers each forked peer process hosts (bench/scale-failover-peers.ts). */
const PEERS_PER_PROCESS = 5

type PeerProc = { child: ChildProcess } & IpcPeer<FailoverCmd, FailoverReply>

function forkPeers (profDir?: string): PeerProc {
  const child = fork(fileURLToPath(new URL('./scale-failover-peers.ts', import.meta.url)), [], { execArgv: [...profFlags(profDir), '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return { child, ...ipcPeer<FailoverCmd, FailoverReply>(child, 'failover peers') }
}

/** One kill: the victim's affected peers and how long each took to hold two live reservations again. */
export interface FailoverRound {
  /** Peers that held a reservation on the killed relay. */
  affected: number
  /** Of those, re-reserved on two live relays within WAIT_MS. */
  re_reserved: number
  /** Slowest affected peer's time to hold reservations on two live relays again, s (null: not all within WAIT_MS). */
  slowest_s: number | null
  p50_s: number | null
  /** Each re-reserved peer's time, s (0.1 s), fastest first: also when the round did not finish. */
  times_s: number[]
  /** Affected peers still reachable throughout (their other reservation stayed live). */
  kept_one_reservation: number
  /** Peers not on two relays, or not linked to all three, when the round began (the previous restart not yet rejoined everywhere): counted, not waited for past WAIT_MS. */
  short_at_start: number
  /** Seconds from the previous victim's restart until every peer was linked to it again and reserved on two relays (null: not within WAIT_MS; absent in round 1). */
  restart_rejoin_s?: number | null
  /** Load average (1 min) at the kill. */
  load_1m: number
  /** What the slowest affected peers (and any that never re-reserved) saw, ms after the kill: relay links, reservations held, PeerManager's log. */
  timelines: Record<string, Array<[number, string]>>
  /** Seconds the previous victim's new process took to listen (restart_rejoin_s counts from then; absent in round 1). */
  restart_start_s?: number
  /** What the three peers slowest to link to the previous victim's restart saw, ms after its new process was spawned (absent in round 1). */
  rejoin_timelines?: Record<string, Array<[number, string]>>
  /** The restarted relay once every peer was back: its refusals by reason (relay/limits.ts) and event-loop lag, ms (absent in round 1). */
  rejoin_relay?: { refused: Record<string, number>, loop_lag_ms: { p50: number, p99: number, max: number } }
}

/** One window of the steady state (every peer reserved, nothing asked of the swarm): where the CPU goes. */
export interface SteadyWindow {
  /** Seconds since the set-up ended, at the window's start; its length, s. */
  from_s: number
  window_s: number
  /** CLOCK_MONOTONIC µs (process.hrtime, V8's profile clock) at the window's ends: cuts it out of --cpu-prof profiles. */
  from_us: number
  to_us: number
  load_1m: number
  /** Each relay process's CPU (all threads, /proc), ms per s of wall time. */
  relay_cpu_ms_per_s: number[]
  /** Each peer process's CPU (PEERS_PER_PROCESS peers each), ms per s. */
  peer_process_cpu_ms_per_s: number[]
  /** The median peer process's CPU divided by its peers, ms per s. */
  cpu_ms_per_s_per_peer: number
  /** Each peer process's event-loop delay over the window (monitorEventLoopDelay), ms. */
  peer_loop_delay_ms: Array<{ p50: number, p99: number, max: number }>
  /** Open connections of all peers by kind at the window's end (websocket: relay links; webrtc: direct links; relayed: through a relay). */
  peer_links: Record<string, number>
  /** Each relay's event-loop lag over the window (its /metrics, prom-client), ms. */
  relay_loop_lag_ms: Array<{ p50: number, p99: number, max: number }>
}

export interface FailoverOptions {
  /** Steady-state windows measured after the set-up, before the first kill. @default 2 */
  steadyWindows?: number
  /** Length of each, s. @default 30 */
  steadyS?: number
  /** Every relay and peer process writes a V8 CPU profile here when it exits. */
  cpuProfDir?: string
}

export interface FailoverResult {
  /** The steady state after the set-up (SteadyWindow): the CPU the idle swarm costs before any kill. */
  steady: SteadyWindow[]
  relays: number
  peers: number
  /** Processes the peers ran in (PEERS_PER_PROCESS each). */
  peer_processes: number
  /** Seconds from the N peers' start to all of them reserved on 2 relays and linked to all 3 (or WAIT_MS past the last join). */
  setup_s: number
  /** Peers not on two relays when the set-up wait ended (0: all were). */
  short_after_setup: number
  /** Each kill (the killed relay restarted on its port and data dir before the next). */
  rounds: FailoverRound[]
  /** Median over the rounds of each round's slowest re-reservation, s (a round that did not finish counts as slower than any; null if the median is one). */
  relay_failover_s: number | null
  /** Affected peers, over all rounds, that did not re-reserve on two live relays within WAIT_MS. */
  never_re_reserved: number
  /** Entries (latest generation, acknowledged before the last kill) missing on each relay alive at the end. */
  crdt_entries_lost: number[]
}

/** Processes joining at once: all six at once timed reservations out on 2 shared cores (the set-up is not the test). */
const JOINING_PROCESSES = 2

/**
 * 3 relay processes, `nPeers` peers in forked processes; `rounds` times: every peer writes a new
 * generation of its entry, every peer holds every write, the relay most peers reserved on is
 * SIGKILLed, and each affected peer's time to hold two live reservations again is recorded; then
 * the killed relay is restarted on its port and data dir (same identity: the peers redial it) and
 * every peer is reserved on two relays and linked to all three again (restart_rejoin_s) before the next round.
 */
export async function relayFailover (nPeers: number, rounds: number, log: (l: string) => void, opts: FailoverOptions = {}): Promise<FailoverResult> {
  const prof = opts.cpuProfDir
  if (prof !== undefined) await fs.mkdir(prof, { recursive: true })
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-failover-'))
  const relays: RelayProc[] = []
  const procs: PeerProc[] = []
  try {
    const r1 = await spawnRelay(path.join(root, 'r1'), [], [], prof)
    relays.push(r1)
    const r2 = await spawnRelay(path.join(root, 'r2'), [r1.addr], [], prof)
    relays.push(r2)
    relays.push(await spawnRelay(path.join(root, 'r3'), [r1.addr, r2.addr], [], prof))
    const bootstrap = relays.map(r => r.addr)
    const links = new Map(relays.map((r, i) => [r, bootstrap.slice(0, i)]))

    const t0 = Date.now()
    for (let i = 0; i < nPeers; i += PEERS_PER_PROCESS) procs.push(forkPeers(prof))
    const ids: string[] = []
    for (let i = 0; i < procs.length; i += JOINING_PROCESSES) {
      await Promise.all(procs.slice(i, i + JOINING_PROCESSES).map(async (p, j) => {
        ids.push(...(await p.cmd({ op: 'join', bootstrap, count: Math.min(PEERS_PER_PROCESS, nPeers - (i + j) * PEERS_PER_PROCESS) })).ids ?? [])
      }))
      log(`failover: ${ids.length} peers joined after ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    }
    const reserved = async (): Promise<Record<string, string[]>> => Object.assign({}, ...(await Promise.all(procs.map(async p => (await p.cmd({ op: 'reserved' })).reserved))))
    const linked = async (): Promise<Record<string, string[]>> => Object.assign({}, ...(await Promise.all(procs.map(async p => (await p.cmd({ op: 'reserved' })).linked))))
    // A round starts from the steady state: every peer reserved on two relays and linked to all
    // three. Started from "reserved on two" alone, a kill found peers still redialling the relay
    // restarted after the previous kill, and measured that rejoin (up to 86 s) instead.
    const steadyAgain = async (): Promise<void> => {
      await until('every peer reserved on two relays and linked to all three', async () => {
        const [r, l] = await Promise.all([reserved(), linked()])
        return Object.keys(r).every(p => r[p].length === 2 && (l[p]?.length ?? 0) === 3)
      }, WAIT_MS, 500)
    }
    const setupOk = await steadyAgain().then(() => true, (e: Error) => { log(`failover: set-up: ${e.message}; going ahead`); return false })
    const setupS = (Date.now() - t0) / 1000
    const shortAfterSetup = setupOk ? 0 : Object.values(await reserved()).filter(r => r.length < 2).length
    log(`failover: ${nPeers} peers in ${procs.length} processes, ${nPeers - shortAfterSetup} reserved on two relays each after ${setupS.toFixed(1)} s`)
    const steady: SteadyWindow[] = []
    const setupEnd = Date.now()
    for (let w = 0; w < (opts.steadyWindows ?? 2); w++) {
      steady.push(await steadyWindow(relays, procs, (opts.steadyS ?? 30) * 1000, setupEnd))
      log(`failover: steady state: ${JSON.stringify(steady[steady.length - 1])}`)
    }

    const done: FailoverRound[] = []
    let gen = 1
    let restartedAt = 0
    let restartedIdx = 0
    /** Seconds from spawning the previous victim again until it printed that it listens. */
    let restartStartS = 0
    for (let round = 0; round < rounds; round++) {
      let shortAtStart = 0
      let rejoinS: number | null | undefined
      let rejoinTimelines: FailoverRound['rejoin_timelines']
      let rejoinRelay: FailoverRound['rejoin_relay']
      if (round > 0) {
        // Bounded: a peer still short after WAIT_MS is counted and the round goes ahead.
        const back = await steadyAgain().then(() => true, (e: Error) => { log(`failover: round ${round + 1}: ${e.message}; going ahead`); return false })
        rejoinS = back ? Math.round((Date.now() - restartedAt) / 100) / 10 : null
        if (!back) {
          const [r, l] = await Promise.all([reserved(), linked()])
          shortAtStart = Object.keys(r).filter(p => r[p].length < 2 || (l[p]?.length ?? 0) < 3).length
        }
        log(`failover: round ${round + 1}: ${back ? `every peer back on two relays and linked to all three, ${rejoinS} s after the restart` : `${shortAtStart} peer(s) not on two relays or not linked to all three`}`)
        // Why the rejoin took what it took: the three peers slowest to link to the restarted relay, and its refusals.
        const restarted = relays[restartedIdx]
        const all = (await Promise.all(procs.map(async p => Object.entries((await p.cmd({ op: 'timeline' })).timeline ?? {})))).flat()
        const opened = `open ${restarted.id.slice(-6)}`
        const linkedAt = (t: Array<[number, string]>): number => t.find(([, e]) => e.startsWith(opened))?.[0] ?? Infinity
        rejoinTimelines = Object.fromEntries(all.sort((a, b) => linkedAt(b[1]) - linkedAt(a[1])).slice(0, 3))
        rejoinRelay = await relayRefusals(restarted).catch((e: Error) => { log(`failover: restarted relay's /metrics: ${e.message}`); return undefined })
        log(`failover: round ${round + 1}: restarted relay: ${JSON.stringify(rejoinRelay)}`)
        for (const [p, t] of Object.entries(rejoinTimelines)) log(`failover: round ${round + 1}: rejoin ${p.slice(-6)}: ${t.map(([ms, e]) => `${(ms / 1000).toFixed(1)}s ${e}`).join(' | ')}`)
      }
      // The victim: the relay most peers reserved on. A fresh write of every peer, synced to
      // every peer (so each relay, which every peer is connected to, has had it), then SIGKILL.
      const byRelay = Object.values(await reserved()).flat()
      const count = (r: RelayProc): number => byRelay.filter(id => id === r.id).length
      const victim = relays.reduce((a, b) => count(a) >= count(b) ? a : b)
      gen++
      await Promise.all(procs.map(async p => await p.cmd({ op: 'write', gen })))
      await until('every peer holds every fresh write', async () => (await Promise.all(procs.map(async p => (await p.cmd({ op: 'missing', ids, gen })).missing))).every(n => n === 0), WAIT_MS, 500)
      const live = relays.filter(r => r !== victim).map(r => r.id)
      const affected = (await Promise.all(procs.map(async p => (await p.cmd({ op: 'watch', victim: victim.id, live })).affected ?? []))).flat()
      const tKill = Date.now()
      await stopRelay(victim, 'SIGKILL')
      let last: Array<FailoverReply & { ok: true }> = []
      const reReserved = (): number => last.reduce((n, r) => n + Object.keys(r.done ?? {}).length, 0)
      await until('every affected peer reserved on two live relays', async () => {
        last = await Promise.all(procs.map(async p => await p.cmd({ op: 'failover' })))
        return reReserved() === affected.length
      }, WAIT_MS, 250).catch((e: Error) => { log(`failover: round ${round + 1}: ${e.message} (${reReserved()} of ${affected.length})`) })
      const loadAtKill = os.loadavg()[0]
      const times = last.flatMap(r => Object.values(r.done ?? {})).map(t => (t - tKill) / 1000).sort((a, b) => a - b)
      const all = times.length === affected.length
      // Timelines of the three slowest peers and of every peer that never re-reserved.
      const doneAt = new Map(last.flatMap(r => Object.entries(r.done ?? {})))
      const worst = [...affected].sort((a, b) => (doneAt.get(b) ?? Infinity) - (doneAt.get(a) ?? Infinity))
      const keep = new Set(worst.filter((p, i) => i < 3 || !doneAt.has(p)))
      const timelines = Object.fromEntries((await Promise.all(procs.map(async p => Object.entries((await p.cmd({ op: 'timeline' })).timeline ?? {})))).flat().filter(([p]) => keep.has(p)))
      done.push({
        affected: affected.length,
        re_reserved: times.length,
        slowest_s: all ? times[times.length - 1] ?? 0 : null,
        p50_s: all ? times[Math.floor(times.length / 2)] ?? 0 : null,
        times_s: times.map(t => Math.round(t * 10) / 10),
        kept_one_reservation: affected.length - last.reduce((n, r) => n + (r.lostAll?.length ?? 0), 0),
        short_at_start: shortAtStart,
        ...(rejoinS === undefined ? {} : { restart_rejoin_s: rejoinS, restart_start_s: restartStartS }),
        load_1m: Math.round(loadAtKill * 10) / 10,
        timelines,
        ...(rejoinTimelines === undefined ? {} : { rejoin_timelines: rejoinTimelines }),
        ...(rejoinRelay === undefined ? {} : { rejoin_relay: rejoinRelay })
      })
      const { timelines: _t, rejoin_timelines: _r, ...brief } = done[done.length - 1]
      log(`failover: round ${round + 1}: ${JSON.stringify(brief)}`)
      for (const [p, t] of Object.entries(timelines)) log(`failover: round ${round + 1}: ${p.slice(-6)}: ${t.map(([ms, e]) => `${(ms / 1000).toFixed(1)}s ${e}`).join(' | ')}`)
      if (round < rounds - 1) {
        const port = Number(victim.addr.split('/tcp/')[1].split('/')[0])
        // Every peer's timeline from here: its redials of the victim while it restarts, and after.
        await Promise.all(procs.map(async p => await p.cmd({ op: 'watch', victim: victim.id, live: [], all: true })))
        const spawnedAt = Date.now()
        const back = await spawnRelay(victim.dataDir, links.get(victim) ?? [], ['--port', String(port)], prof)
        restartedAt = Date.now()
        restartStartS = Math.round((restartedAt - spawnedAt) / 100) / 10
        log(`failover: round ${round + 1}: victim restarted, listening after ${restartStartS} s`)
        links.set(back, links.get(victim) ?? [])
        restartedIdx = relays.indexOf(victim)
        relays[restartedIdx] = back
      }
    }
    // What each live relay persisted (SIGTERM: it flushes and compacts; its log is then read back).
    await new Promise(resolve => setTimeout(resolve, 6_000)) // one anti-entropy round (5 s)
    await stopPeers(procs.splice(0))
    const lost: number[] = []
    for (const r of relays) {
      if (r.child.exitCode !== null || r.child.signalCode !== null) continue
      await stopRelay(r, 'SIGTERM')
      lost.push(await missingIn(await storedDoc(r), ids, gen))
    }
    const slowest = done.map(r => r.slowest_s ?? Infinity).sort((a, b) => a - b)
    const median = slowest[Math.floor((slowest.length - 1) / 2)]
    return {
      steady,
      relays: 3,
      peers: nPeers,
      peer_processes: Math.ceil(nPeers / PEERS_PER_PROCESS),
      setup_s: setupS,
      short_after_setup: shortAfterSetup,
      rounds: done,
      relay_failover_s: median === undefined || median === Infinity ? null : median,
      never_re_reserved: done.reduce((n, r) => n + r.affected - r.re_reserved, 0),
      crdt_entries_lost: lost
    }
  } finally {
    await stopPeers(procs)
    for (const r of relays) await stopRelay(r, 'SIGKILL').catch(() => {})
    await fs.rm(root, { recursive: true, force: true })
  }
}

/** The relay's event-loop lag gauges (prom-client resets its histogram at each scrape), ms. */
async function relayLoopLag (r: RelayProc): Promise<{ p50: number, p99: number, max: number }> {
  const url = `http://127.0.0.1:${Number(r.addr.split('/tcp/')[1].split('/')[0])}/metrics`
  const text = await (await fetch(url, { signal: AbortSignal.timeout(WAIT_MS) })).text()
  const ms = (name: string): number => Math.round(gauge(text, `webswarm_relay_process_nodejs_eventloop_lag_${name}_seconds`) * 1e4) / 10
  return { p50: ms('p50'), p99: ms('p99'), max: ms('max') }
}

/** A relay's refusals so far by reason (relay/limits.ts) and its event-loop lag since the last scrape. */
async function relayRefusals (r: RelayProc): Promise<{ refused: Record<string, number>, loop_lag_ms: { p50: number, p99: number, max: number } }> {
  const url = `http://127.0.0.1:${Number(r.addr.split('/tcp/')[1].split('/')[0])}/metrics`
  const text = await (await fetch(url, { signal: AbortSignal.timeout(WAIT_MS) })).text()
  const refused: Record<string, number> = {}
  for (const m of text.matchAll(/^webswarm_relay_refused_total\{reason="([^"]+)"\} (\S+)$/gm)) refused[m[1]] = Number(m[2])
  return { refused, loop_lag_ms: await relayLoopLag(r) }
}

/** CPU and event-loop delay of every relay and peer process over `ms` of the steady state. */
async function steadyWindow (relays: RelayProc[], procs: PeerProc[], ms: number, setupEnd: number): Promise<SteadyWindow> {
  const cpu = async (): Promise<number[]> => await Promise.all([...relays.map(r => r.child.pid), ...procs.map(p => p.child.pid)].map(procCpuMs))
  await Promise.all(relays.map(relayLoopLag))
  await Promise.all(procs.map(async p => await p.cmd({ op: 'load' })))
  const fromS = (Date.now() - setupEnd) / 1000
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  const before = await cpu()
  await new Promise(resolve => setTimeout(resolve, ms))
  const after = await cpu()
  const toUs = Number(process.hrtime.bigint() / 1000n)
  const loads = await Promise.all(procs.map(async p => await p.cmd({ op: 'load' })))
  const perS = after.map((a, i) => Math.round((a - before[i]) / ((toUs - fromUs) / 1e6) * 10) / 10)
  const peerCpu = perS.slice(relays.length)
  const sorted = [...peerCpu].sort((a, b) => a - b)
  return {
    from_s: Math.round(fromS),
    window_s: Math.round((toUs - fromUs) / 1e5) / 10,
    from_us: fromUs,
    to_us: toUs,
    load_1m: Math.round(os.loadavg()[0] * 10) / 10,
    relay_cpu_ms_per_s: perS.slice(0, relays.length),
    peer_process_cpu_ms_per_s: peerCpu,
    cpu_ms_per_s_per_peer: Math.round(sorted[sorted.length >> 1] / PEERS_PER_PROCESS * 10) / 10,
    peer_loop_delay_ms: loads.map(l => l.loopDelayMs ?? { p50: NaN, p99: NaN, max: NaN }),
    peer_links: loads.reduce<Record<string, number>>((sum, l) => { for (const [k, n] of Object.entries(l.links ?? {})) sum[k] = (sum[k] ?? 0) + n; return sum }, {}),
    relay_loop_lag_ms: await Promise.all(relays.map(relayLoopLag))
  }
}

/** A capacity client: websockets + noise + yamux + identify + a circuit reservation; no swarm services. */
async function capacityClient (relayAddr: string): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: [`${relayAddr}/p2p-circuit`] },
    transports: [webSockets(), circuitRelayTransport({ reservationCompletionTimeout: WAIT_MS })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify() }
  })
}

/** One crdt-sync exchange from an empty doc (what a newcomer does): returns the bytes received. */
async function syncOnce (node: Libp2p, relayId: string): Promise<number> {
  const signal = AbortSignal.timeout(CRDT_SYNC.timeoutMs)
  const stream = await node.dialProtocol(peerIdFromString(relayId), CRDT_SYNC.id, { signal })
  const lp = lpStream(stream, { maxDataLength: CRDT_SYNC.maxMessageBytes })
  const empty = new Y.Doc()
  await lp.write(encodeSyncFrame({ type: SYNC_STEP1, swarm: 'default', payload: Y.encodeStateVector(empty) }), { signal })
  let bytes = 0
  let answered = false
  let got2 = false
  while (!(answered && got2)) {
    const frame = decodeSyncFrame((await lp.read({ signal })).subarray())
    bytes += frame.payload.byteLength
    if (frame.type === SYNC_STEP1) {
      answered = true
      await lp.write(encodeSyncFrame({ type: SYNC_STEP2, swarm: 'default', payload: Y.encodeStateAsUpdate(empty, frame.payload) }), { signal })
    } else got2 = true
  }
  await stream.close({ signal })
  return bytes
}

/** A Prometheus gauge's value in the relay's /metrics text. */
function gauge (text: string, name: string): number {
  const line = text.split('\n').find(l => l.startsWith(name + ' '))
  return line === undefined ? NaN : Number(line.slice(name.length + 1))
}

export interface CapacityStep {
  peers: number
  /** Clients of this step that got connection + reservation + sync. */
  joined: number
  failed: number
  /** Per-client time to connect, reserve and sync, this step: p50 / p95, ms. */
  join_ms_p50: number
  join_ms_p95: number
  relay_rss_mb: number
  relay_heap_mb: number
  reservations: number
}

export interface CapacityResult {
  steps: CapacityStep[]
  /** Most peers held while every join of the step succeeded with p95 ≤ the goal. */
  relay_peers_max: number
  /** (RSS at relay_peers_max − RSS with none) / relay_peers_max. */
  relay_bytes_per_peer: number
  relay_heap_bytes_per_peer: number
  /** Why the ramp stopped. */
  stopped: string
}

/**
 * Ramps concurrent light peers (websocket + reservation + one swarm-doc sync each) against one
 * relay process with its capacity limits off, measuring the relay's RSS and heap per peer, until a
 * step's joins fail or their p95 passes `joinGoalMs` (where the relay stops coping), or `steps`
 * ends. The clients run in this process: on 2 cores their handshakes compete with the relay's.
 */
export async function relayCapacity (steps: number[], joinGoalMs: number, log: (l: string) => void): Promise<CapacityResult> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-capacity-'))
  const clients: Libp2p[] = []
  const relay = await spawnRelay(root, [], ['--max-connections', '0', '--max-conns-per-ip', '0', '--max-reservations', '100000', '--conn-rate-limit', '100000'])
  try {
    const url = `http://127.0.0.1:${Number(relay.addr.split('/tcp/')[1].split('/')[0])}/metrics`
    const scrape = async (): Promise<{ rss: number, heap: number, reservations: number }> => {
      const text = await (await fetch(url, { signal: AbortSignal.timeout(WAIT_MS) })).text()
      return { rss: gauge(text, 'webswarm_relay_process_process_resident_memory_bytes'), heap: gauge(text, 'webswarm_relay_process_nodejs_heap_size_used_bytes'), reservations: gauge(text, 'webswarm_relay_reservations') }
    }
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const base = await scrape()
    log(`capacity: relay idle rss ${(base.rss / 1e6).toFixed(0)} MB heap ${(base.heap / 1e6).toFixed(0)} MB`)
    const rows: CapacityStep[] = []
    let best: CapacityStep | undefined
    let stopped = 'ramp ended'
    for (const target of steps) {
      const times: number[] = []
      let failed = 0
      while (clients.length + failed < target) {
        const batch = Math.min(BATCH, target - clients.length - failed)
        await Promise.all(Array.from({ length: batch }, async () => {
          const t = Date.now()
          let node: Libp2p | undefined
          try {
            node = await capacityClient(relay.addr)
            await syncOnce(node, relay.id)
            clients.push(node)
            times.push(Date.now() - t)
          } catch (e) {
            if (failed++ === 0) log(`capacity: first failed join: ${(e as Error).message}`)
            await Promise.resolve(node?.stop()).catch(() => {})
          }
        }))
      }
      if (global.gc !== undefined) global.gc()
      await new Promise(resolve => setTimeout(resolve, 1_000))
      const m = await scrape()
      times.sort((a, b) => a - b)
      const row: CapacityStep = {
        peers: clients.length,
        joined: times.length,
        failed,
        join_ms_p50: times[Math.floor(times.length / 2)] ?? NaN,
        join_ms_p95: times[Math.min(times.length - 1, Math.floor(times.length * 0.95))] ?? NaN,
        relay_rss_mb: Math.round(m.rss / 1e6),
        relay_heap_mb: Math.round(m.heap / 1e6),
        reservations: m.reservations
      }
      rows.push(row)
      log(`capacity: ${JSON.stringify(row)}`)
      if (failed > 0 || !(row.join_ms_p95 <= joinGoalMs)) { stopped = `at ${target}: ${failed} joins failed, join p95 ${row.join_ms_p95} ms (goal ≤ ${joinGoalMs})`; break }
      best = { ...row, relay_rss_mb: m.rss, relay_heap_mb: m.heap }
    }
    return {
      steps: rows,
      relay_peers_max: best?.peers ?? 0,
      relay_bytes_per_peer: best === undefined ? NaN : Math.round((best.relay_rss_mb - base.rss) / best.peers),
      relay_heap_bytes_per_peer: best === undefined ? NaN : Math.round((best.relay_heap_mb - base.heap) / best.peers),
      stopped
    }
  } finally {
    for (let i = 0; i < clients.length; i += BATCH) await Promise.all(clients.slice(i, i + BATCH).map(async c => { await Promise.resolve(c.stop()).catch(() => {}) }))
    await stopRelay(relay, 'SIGKILL')
    await fs.rm(root, { recursive: true, force: true })
  }
}

/** Capacity clients started at once. */
const BATCH = 10
