/**
 * bench:train, part 4 — compute utilization: N DiLoCo workers, each in its own process (as real
 * peers are), over direct WebRTC connections through a local relay, train the bench's tiny model
 * with the run's codec, H and outer-update delay. Each worker times its inner steps (the
 * trainer's forward + backward + AdamW, nothing else) and the wall time of the whole run from its
 * first step to its last applied sync; utilization = Σ step time / wall time, averaged over the
 * workers. What is not in steps: waiting for a sync's result (READY, the all-reduce, a straggler),
 * the host-side codec and outer step, serving other members' parts, and whatever else the node's
 * event loop runs (libp2p: gossipsub, pings, identify). Workers load the corpus and build their
 * model first and start training together (the clock starts then).
 *
 * Where the rest goes (Linux: the JS thread's schedstat, on-CPU and run-queue wait): each worker
 * reports its JS thread's CPU time in steps, in starting syncs (Δ, error feedback, encode), in
 * applying them, and in all, the time it waited for a core, and its node's idle CPU per second
 * (measured over IDLE_MS before training, connected and doing nothing). Under CPU contention the
 * wall-time fraction follows the CPU share: a thread that is runnable all the time spends the
 * same fraction of its waits in each phase as of its CPU. This file is also the worker processes'
 * entry point (`--role util-peer`).
 *
 * With `thread` (the default since session 9) each worker's inner steps run on its trainer thread
 * (DiLoCoWorker `trainerThread`) and the process's main thread keeps the node, the all-reduce and
 * the codec: step time is then the trainer thread's own (its wall time in steps), and the CPU
 * figures add the trainer thread's (schedstat). Without it, the steps share the node's event loop
 * as before. Both report inner steps per second of wall time, the throughput beside the fraction.
 * With the thread, each worker also accounts for every millisecond of its trainer thread's wall
 * time (train-thread-times.ts: start, steps, step events, turns, waits for plans — the last
 * landing's apart —, rebases, fences, the end), and the result gives the steady-state figure
 * (less the last landing's wait and the end) beside the headline, and how far apart the workers'
 * clocks started (each starts its own after the same idle wait; their spread is a few ms).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { TextDataset, brownCorpus } from '../web/src/model/data.ts'
import { initModel } from '../web/src/model/model.ts'
import { createPeer, createRelay, type WebSwarmNode } from '../web/src/net/node.ts'
import { waitForReservation } from '../web/src/net/peers.ts'
import { Libp2pTransport } from '../web/src/swarm/transport/libp2p.ts'
import { AllReducePeer } from '../web/src/swarm/train/allreduce.ts'
import { codecOf, type CompressionSpec } from '../web/src/swarm/train/codec.ts'
import { TINY_MODEL } from '../web/src/swarm/train/run-board.ts'
import { spawnTrainerThread } from '../web/src/swarm/train/trainer-thread-node.ts'
import { DiLoCoWorker } from '../web/src/swarm/train/worker.ts'
import { ipcPeer, stopPeers } from './ipc.ts'
import { threadBreakdown, type ThreadBreakdown } from './train-thread-times.ts'

export interface UtilOptions {
  workers: number
  /** Inner steps per sync (H), syncs to run. */
  H: number
  syncs: number
  /** Tokens per sequence, sequences per step. */
  T: number
  B: number
  /** The model: TINY_MODEL with this width (MLP 2×) and depth. */
  hidden: number
  layers: number
  codec: CompressionSpec
  /** Delayed outer update over this many syncs (0: none). */
  delay: number
  /** Streaming DiLoCo fragments (worker.ts `fragments`). @default 1 */
  fragments?: number
  /** Inner steps on a trainer thread (else on the node's own thread). */
  thread: boolean
}

