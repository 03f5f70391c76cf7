/**
 * `npm run bench:net -- --idle` — what an idle WebSwarm process costs in CPU, per configuration:
 *
 * - `worker`: bench:train's compute-utilization workers (bench/train-util.ts `utilNode`): N
 *   processes joined through a relay (held in this process) and all linked by direct WebRTC.
 * - `start`: `npm start`'s process (relay/main.ts): the relay, the API's client node and the
 *   embedded peer serving every block of the default model, three libp2p nodes in one process.
 * - `server`: Node server peers (`webswarm serve`, byte-llama) beside a relay process (--no-api).
 *
 * Each process is left alone for --settle-s after it is up (start-up rounds: DHT fast start,
 * reservations), then its CPU (utime + stime from /proc/PID/stat, all threads) is read over
 * --idle-s of doing nothing: ms of CPU per second of wall time. With --cpu-prof DIR every child
 * writes a V8 CPU profile and the run prints, per process kind, the idle window's samples by
 * package (self time): V8 stamps samples with CLOCK_MONOTONIC, the clock of `process.hrtime`, so
 * the window is cut out of each profile by time.
 *
 * Flags: --configs worker,start,server  --idle-s 60  --settle-s 10  --workers 4  --servers 2
 *        --cpu-prof DIR  --out FILE (default bench/results/net-idle.json)
 * Linux only (/proc).
 */
import { spawn, fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { createRelay } from '../web/src/net/node.ts'
import { ipcPeer, stopPeers } from './ipc.ts'
import { utilNode } from './train-util.ts'

type Config = 'worker' | 'start' | 'server'

interface Measured { kind: string, pid: number, msPerS: number }

const CLK_TCK = 100 // Linux's USER_HZ: /proc/PID/stat counts ticks of 10 ms

/** A process's CPU so far (all threads), ms. */
function procCpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 1000 / CLK_TCK // utime, stime (fields 14, 15)
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n)

function log (line: string): void { process.stderr.write(line + '\n') }

/** Starts `node [--cpu-prof …] --import tsx FILE ARGS`; resolves once `ready` shows in its output. */
async function startTs (file: string, args: string[], ready: RegExp, profDir?: string): Promise<{ child: ChildProcess, match: RegExpExecArray }> {
  const prof = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir]
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', file, ...args], { stdio: 'pipe', env: { ...process.env, WEBSWARM_NO_EMBEDDED_PEER: '' } })
  let out = ''
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const look = (c: Buffer): void => { out += c.toString(); const m = ready.exec(out); if (m !== null) resolve(m) }
    child.stdout!.on('data', look)
    child.stderr!.on('data', look)
    child.on('exit', code => { reject(new Error(`${file} exited ${code}:\n${out}`)) })
  })
  return { child, match }
}

/** SIGTERM, then up to 15 s for a graceful exit (the CPU profile is written at exit), then SIGKILL. */
async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(15_000)])
  if (child.exitCode === null) child.kill('SIGKILL')
}

/** Measures the CPU of each process over the idle window; returns the window too (µs, monotonic). */
async function idleWindow (procs: Array<{ kind: string, pid: number }>, idleS: number): Promise<{ measured: Measured[], fromUs: number, toUs: number }> {
  const c0 = procs.map(p => procCpuMs(p.pid))
  const t0 = performance.now()
  const fromUs = nowUs()
  await sleep(idleS * 1000)
  const toUs = nowUs()
  const wallS = (performance.now() - t0) / 1000
  return { measured: procs.map((p, i) => ({ kind: p.kind, pid: p.pid, msPerS: (procCpuMs(p.pid) - c0[i]) / wallS })), fromUs, toUs }
}

type WorkerCmd = { op: 'dial', peer: string } | { op: 'stop' }
type WorkerReply = { ok: true, id?: string } | { ok: false, error: string }

/** A training worker's node (bench/train-util.ts), doing nothing once linked. */
async function idleWorker (relayAddr: string): Promise<void> {
  const { node, transport } = await utilNode(relayAddr)
  const reply = (r: WorkerReply): void => { process.send?.(r) }
  process.on('message', (m: WorkerCmd) => {
    const run = async (): Promise<WorkerReply> => {
      if (m.op === 'dial') {
        for (let i = 1; ; i++) { // as bench:train's workers: a loaded machine misses a dial now and then
          try {
            await node.dial(multiaddr(`${relayAddr}/p2p-circuit/webrtc/p2p/${m.peer}`), { signal: AbortSignal.timeout(30_000) })
            return { ok: true }
          } catch (e) {
            if (i >= 3) throw e
          }
        }
      }
      await node.stop()
      reply({ ok: true })
      process.exit(0)
    }
    run().then(reply, (e: unknown) => { reply({ ok: false, error: (e as Error).stack ?? String(e) }) })
  })
  reply({ ok: true, id: transport.self })
}

