/**
 * bench:train, part 3 — all-reduce goodput vs raw stream throughput between two Node peers, each
 * in its own process (as real peers are), over a direct WebRTC connection: raw one-way, raw both
 * ways at once (the all-reduce's traffic pattern), and the all-reduce's bus bandwidth (NCCL's
 * busbw). This file is also the peer processes' entry point (`--role goodput-peer`). Both peers
 * run a full GC before every measure, and each trial line gives each peer's CPU during it (JS
 * thread / whole process). BENCH_TRAIN_PEER_PROF=DIR writes the peer processes' CPU profiles and
 * DIR/spans.txt (each command's span on the profiles' clock).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { q8Bytes } from '../web/src/gpu/cpu/quant.ts'
import { createPeer, createRelay } from '../web/src/net/node.ts'
import { waitForReservation } from '../web/src/net/peers.ts'
import { Libp2pTransport } from '../web/src/swarm/transport/libp2p.ts'
import { AllReducePeer, type ReduceBuffers } from '../web/src/swarm/train/allreduce.ts'
import { normQ8, quantizeQ8Fast } from '../web/src/swarm/train/q8fast.ts'
import { ipcPeer, stopPeers } from './ipc.ts'

/** The goodput measure's settings (bench/train.ts flags). */
export interface GoodputOptions {
  /** q8 payload per member, MiB. */
  mb: number
  /** All-reduce tuning passed to the peers. */
  partElements?: number
  windowParts?: number
}

export type GoodputResult = Awaited<ReturnType<typeof goodput>>

/** Where the peer processes write CPU profiles and command spans (unset: no profiling). */
const PROF_DIR = process.env.BENCH_TRAIN_PEER_PROF

function log (line: string): void { process.stderr.write(line + '\n') }

/** Protocol of the raw-throughput sink: replies 1 byte to any request (the bytes in are the measure). */
const SINK_PROTOCOL = '/webswarm/bench-sink/1.0.0'
/** Timeout of one measured transfer, ms (8 MiB at ≥ 0.2 MB/s on a loaded machine). */
const TRANSFER_TIMEOUT_MS = 120_000
/** Trials per measure; the best is kept (other jobs share the machine's 2 cores). */
const GOODPUT_TRIALS = 5
/** Direct WebRTC dial between the peer processes: tries, and the timeout of each, ms. */
const DIAL_TRIES = 3
const DIAL_TIMEOUT_MS = 30_000

/** Commands the benchmark sends to a goodput peer process, and its answers (IPC, JSON). */
type PeerCmd =
  | { op: 'dial', peer: string }
  | { op: 'send', peer: string, bytes: number }
  | { op: 'prepare', n: number }
  | { op: 'gc' }
  | { op: 'allreduce', ids: string[], round: number, n: number }
  | { op: 'stop' }
type PeerReply = { ok: true, ms?: number, cpuMs?: number, jsCpuMs?: number, id?: string, channels?: number } | { ok: false, error: string }

/**
 * One peer of the goodput measure, in its own process (as real peers are: each has its own JS
 * thread). Joins the relay, then runs the parent's commands; every reply carries the time the
 * command took in this process, ms.
 */