/** One worker's times over its run, ms (the CPU and wait figures: its JS thread; absent off Linux). */
export interface WorkerTimes {
  /** When its clock started (performance.timeOrigin + now, ms: comparable across the processes). */
  startAt: number
  wallMs: number
  stepMs: number
  /** Inner steps taken. */
  steps: number
  /** Starting syncs: θ_local read, Δ, error feedback and encode, the all-reduce's start. */
  launchMs: number
  /** Applying syncs: waiting for the result, the outer step, rebase, hash. */
  landMs: number
  cpu?: { stepMs: number, launchMs: number, landMs: number, allMs: number, waitMs: number, /** Idle node, ms of CPU per s. */ idleMsPerS: number }
  /** With `thread`: the trainer thread's wait at syncs for what to apply (wall), its CPU and run-queue wait (Linux), over the run, ms. */
  trainer?: { planWaitMs: number, cpuMs: number, waitMs: number }
  /** With `thread`: the trainer thread's wall time over the run, by what it did (ThreadBreakdown). */
  thread?: ThreadBreakdown
}

export interface UtilResult {
  /** Mean over workers of (time in inner steps) / (wall time). */
  utilization: number
  /** Mean over workers of inner steps per second of wall time. */
  stepsPerS: number
  perWorker: number[]
  /** Mean over workers of (time applying syncs: waiting for results, outer step, hash) / (wall time). */
  syncFraction: number
  /** Mean over workers of (time starting syncs) / (wall time). */
  launchFraction: number
  /**
   * Means over workers of the JS thread's CPU: in steps / all (what utilization would be on a
   * machine with no contention and nothing else to do), and its run-queue wait / wall time.
   * With `thread`: the trainer thread's CPU / (it + the main thread's), and the main thread's wait.
   */
  stepCpuShare?: number
  runQueueFraction?: number
  /** Mean over workers of an idle node's CPU (libp2p's background), ms per s of wall time. */
  idleCpuMsPerS?: number
  /** Mean over workers of their JS thread's CPU outside steps, syncs excluded (the event loop's other work) / all. */
  otherCpuShare?: number
  /** With `thread`, means over workers: the trainer thread's CPU / wall time (the share of a core it got), its run-queue wait / wall time. */
  trainerCpuOfWall?: number
  trainerRunQueueFraction?: number
  /** With `thread`: mean over workers of the trainer thread's wait at syncs for what to apply / wall time. */
  trainerPlanWaitFraction?: number
  /** With `thread`: means over workers of each ThreadBreakdown part / wall time (fenceWaitsMs left out). */
  threadFractions?: Record<Exclude<keyof ThreadBreakdown, 'fenceWaitsMs'>, number>
  /**
   * With `thread`: utilization with the last sync's landing left out, the steady state: mean over
   * workers of step time / (wall time − the last fence's wait for its plan − `endMs`). Beside the
   * headline, never instead of it.
   */
  steadyUtilization?: number
  /** The last worker's clock started this long after the first's, ms. */
  startSpreadMs: number
  syncs: number
  /** The slowest worker's wall time, s. */
  wallS: number
  workers: WorkerTimes[]
}

/** Where the worker processes write CPU profiles (BENCH_TRAIN_PEER_PROF; unset: none). */
const PROF_DIR = process.env.BENCH_TRAIN_PEER_PROF

/** How long each worker sits idle, connected, before training, to measure its node's background CPU, ms. */
const IDLE_MS = 3000

/** Direct WebRTC dial between worker processes: tries, and the timeout of each, ms. */
const DIAL_TRIES = 3
const DIAL_TIMEOUT_MS = 30_000

type Cmd =
  | { op: 'dial', peer: string }
  | { op: 'prepare', ids: string[], o: UtilOptions, seed: number }
  | { op: 'train' }
  | { op: 'stop' }
type Reply = { ok: true, id?: string, times?: WorkerTimes, hash?: string } | { ok: false, error: string }

function log (line: string): void { process.stderr.write(line + '\n') }