async function workerConfig (o: Options): Promise<Measured[]> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const prof = o.profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', o.profDir]
  const peers: Array<{ id: string, child: ChildProcess, cmd: (c: WorkerCmd) => Promise<WorkerReply & { ok: true }> }> = []
  try {
    for (let i = 0; i < o.workers; i++) {
      const child = fork(fileURLToPath(import.meta.url), ['--role', 'idle-worker', '--relay', relayAddr], { execArgv: [...prof, '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const ipc = ipcPeer<WorkerCmd, WorkerReply>(child, 'idle worker')
      peers.push({ id: (await ipc.next()).id!, child, cmd: ipc.cmd })
    }
    for (let i = 0; i < peers.length; i++) for (let j = i + 1; j < peers.length; j++) await peers[i].cmd({ op: 'dial', peer: peers[j].id })
    await sleep(o.settleS * 1000)
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const w = await idleWindow(peers.map(p => ({ kind: 'worker', pid: p.child.pid! })), o.idleS)
    const c = process.cpuUsage(c0)
    windows.push({ config: 'worker', ...w })
    return [...w.measured, { kind: 'relay (bench process)', pid: process.pid, msPerS: (c.user + c.system) / 1000 / ((performance.now() - t0) / 1000) }]
  } finally {
    await stopPeers(peers)
    await relay.stop()
  }
}

async function startConfig (o: Options): Promise<Measured[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idle-relay-'))
  const { child } = await startTs('relay/main.ts', ['--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--api-rate-limit', '0'], /OpenAI-compatible API at (http:\/\/\S+)/, o.profDir)
  try {
    await sleep(o.settleS * 1000)
    const w = await idleWindow([{ kind: 'npm start (relay + API client + embedded peer)', pid: child.pid! }], o.idleS)
    windows.push({ config: 'start', ...w })
    return w.measured
  } finally {
    await stop(child)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

async function serverConfig (o: Options): Promise<Measured[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idle-relay-'))
  const children: ChildProcess[] = []
  try {
    const relay = await startTs('relay/main.ts', ['--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--no-api'], /page \+ \/health .* at (http:\/\/\S+)/, o.profDir)
    children.push(relay.child)
    for (let i = 0; i < o.servers; i++) {
      const s = await startTs('web/src/cli/bin.ts', ['serve', '--bootstrap', relay.match[1], '--ice-servers', 'none', '--model', 'models/byte-llama', '--model-id', 'default', '--device', 'cpu'], /"peer":/, o.profDir)
      children.push(s.child)
    }
    await sleep(o.settleS * 1000)
    const w = await idleWindow([{ kind: 'relay (--no-api)', pid: relay.child.pid! }, ...children.slice(1).map(c => ({ kind: 'server peer (webswarm serve)', pid: c.pid! }))], o.idleS)
    windows.push({ config: 'server', ...w })
    return w.measured
  } finally {
    for (const c of children.reverse()) await stop(c)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

/** The idle windows measured, for cutting the CPU profiles. */
const windows: Array<{ config: Config, measured: Measured[], fromUs: number, toUs: number }> = []

interface CpuProfile {
  nodes: Array<{ id: number, callFrame: { functionName: string, url: string } }>
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

/** Where a frame's code lives: an npm package, a file of ours, Node's internals or a V8 pseudo-frame. */
function area (url: string, fn: string): string {
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const src = url.indexOf('/web/src/')
  if (src >= 0) return url.slice(src + 1)
  const relay = url.indexOf('/relay/')
  if (relay >= 0) return url.slice(relay + 1)
  if (url.startsWith('node:')) return 'node:internals'
  return url === '' ? fn : url
}

/** Self time by area over [fromUs, toUs] of a profile, ms per s; idle samples left out. */
function profileAreas (p: CpuProfile, fromUs: number, toUs: number): Map<string, number> {
  const byId = new Map(p.nodes.map(n => [n.id, n.callFrame]))
  const out = new Map<string, number>()
  let t = p.startTime
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]
    const dt = p.timeDeltas[i + 1] ?? 0 // a sample's time runs until the next one
    if (t < fromUs || t >= toUs) continue
    const f = byId.get(p.samples[i])!
    if (f.functionName === '(idle)') continue
    const a = area(f.url, f.functionName)
    out.set(a, (out.get(a) ?? 0) + dt / 1000)
  }
  const s = (toUs - fromUs) / 1e6
  for (const [k, v] of out) out.set(k, v / s)
  return out
}

/** Prints each measured process's idle samples by area (top 12) from the profiles in `dir`. */
function attribute (dir: string): Record<string, Record<string, number>> {
  const files = readdirSync(dir).filter(f => f.endsWith('.cpuprofile'))
  const report: Record<string, Record<string, number>> = {}
  for (const w of windows) {
    for (const m of w.measured) {
      const file = files.find(f => f.split('.')[3] === String(m.pid))
      if (file === undefined) continue
      const areas = [...profileAreas(JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile, w.fromUs, w.toUs)].sort((a, b) => b[1] - a[1])
      const total = areas.reduce((a, [, v]) => a + v, 0)
      log(`\n${w.config} / ${m.kind} (pid ${m.pid}): ${m.msPerS.toFixed(1)} ms/s by /proc; profile ${total.toFixed(1)} ms/s (self time, ms/s):`)
      for (const [k, v] of areas.slice(0, 12)) log(`  ${v.toFixed(2).padStart(7)}  ${k}`)
      report[`${w.config}/${m.kind}/${m.pid}`] = Object.fromEntries(areas.slice(0, 12).map(([k, v]) => [k, Number(v.toFixed(2))]))
    }
  }
  return report
}

interface Options { configs: Config[], idleS: number, settleS: number, workers: number, servers: number, profDir?: string, out: string }

const round1 = (x: number): number => Math.round(x * 10) / 10
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }

/** The bench's entry point (bench/net.ts `--idle`). */
export async function idleBench (argv: string[]): Promise<void> {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      idle: { type: 'boolean' }, configs: { type: 'string', default: 'worker,start,server' }, 'idle-s': { type: 'string', default: '60' },
      'settle-s': { type: 'string', default: '10' }, workers: { type: 'string', default: '4' }, servers: { type: 'string', default: '2' },
      'cpu-prof': { type: 'string' }, out: { type: 'string', default: 'bench/results/net-idle.json' }
    }
  })
  const o: Options = {
    configs: a.configs.split(',') as Config[], idleS: Number(a['idle-s']), settleS: Number(a['settle-s']), workers: Number(a.workers),
    servers: Number(a.servers), out: a.out, ...(a['cpu-prof'] !== undefined ? { profDir: path.resolve(a['cpu-prof']) } : {})
  }
  for (const c of o.configs) if (!['worker', 'start', 'server'].includes(c)) throw new Error(`--configs: unknown configuration '${c}' (worker, start, server)`)
  if (o.profDir !== undefined) mkdirSync(o.profDir, { recursive: true })
  const loadBefore = os.loadavg()[0]
  const results: Record<string, Array<{ kind: string, ms_per_s: number }>> = {}
  for (const c of o.configs) {
    log(`${c}: starting (settle ${o.settleS} s, idle ${o.idleS} s)…`)
    const m = c === 'worker' ? await workerConfig(o) : c === 'start' ? await startConfig(o) : await serverConfig(o)
    results[c] = m.map(x => ({ kind: x.kind, ms_per_s: round1(x.msPerS) }))
    for (const x of m) log(`  ${x.kind}: ${x.msPerS.toFixed(1)} ms of CPU per s`)
  }
  const summary = Object.fromEntries(Object.entries(results).map(([c, m]) => {
    const kinds = [...new Set(m.map(x => x.kind))]
    return [c, Object.fromEntries(kinds.map(k => [k, round1(median(m.filter(x => x.kind === k).map(x => x.ms_per_s)))]))]
  }))
  const profile = o.profDir === undefined ? undefined : attribute(o.profDir)
  const out = {
    idle_cpu_ms_per_s: summary,
    processes: results,
    ...(profile === undefined ? {} : { profile_self_ms_per_s: profile, windows_us: windows.map(w => ({ config: w.config, from: w.fromUs, to: w.toUs, pids: w.measured.map(m => m.pid) })) }),
    command: `npm run bench:net -- --idle --configs ${o.configs.join(',')} --idle-s ${o.idleS} --settle-s ${o.settleS} --workers ${o.workers} --servers ${o.servers}`,
    date: new Date().toISOString(),
    load: [round1(loadBefore), round1(os.loadavg()[0])],
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}`
  }
  mkdirSync(path.dirname(o.out), { recursive: true })
  writeFileSync(o.out, JSON.stringify(out, null, 2) + '\n')
  console.log(JSON.stringify(summary))
}

// Entry point of a forked worker process.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: p } = parseArgs({ options: { role: { type: 'string' }, relay: { type: 'string' } } })
  if (p.role !== 'idle-worker') throw new Error('bench/net-idle.ts is run by bench/net.ts (npm run bench:net -- --idle)')
  idleWorker(p.relay ?? '').catch((e: unknown) => { log(`idle worker: ${(e as Error).stack ?? String(e)}`); process.exit(1) })
}