async function goodputPeer (relayAddr: string, tuning: { partElements?: number, windowParts?: number }): Promise<void> {
  const node = await createPeer({ iceServers: [], discoveryIntervalMs: 600_000 })
  await node.dial(multiaddr(relayAddr))
  await waitForReservation(node)
  const t = new Libp2pTransport(node, { relayAddr })
  t.handle(SINK_PROTOCOL, async () => ({ tensors: [{ name: 'ack', dtype: 'u8', shape: [1], data: new Uint8Array(1) }] }))
  let ar: AllReducePeer | undefined
  let ids: string[] = []
  let input: { n: number, q: Uint8Array, norm: number, into: ReduceBuffers } | undefined
  const reply = (r: PeerReply): void => { process.send?.(r) }
  process.on('message', (m: PeerCmd) => {
    const t0 = performance.now()
    const c0 = process.cpuUsage()
    const j0 = process.threadCpuUsage()
    const h0 = process.hrtime.bigint()
    const run = async (): Promise<void> => {
      switch (m.op) {
        case 'dial':
          for (let i = 1; ; i++) { // WebRTC set-up through the relay sometimes fails on a loaded machine
            try {
              await node.dial(multiaddr(`${relayAddr}/p2p-circuit/webrtc/p2p/${m.peer}`), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
              break
            } catch (e) {
              if (i >= DIAL_TRIES) throw e
            }
          }
          break
        case 'send':
          await t.request(m.peer, SINK_PROTOCOL, { tensors: [{ name: 'raw', dtype: 'u8', shape: [m.bytes], data: new Uint8Array(m.bytes).fill(7) }] }, { timeoutMs: TRANSFER_TIMEOUT_MS })
          break
        case 'gc': // a full collection between measures, so none pays for the garbage of the one before
          (globalThis as { gc?: () => void }).gc?.()
          break
        case 'prepare': { // the worker's own quantisation, before (and outside) the timed all-reduce
          const x = new Float32Array(m.n)
          for (let i = 0; i < m.n; i++) x[i] = Math.sin(i + t.self.length)
          const q = quantizeQ8Fast(x, m.n, 64)
          // receive buffers reused across rounds, as a worker reuses its per-fragment ones; the
          // norm a worker's ErrorFeedback.compress returns with q (the all-reduce sends it)
          input = { n: m.n, q, norm: normQ8(q, m.n, 64), into: { mean: new Float32Array(m.n), qMean: new Uint8Array(q.byteLength) } }
          break
        }
        case 'allreduce': {
          if (ar === undefined) {
            ids = m.ids
            ar = new AllReducePeer(t, {
              run: 'bench', directory: { expected: () => ids }, readyWindowMs: 10_000, coordinatorTimeoutMs: 60_000, partTimeoutMs: 60_000,
              ...tuning
            })
          }
          if (input?.n !== m.n) throw new Error(`no input of ${m.n} elements prepared`)
          await ar.reduce(m.round, input.q, m.n, input.into, input.norm)
          break
        }
        case 'stop':
          ar?.stop()
          await node.stop()
          reply({ ok: true })
          process.exit(0)
      }
      const c = process.cpuUsage(c0) // this process's CPU (every thread: JS, GC, WebRTC) during the command
      const j = process.threadCpuUsage(j0) // the JS thread's alone (what the peer's own work competes for)
      // With profiles on, each command's span (µs of the monotonic clock the profile's timestamps use), to cut the profile by command
      if (PROF_DIR !== undefined) appendFileSync(join(PROF_DIR, 'spans.txt'), `${process.pid} ${m.op} ${h0 / 1000n} ${process.hrtime.bigint() / 1000n}\n`)
      reply({ ok: true, ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1e3, jsCpuMs: (j.user + j.system) / 1e3, id: t.self, channels: t.channelsOpened })
    }
    run().catch((e: unknown) => { reply({ ok: false, error: (e as Error).stack ?? String(e) }) })
  })
  reply({ ok: true, id: t.self })
}

/** A goodput peer process and a way to send it commands. */
interface PeerProc { id: string, cmd: (c: PeerCmd) => Promise<PeerReply & { ok: true }>, child: ChildProcess }

async function spawnPeer (relayAddr: string, o: GoodputOptions): Promise<PeerProc> {
  const flags = [...(o.partElements !== undefined ? ['--part-elements', String(o.partElements)] : []), ...(o.windowParts !== undefined ? ['--window-parts', String(o.windowParts)] : [])]
  const child = fork(fileURLToPath(import.meta.url), ['--role', 'goodput-peer', '--relay', relayAddr, ...flags], { execArgv: ['--import', 'tsx', '--expose-gc', ...(PROF_DIR !== undefined ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ipc = ipcPeer<PeerCmd, PeerReply>(child, 'goodput peer')
  const hello = await ipc.next()
  return { id: hello.id!, child, cmd: ipc.cmd }
}

/**
 * Goodput between two Node peers, each in its own process, over a direct WebRTC connection.
 *  - raw one-way: one request of S bytes A → B (reply 1 byte);
 *  - raw both ways: A → B and B → A at once, S bytes each (the all-reduce's traffic pattern);
 *  - all-reduce of a vector whose q8 is S bytes: bus bandwidth 2·(N−1)/N · S / t (NCCL's busbw:
 *    the bytes each member must move per direction in an optimal all-reduce, per second).
 * Each is the best of GOODPUT_TRIALS; a pair of commands is timed by the slower peer.
 */
export async function goodput (o: GoodputOptions): Promise<{ rawOneWayMbS: number, rawBothMbS: number, allreduceMbS: number, channels: number }> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const peers: PeerProc[] = []
  try {
    peers.push(await spawnPeer(relayAddr, o), await spawnPeer(relayAddr, o))
    const [A, B] = peers
    await A.cmd({ op: 'dial', peer: B.id })
    const S = o.mb * 1024 * 1024
    /** Wall time of a pair of commands (the slower peer's) and each peer's CPU time during it. */
    const both = async (ca: PeerCmd, cb: PeerCmd): Promise<{ ms: number, cpu: string }> => {
      const [ra, rb] = await Promise.all([A.cmd(ca), B.cmd(cb)])
      return { ms: Math.max(ra.ms!, rb.ms!), cpu: `${ra.jsCpuMs!.toFixed(0)}/${rb.jsCpuMs!.toFixed(0)} JS, ${ra.cpuMs!.toFixed(0)}/${rb.cpuMs!.toFixed(0)} process` }
    }
    let oneWay = Infinity
    let bothWays = Infinity
    let ar = Infinity
    const n = Math.floor(S / (4 + 64)) * 64
    const M = 2 // members
    // Both inputs are ready before any all-reduce starts: otherwise the first peer's time would
    // include waiting for the other's READY while it still builds its input.
    await Promise.all([A.cmd({ op: 'prepare', n }), B.cmd({ op: 'prepare', n })])
    const gc = async (): Promise<void> => { await Promise.all([A.cmd({ op: 'gc' }), B.cmd({ op: 'gc' })]) }
    for (let i = 0; i < GOODPUT_TRIALS; i++) { // interleaved, so load changes hit every measure alike
      await gc()
      const o = (await A.cmd({ op: 'send', peer: B.id, bytes: S })).ms!
      await gc()
      const b = await both({ op: 'send', peer: B.id, bytes: S }, { op: 'send', peer: A.id, bytes: S })
      await gc()
      const r = await both({ op: 'allreduce', ids: [A.id, B.id], round: i, n }, { op: 'allreduce', ids: [A.id, B.id], round: i, n })
      oneWay = Math.min(oneWay, o); bothWays = Math.min(bothWays, b.ms); ar = Math.min(ar, r.ms)
      log(`  goodput trial ${i}: one-way ${(S / 1e3 / o).toFixed(2)} MB/s, both ways ${(S / 1e3 / b.ms).toFixed(2)} MB/s (${b.ms.toFixed(0)} ms; CPU ms per peer ${b.cpu}), all-reduce ${(2 * (M - 1) / M * q8Bytes(n, 64) / 1e3 / r.ms).toFixed(2)} MB/s (${r.ms.toFixed(0)} ms; CPU ${r.cpu})`)
    }
    const channels = (await A.cmd({ op: 'dial', peer: B.id })).channels!
    return { rawOneWayMbS: S / 1e3 / oneWay, rawBothMbS: S / 1e3 / bothWays, allreduceMbS: 2 * (M - 1) / M * q8Bytes(n, 64) / 1e3 / ar, channels }
  } finally {
    await stopPeers(peers)
    await relay.stop()
  }
}

// Entry point of a forked peer process.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: p } = parseArgs({ options: { role: { type: 'string' }, relay: { type: 'string' }, 'part-elements': { type: 'string' }, 'window-parts': { type: 'string' } } })
  if (p.role !== 'goodput-peer') throw new Error('bench/train-goodput.ts is run by bench/train.ts (npm run bench:train)')
  goodputPeer(p.relay ?? '', {
    ...(p['part-elements'] !== undefined ? { partElements: Number(p['part-elements']) } : {}),
    ...(p['window-parts'] !== undefined ? { windowParts: Number(p['window-parts']) } : {})
  }).catch((e: unknown) => { process.stderr.write(`goodput peer: ${(e as Error).stack ?? String(e)}\n`); process.exit(1) })
}