/** This process's JS thread: time on a CPU and waiting in the run queue, ms; undefined off Linux. */
function jsThread (): { cpuMs: number, waitMs: number } | undefined {
  try {
    const [cpu, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number)
    return { cpuMs: cpu / 1e6, waitMs: wait / 1e6 }
  } catch {
    return undefined
  }
}

/** Wall and JS-thread CPU time spent in one phase, summed over its calls. */
class Phase {
  wallMs = 0
  cpuMs = 0
  async time<T> (f: () => Promise<T>): Promise<T> {
    const t0 = performance.now()
    const c0 = jsThread()?.cpuMs ?? 0
    try { return await f() } finally {
      this.wallMs += performance.now() - t0
      this.cpuMs += (jsThread()?.cpuMs ?? 0) - c0
    }
  }
}

/** A worker's node and transport, joined to the relay with a reservation (also bench/net-idle.ts's `worker`). */
export async function utilNode (relayAddr: string): Promise<{ node: WebSwarmNode, transport: Libp2pTransport }> {
  const node = await createPeer({ iceServers: [], discoveryIntervalMs: 600_000 })
  await node.dial(multiaddr(relayAddr))
  await waitForReservation(node)
  return { node, transport: new Libp2pTransport(node, { relayAddr }) }
}

/** One worker process: joins the relay, dials the others when told, trains when told. */
async function utilPeer (relayAddr: string): Promise<void> {
  const { node, transport: t } = await utilNode(relayAddr)
  const reply = (r: Reply): void => { process.send?.(r) }
  let ar: AllReducePeer | undefined
  let ready: { w: DiLoCoWorker, o: UtilOptions, step: Phase, launch: Phase, land: Phase } | undefined
  process.on('message', (m: Cmd) => {
    const run = async (): Promise<Reply> => {
      switch (m.op) {
        case 'dial':
          for (let i = 1; ; i++) {
            try {
              await node.dial(multiaddr(`${relayAddr}/p2p-circuit/webrtc/p2p/${m.peer}`), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
              return { ok: true }
            } catch (e) {
              if (i >= DIAL_TRIES) throw e
            }
          }
        case 'prepare': { // everything but the steps, so that all workers start training together
          const o = m.o
          const config = parseConfig({ ...TINY_MODEL, hidden_size: o.hidden, intermediate_size: 2 * o.hidden, num_hidden_layers: o.layers })
          const { train } = new TextDataset(await brownCorpus()).split(0.05)
          ar = new AllReducePeer(t, {
            run: 'bench-util', directory: { expected: () => m.ids }, readyWindowMs: 120_000, coordinatorTimeoutMs: 240_000, partTimeoutMs: 120_000,
            ...(o.codec.kind === 'q8' ? { block: o.codec.block } : {}), codec: codecOf(o.codec)
          })
          const w = new DiLoCoWorker(initModel(config, cpu, m.seed), train, ar, {
            innerSteps: o.H, seqLen: o.T, batchSize: o.B, innerLr: 3e-3, warmupSteps: 50, outer: { lr: 0.7, momentum: 0.5 },
            delayOuter: o.delay === 0 ? false : o.delay, fragments: o.fragments ?? 1, dataSeed: m.ids.indexOf(t.self) + 1, ...(o.codec.kind === 'q8' ? { block: o.codec.block } : {}),
            ...(o.thread ? { trainerThread: spawnTrainerThread } : {})
          })
          await w.initFromModel()
          await w.startTrainer()
          // Only the trainer's own step is timed (not the event-loop yield after it, in which
          // this worker serves the all-reduce). On a trainer thread, the thread times its steps.
          const phases = { step: new Phase(), launch: new Phase(), land: new Phase() }
          const trainer = w.trainer
          if (trainer !== undefined) {
            const step = trainer.trainStep.bind(trainer)
            trainer.trainStep = async (...args: Parameters<typeof step>) => await phases.step.time(async () => await step(...args))
          }
          // Starting syncs (Δ, error feedback, encode) and applying them (waiting for the
          // all-reduce's result, the outer step, the state hash): the non-step time the syncs cause.
          // (On a trainer thread a landing planned ahead is recorded by landPlanned, timed as land.)
          const lw = w as unknown as { launch: () => Promise<void>, land: () => Promise<void>, landPlanned: (step: number) => Promise<void> }
          for (const name of ['launch', 'land'] as const) {
            const f = lw[name].bind(w)
            lw[name] = async () => { await phases[name].time(f) }
          }
          const landPlanned = lw.landPlanned.bind(w)
          lw.landPlanned = async (s: number) => { await phases.land.time(async () => { await landPlanned(s) }) }
          ready = { w, o, ...phases }
          return { ok: true }
        }
        case 'train': {
          if (ready === undefined) throw new Error('train before prepare')
          const i0 = jsThread()
          const w0 = performance.now()
          await new Promise(resolve => setTimeout(resolve, IDLE_MS))
          const i1 = jsThread()
          const idleMsPerS = i0 === undefined || i1 === undefined ? NaN : (i1.cpuMs - i0.cpuMs) / (performance.now() - w0) * 1000
          const th0 = await ready.w.trainerStats()
          const t0 = performance.now()
          const t0Abs = performance.timeOrigin + t0
          const s0 = jsThread()
          const step0 = ready.w.step
          await ready.w.runSyncs(ready.o.syncs, undefined, { last: true })
          const t1 = performance.now()
          const wallMs = t1 - t0
          const s1 = jsThread()
          const th1 = await ready.w.trainerStats()
          await ready.w.dispose()
          const { step, launch, land } = ready
          const trainer = th0?.cpuMs !== undefined && th1?.cpuMs !== undefined ? { planWaitMs: th1.planWaitMs - th0.planWaitMs, cpuMs: th1.cpuMs - th0.cpuMs, waitMs: th1.waitMs! - th0.waitMs! } : undefined
          const times: WorkerTimes = {
            startAt: t0Abs, wallMs, stepMs: th0 !== undefined && th1 !== undefined ? th1.stepMs - th0.stepMs : step.wallMs, steps: ready.w.step - step0, launchMs: launch.wallMs, landMs: land.wallMs,
            ...(s0 === undefined || s1 === undefined ? {} : { cpu: { stepMs: step.cpuMs, launchMs: launch.cpuMs, landMs: land.cpuMs, allMs: s1.cpuMs - s0.cpuMs, waitMs: s1.waitMs - s0.waitMs, idleMsPerS } }),
            ...(trainer === undefined ? {} : { trainer }),
            ...(th0 === undefined || th1 === undefined ? {} : { thread: threadBreakdown(th0, th1, t0Abs, performance.timeOrigin + t1) })
          }
          return { ok: true, times, hash: ready.w.lastHash }
        }
        case 'stop':
          ar?.stop()
          await node.stop()
          reply({ ok: true })
          process.exit(0)
      }
    }
    run().then(reply, (e: unknown) => { reply({ ok: false, error: (e as Error).stack ?? String(e) }) })
  })
  reply({ ok: true, id: t.self })
}

interface Proc { id: string, cmd: (c: Cmd) => Promise<Reply & { ok: true }>, child: ChildProcess }

async function spawnPeer (relayAddr: string): Promise<Proc> {
  const child = fork(fileURLToPath(import.meta.url), ['--role', 'util-peer', '--relay', relayAddr], { execArgv: ['--import', 'tsx', ...(PROF_DIR !== undefined ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ipc = ipcPeer<Cmd, Reply>(child, 'util peer')
  const hello = await ipc.next()
  return { id: hello.id!, child, cmd: ipc.cmd }
}

/** Runs the measure: N worker processes, every pair dialled first, then `syncs` syncs together. */
export async function utilization (o: UtilOptions): Promise<UtilResult> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const peers: Proc[] = []
  try {
    for (let i = 0; i < o.workers; i++) peers.push(await spawnPeer(relayAddr))
    for (let i = 0; i < peers.length; i++) for (let j = i + 1; j < peers.length; j++) await peers[i].cmd({ op: 'dial', peer: peers[j].id })
    const ids = peers.map(p => p.id).sort()
    await Promise.all(peers.map(async p => await p.cmd({ op: 'prepare', ids, o, seed: 1 })))
    const runs = await Promise.all(peers.map(async p => await p.cmd({ op: 'train' })))
    const hashes = new Set(runs.map(r => r.hash))
    if (hashes.size !== 1) throw new Error(`replicas diverged: ${[...hashes].join(', ')}`)
    const workers = runs.map(r => r.times!)
    const mean = (f: (t: WorkerTimes) => number): number => workers.reduce((a, t) => a + f(t), 0) / workers.length
    const perWorker = workers.map(t => t.stepMs / t.wallMs)
    // On a trainer thread the steps' CPU is that thread's (all of it: its only other work is
    // taking θ_local at a sync's step), and the process's JS CPU is both threads'.
    const stepCpu = (t: WorkerTimes): number => t.trainer?.cpuMs ?? t.cpu!.stepMs
    const allCpu = (t: WorkerTimes): number => t.cpu!.allMs + (t.trainer?.cpuMs ?? 0)
    const cpu = workers.every(t => t.cpu !== undefined)
      ? {
          stepCpuShare: mean(t => stepCpu(t) / allCpu(t)),
          otherCpuShare: mean(t => (allCpu(t) - stepCpu(t) - t.cpu!.launchMs - t.cpu!.landMs) / allCpu(t)),
          runQueueFraction: mean(t => t.cpu!.waitMs / t.wallMs),
          idleCpuMsPerS: mean(t => t.cpu!.idleMsPerS)
        }
      : {}
    const trainer = workers.every(t => t.trainer !== undefined)
      ? { trainerCpuOfWall: mean(t => t.trainer!.cpuMs / t.wallMs), trainerRunQueueFraction: mean(t => t.trainer!.waitMs / t.wallMs), trainerPlanWaitFraction: mean(t => t.trainer!.planWaitMs / t.wallMs) }
      : {}
    const threaded = workers.every(t => t.thread !== undefined)
      ? {
          threadFractions: Object.fromEntries((Object.keys(workers[0].thread!) as Array<keyof ThreadBreakdown>).filter(k => k !== 'fenceWaitsMs').map(k => [k, mean(t => (t.thread![k] as number) / t.wallMs)])) as UtilResult['threadFractions'],
          steadyUtilization: mean(t => t.stepMs / (t.wallMs - t.thread!.lastPlanWaitMs - t.thread!.endMs))
        }
      : {}
    return {
      utilization: mean(t => t.stepMs / t.wallMs), ...threaded, stepsPerS: mean(t => t.steps / (t.wallMs / 1000)), perWorker, ...trainer, syncFraction: mean(t => t.landMs / t.wallMs), launchFraction: mean(t => t.launchMs / t.wallMs),
      ...cpu, startSpreadMs: Math.max(...workers.map(t => t.startAt)) - Math.min(...workers.map(t => t.startAt)), syncs: o.syncs, wallS: Math.max(...workers.map(t => t.wallMs)) / 1000, workers
    }
  } finally {
    await stopPeers(peers)
    await relay.stop()
  }
}

// Entry point of a forked worker process.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: p } = parseArgs({ options: { role: { type: 'string' }, relay: { type: 'string' } } })
  if (p.role !== 'util-peer') throw new Error('bench/train-util.ts is run by bench/train.ts (npm run bench:train)')
  utilPeer(p.relay ?? '').catch((e: unknown) => { log(`util peer: ${(e as Error).stack ?? String(e)}`); process.exit(1) })
}
