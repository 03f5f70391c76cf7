/**
 * `npm run bench:train [-- --device cpu|webgpu --workers 4 --inner-steps 150 --rounds 4 --seeds 1,2
 *   --lrs 3e-3,6e-3 --outer 0.7:0.9,1:0 --warmup 50 --goodput-mb 8 --skip-loss --skip-goodput]`
 *
 * 1. Bytes on the wire per worker per inner step: DiLoCo (H inner steps, q8 pseudo-gradients,
 *    measured: every allreduce message a worker sent) vs data-parallel training (an fp32 gradient
 *    ring all-reduce every step: 2·(N−1)/N·4·P bytes sent per worker per step, the textbook cost).
 * 2. Eval loss after the same tokens: N-worker DiLoCo (batch 1 each) vs one worker with an N×
 *    batch, the same steps, the same inner AdamW (warm-up, clipping, weight decay), on a tiny
 *    byte-level Llama and the Brown corpus. Every inner lr of the grid runs on both sides (and
 *    every outer lr:momentum on DiLoCo's) for every seed; each side keeps its best mean loss on
 *    the *tuning* windows and reports its mean loss on the disjoint *test* windows.
 * 3. All-reduce goodput vs raw stream throughput between two Node peers, each in its own process
 *    (as real peers are), over a direct WebRTC connection: raw one-way, raw both ways at once
 *    (the all-reduce's traffic pattern), and the all-reduce's bus bandwidth (NCCL's busbw).
 * Writes bench/results/train.json {"bytes_ratio","loss_ratio","allreduce_goodput_ratio","device"}
 * (only when both parts ran). BENCH_TRAIN_PEER_PROF=DIR writes the peer processes' CPU profiles.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { q8Bytes } from '../web/src/gpu/cpu/quant.ts'
import { quantizeQ8Fast } from '../web/src/swarm/train/q8fast.ts'
import type { Backend } from '../web/src/gpu/backend.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../web/src/model/data.ts'
import { initModel } from '../web/src/model/model.ts'
import { evaluateLoss, Trainer } from '../web/src/model/train.ts'
import { createPeer, createRelay, type WebSwarmNode } from '../web/src/net/node.ts'
import { waitForReservation } from '../web/src/net/peers.ts'
import { MemoryNetwork } from '../web/src/swarm/transport/index.ts'
import { Libp2pTransport } from '../web/src/swarm/transport/libp2p.ts'
import { AllReducePeer } from '../web/src/swarm/train/allreduce.ts'
import { TINY_MODEL } from '../web/src/swarm/train/run.ts'
import { DiLoCoWorker } from '../web/src/swarm/train/worker.ts'

const { values: a } = parseArgs({
  options: {
    device: { type: 'string', default: 'cpu' },
    workers: { type: 'string', default: '4' },
    'inner-steps': { type: 'string', default: '150' },
    rounds: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '32' },
    lrs: { type: 'string', default: '3e-3,6e-3' },
    seeds: { type: 'string', default: '1,2' },
    warmup: { type: 'string', default: '50' },
    outer: { type: 'string', default: '0.7:0.9,1:0' },
    'goodput-mb': { type: 'string', default: '8' },
    'skip-goodput': { type: 'boolean', default: false },
    'skip-loss': { type: 'boolean', default: false },
    'part-elements': { type: 'string' },
    'window-parts': { type: 'string' },
    role: { type: 'string', default: 'bench' },
    relay: { type: 'string' }
  }
})
const N = Number(a.workers)
const H = Number(a['inner-steps'])
const R = Number(a.rounds)
const T = Number(a['seq-len'])
/** Inner AdamW lr grid, run on both sides (each keeps its best on the tuning windows). */
const LRS = (a.lrs ?? '').split(',').map(Number)
const SEEDS = (a.seeds ?? '').split(',').map(Number)
const WARMUP = Number(a.warmup)
/** Outer (lr:momentum) grid, DiLoCo only; with the inner lr, chosen on the tuning windows. */
const OUTERS = (a.outer ?? '').split(',').map((x) => { const [lr, momentum] = x.split(':').map(Number); return { lr, momentum } })
/** Data seeds of seed s are DATA_SEED_STRIDE·s + (worker index + 1), or + BASELINE_DATA_SEED for the baseline. */
const DATA_SEED_STRIDE = 100
const BASELINE_DATA_SEED = 77
/** Held-out windows for tuning and, disjoint from them, for the reported test loss. */
const EVAL_WINDOWS = 64

async function backend (): Promise<Backend> {
  if (a.device === 'cpu') return (await import('../web/src/gpu/cpu-backend.ts')).cpu
  if (a.device !== 'webgpu') throw new Error(`--device must be cpu or webgpu, got ${a.device}`)
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

function log (line: string): void { process.stderr.write(line + '\n') }

interface LossRun { tune: number, test: number, bytesPerStep: number }

/** One N-worker DiLoCo run (in-process workers over MemoryNetwork): eval losses and bytes sent. */
async function dilocoRun (be: Backend, train: TextDataset, tuneW: Window[], testW: Window[], seed: number, lr: number, outer: { lr: number, momentum: number }): Promise<LossRun & { P: number }> {
  const config = parseConfig(TINY_MODEL)
  const net = new MemoryNetwork({ seed })
  const ids = Array.from({ length: N }, (_, i) => `worker-${i}`)
  const dir = { expected: () => ids }
  const workers = ids.map((id, i) => {
    // All workers share this process's one thread, so they reach a sync minutes apart: the
    // ready window is widened so none is left out (in a real swarm each has its own device).
    const ar = new AllReducePeer(net.endpoint(id), { run: 'bench', directory: dir, readyWindowMs: 600_000, coordinatorTimeoutMs: 1_200_000, partTimeoutMs: 120_000 })
    return new DiLoCoWorker(initModel(config, be, seed), train, ar, { innerSteps: H, seqLen: T, innerLr: lr, warmupSteps: WARMUP, dataSeed: DATA_SEED_STRIDE * seed + i + 1, outer }, {})
  })
  for (const w of workers) await w.initFromModel()
  await Promise.all(workers.map(async w => { await w.runSyncs(R) }))
  const hashes = new Set(workers.map(w => w.lastHash))
  if (hashes.size !== 1) throw new Error(`replicas diverged: ${[...hashes].join(', ')}`)
  const tune = await workers[0].evalGlobal(tuneW)
  const test = await workers[0].evalGlobal(testW)
  const P = workers[0].layout.total
  const bytesPerStep = workers.map(w => w.allreduce.bytesSent).reduce((x, y) => x + y, 0) / N / (R * H)
  for (const w of workers) { w.allreduce.stop(); w.dispose() }
  return { tune, test, bytesPerStep, P }
}

/** The baseline: one worker, N× batch, the same steps (so the same tokens), the same inner optimizer. */
async function baselineRun (be: Backend, train: TextDataset, tuneW: Window[], testW: Window[], seed: number, lr: number): Promise<LossRun> {
  const model = initModel(parseConfig(TINY_MODEL), be, seed)
  const tr = new Trainer(model, { lr, warmupSteps: WARMUP, totalSteps: Number.MAX_SAFE_INTEGER, minLr: lr }, {}, { maxGradNorm: 1 })
  const it = train.windows(T, DATA_SEED_STRIDE * seed + BASELINE_DATA_SEED)
  for (let s = 0; s < R * H; s++) await tr.trainStep(Array.from({ length: N }, () => it.next().value as Window))
  const tune = await evaluateLoss(model, tuneW)
  const test = await evaluateLoss(model, testW)
  tr.dispose(); model.dispose()
  return { tune, test, bytesPerStep: NaN }
}

const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length

/**
 * Eval loss after the same tokens, tuned fairly: every inner lr of the grid is run on both sides
 * for every seed; each side keeps the lr with the lowest mean loss on the *tuning* windows, and
 * its mean loss on the disjoint *test* windows is reported (the test windows choose nothing).
 */
async function lossAndBytes (be: Backend, train: TextDataset, tuneW: Window[], testW: Window[]): Promise<{ diloco: number, baseline: number, bytesPerStep: number, dpBytesPerStep: number, P: number, detail: Record<string, unknown> }> {
  const base = new Map<number, LossRun[]>(LRS.map(lr => [lr, []]))
  const grid: Array<{ lr: number, outer: { lr: number, momentum: number }, d: LossRun[] }> = LRS.flatMap(lr => OUTERS.map(outer => ({ lr, outer, d: [] })))
  let P = 0
  const t0 = performance.now()
  for (const lr of LRS) {
    for (const seed of SEEDS) {
      const b = await baselineRun(be, train, tuneW, testW, seed, lr)
      base.get(lr)!.push(b)
      log(`  lr ${lr} seed ${seed}: baseline tune ${b.tune.toFixed(4)} test ${b.test.toFixed(4)}  (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
      for (const g of grid.filter(x => x.lr === lr)) {
        const d = await dilocoRun(be, train, tuneW, testW, seed, lr, g.outer)
        P = d.P
        g.d.push(d)
        log(`  lr ${lr} seed ${seed} outer ${g.outer.lr}/${g.outer.momentum}: DiLoCo tune ${d.tune.toFixed(4)} test ${d.test.toFixed(4)}  (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
      }
    }
  }
  const pick = <X extends { tune: number }>(xs: X[]): X => [...xs].sort((x, y) => x.tune - y.tune)[0]
  const bd = pick(grid.map(g => ({ lr: g.lr, outer: g.outer, tune: mean(g.d.map(r => r.tune)), test: mean(g.d.map(r => r.test)) })))
  const bb = pick(LRS.map(lr => ({ lr, tune: mean(base.get(lr)!.map(r => r.tune)), test: mean(base.get(lr)!.map(r => r.test)) })))
  const bytesPerStep = mean(grid.flatMap(g => g.d.map(r => r.bytesPerStep)))
  const dp = 2 * (N - 1) / N * 4 * P
  return {
    diloco: bd.test, baseline: bb.test, bytesPerStep, dpBytesPerStep: dp, P,
    detail: {
      workers: N, inner_steps: H, rounds: R, seq_len: T, warmup_steps: WARMUP, seeds: SEEDS, inner_lr_grid: LRS,
      outer_grid: OUTERS.map(o => `${o.lr}:${o.momentum}`), params: P,
      diloco_inner_lr: bd.lr, diloco_outer: `${bd.outer.lr}:${bd.outer.momentum}`, baseline_inner_lr: bb.lr,
      diloco_bytes_per_worker_step: Number(bytesPerStep.toFixed(1)), dp_fp32_bytes_per_worker_step: Math.round(dp),
      diloco_test_loss: Number(bd.test.toFixed(4)), baseline_test_loss: Number(bb.test.toFixed(4)),
      // [tune, test] per seed
      diloco_runs: grid.map(g => ({ lr: g.lr, outer: `${g.outer.lr}:${g.outer.momentum}`, runs: g.d.map(r => [Number(r.tune.toFixed(4)), Number(r.test.toFixed(4))]) })),
      baseline_runs: LRS.map(lr => ({ lr, runs: base.get(lr)!.map(r => [Number(r.tune.toFixed(4)), Number(r.test.toFixed(4))]) }))
    }
  }
}

/** Protocol of the raw-throughput sink: replies 1 byte to any request (the bytes in are the measure). */
const SINK_PROTOCOL = '/webswarm/bench-sink/1.0.0'
/** Timeout of one measured transfer, ms (8 MiB at ≥ 0.2 MB/s on a loaded machine). */
const TRANSFER_TIMEOUT_MS = 120_000
/** Trials per measure; the best is kept (other jobs share the machine's 2 cores). */
const GOODPUT_TRIALS = 5
/** Direct WebRTC dial between the peer processes: tries, and the timeout of each, ms. */
const DIAL_TRIES = 3
const DIAL_TIMEOUT_MS = 30_000
/** How long a peer process may take to exit after 'stop', ms. */
const PEER_EXIT_MS = 10_000

/** Commands the benchmark sends to a goodput peer process, and its answers (IPC, JSON). */
type PeerCmd =
  | { op: 'dial', peer: string }
  | { op: 'send', peer: string, bytes: number }
  | { op: 'prepare', n: number }
  | { op: 'allreduce', ids: string[], round: number, n: number }
  | { op: 'stop' }
type PeerReply = { ok: true, ms?: number, id?: string, channels?: number } | { ok: false, error: string }

/**
 * One peer of the goodput measure, in its own process (as real peers are: each has its own JS
 * thread). Joins the relay, then runs the parent's commands; every reply carries the time the
 * command took in this process, ms.
 */
async function goodputPeer (relayAddr: string): Promise<void> {
  const node = await createPeer({ iceServers: [], discoveryIntervalMs: 600_000 })
  await node.dial(multiaddr(relayAddr))
  await waitForReservation(node)
  const t = new Libp2pTransport(node, { relayAddr })
  t.handle(SINK_PROTOCOL, async () => new Uint8Array(1))
  let ar: AllReducePeer | undefined
  let ids: string[] = []
  let input: { n: number, q: Uint8Array } | undefined
  const reply = (r: PeerReply): void => { process.send?.(r) }
  process.on('message', (m: PeerCmd) => {
    const t0 = performance.now()
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
          await t.request(m.peer, SINK_PROTOCOL, new Uint8Array(m.bytes).fill(7), { timeoutMs: TRANSFER_TIMEOUT_MS })
          break
        case 'prepare': { // the worker's own quantisation, before (and outside) the timed all-reduce
          const x = new Float32Array(m.n)
          for (let i = 0; i < m.n; i++) x[i] = Math.sin(i + t.self.length)
          input = { n: m.n, q: quantizeQ8Fast(x, m.n, 64) }
          break
        }
        case 'allreduce': {
          if (ar === undefined) {
            ids = m.ids
            ar = new AllReducePeer(t, {
              run: 'bench', directory: { expected: () => ids }, readyWindowMs: 10_000, coordinatorTimeoutMs: 60_000, partTimeoutMs: 60_000,
              ...(a['part-elements'] !== undefined ? { partElements: Number(a['part-elements']) } : {}),
              ...(a['window-parts'] !== undefined ? { windowParts: Number(a['window-parts']) } : {})
            })
          }
          const q = input?.n === m.n ? input.q : undefined
          if (q === undefined) throw new Error(`no input of ${m.n} elements prepared`)
          await ar.reduce(m.round, q, m.n)
          break
        }
        case 'stop':
          ar?.stop()
          await node.stop()
          reply({ ok: true })
          process.exit(0)
      }
      reply({ ok: true, ms: performance.now() - t0, id: t.self, channels: t.channelsOpened })
    }
    run().catch((e: unknown) => { reply({ ok: false, error: (e as Error).stack ?? String(e) }) })
  })
  reply({ ok: true, id: t.self })
}

/** The all-reduce options a goodput peer takes from the command line. */
const PEER_FLAGS = (['part-elements', 'window-parts'] as const).flatMap(k => a[k] === undefined ? [] : [`--${k}`, a[k]])

/** A goodput peer process and a way to send it commands. */
interface PeerProc { id: string, cmd: (c: PeerCmd) => Promise<PeerReply & { ok: true }>, child: ChildProcess }

async function spawnPeer (relayAddr: string): Promise<PeerProc> {
  const child = fork(fileURLToPath(import.meta.url), ['--role', 'goodput-peer', '--relay', relayAddr, ...PEER_FLAGS], { execArgv: ['--import', 'tsx', ...(process.env.BENCH_TRAIN_PEER_PROF !== undefined ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_TRAIN_PEER_PROF] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const pending: Array<(r: PeerReply) => void> = []
  child.on('message', (r: PeerReply) => { pending.shift()?.(r) })
  child.on('exit', (code) => { for (const p of pending.splice(0)) p({ ok: false, error: `peer process exited with ${code}` }) })
  const next = async (): Promise<PeerReply & { ok: true }> => {
    const r = await new Promise<PeerReply>((resolve) => pending.push(resolve))
    if (!r.ok) throw new Error(`goodput peer: ${r.error}`)
    return r
  }
  const hello = await next()
  return { id: hello.id!, child, cmd: async (c) => { const p = next(); child.send(c); return await p } }
}

/**
 * Goodput between two Node peers, each in its own process, over a direct WebRTC connection.
 *  - raw one-way: one request of S bytes A → B (reply 1 byte);
 *  - raw both ways: A → B and B → A at once, S bytes each (the all-reduce's traffic pattern);
 *  - all-reduce of a vector whose q8 is S bytes: bus bandwidth 2·(N−1)/N · S / t (NCCL's busbw:
 *    the bytes each member must move per direction in an optimal all-reduce, per second).
 * Each is the best of GOODPUT_TRIALS; a pair of commands is timed by the slower peer.
 */
async function goodput (): Promise<{ rawOneWayMbS: number, rawBothMbS: number, allreduceMbS: number, channels: number }> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const peers: PeerProc[] = []
  try {
    peers.push(await spawnPeer(relayAddr), await spawnPeer(relayAddr))
    const [A, B] = peers
    await A.cmd({ op: 'dial', peer: B.id })
    const S = Number(a['goodput-mb']) * 1024 * 1024
    const both = async (ca: PeerCmd, cb: PeerCmd): Promise<number> => {
      const [ra, rb] = await Promise.all([A.cmd(ca), B.cmd(cb)])
      return Math.max(ra.ms!, rb.ms!)
    }
    let oneWay = Infinity
    let bothWays = Infinity
    let ar = Infinity
    const n = Math.floor(S / (4 + 64)) * 64
    const M = 2 // members
    // Both inputs are ready before any all-reduce starts: otherwise the first peer's time would
    // include waiting for the other's READY while it still builds its input.
    await Promise.all([A.cmd({ op: 'prepare', n }), B.cmd({ op: 'prepare', n })])
    for (let i = 0; i < GOODPUT_TRIALS; i++) { // interleaved, so load changes hit every measure alike
      const o = (await A.cmd({ op: 'send', peer: B.id, bytes: S })).ms!
      const b = await both({ op: 'send', peer: B.id, bytes: S }, { op: 'send', peer: A.id, bytes: S })
      const r = await both({ op: 'allreduce', ids: [A.id, B.id], round: i, n }, { op: 'allreduce', ids: [A.id, B.id], round: i, n })
      oneWay = Math.min(oneWay, o); bothWays = Math.min(bothWays, b); ar = Math.min(ar, r)
      log(`  goodput trial ${i}: one-way ${(S / 1e3 / o).toFixed(2)} MB/s, both ways ${(S / 1e3 / b).toFixed(2)} MB/s, all-reduce ${(2 * (M - 1) / M * q8Bytes(n, 64) / 1e3 / r).toFixed(2)} MB/s`)
    }
    const channels = (await A.cmd({ op: 'dial', peer: B.id })).channels!
    return { rawOneWayMbS: S / 1e3 / oneWay, rawBothMbS: S / 1e3 / bothWays, allreduceMbS: 2 * (M - 1) / M * q8Bytes(n, 64) / 1e3 / ar, channels }
  } finally {
    await Promise.allSettled(peers.map(async p => { await p.cmd({ op: 'stop' }) }))
    // let them exit on their own (a CPU profile is written at exit), then make sure
    await Promise.all(peers.map(async p => { await new Promise(resolve => { if (p.child.exitCode !== null) resolve(null); else { p.child.once('exit', resolve); setTimeout(resolve, PEER_EXIT_MS) } }) }))
    for (const p of peers) p.child.kill()
    await relay.stop()
  }
}

async function main (): Promise<void> {
  if (a.role === 'goodput-peer') { await goodputPeer(a.relay ?? ''); return }
  const be = await backend()
  let lb: Awaited<ReturnType<typeof lossAndBytes>> | undefined
  if (a['skip-loss'] !== true) {
    log(`bench:train on ${be.kind}${be.kind === 'cpu' ? ' (CPU twins: --device cpu)' : ''}: ${N} workers, H = ${H}, ${R} rounds, seq ${T}`)
    const { train, validation } = new TextDataset(await brownCorpus()).split(0.05)
    const { train: tuneSet, validation: testSet } = validation.split(0.5) // disjoint byte ranges
    const take = (d: TextDataset): Window[] => { const it = d.windows(T, 4242); return Array.from({ length: EVAL_WINDOWS }, () => it.next().value as Window) }
    lb = await lossAndBytes(be, train, take(tuneSet), take(testSet))
    log(`  params ${lb.P}; bytes/worker/step: DiLoCo ${lb.bytesPerStep.toFixed(1)}, DP fp32 ${lb.dpBytesPerStep.toFixed(0)} → ${(lb.dpBytesPerStep / lb.bytesPerStep).toFixed(0)}×`)
    log(`  eval loss: DiLoCo ${lb.diloco.toFixed(4)}, baseline ${lb.baseline.toFixed(4)} → ratio ${(lb.diloco / lb.baseline).toFixed(4)}`)
  }
  let g: Awaited<ReturnType<typeof goodput>> | undefined
  if (a['skip-goodput'] !== true) {
    g = await goodput()
    log(`  goodput (2 peer processes): raw one-way ${g.rawOneWayMbS.toFixed(2)} MB/s, raw both ways ${g.rawBothMbS.toFixed(2)} MB/s per direction, all-reduce busbw ${g.allreduceMbS.toFixed(2)} MB/s → ${(g.allreduceMbS / g.rawBothMbS).toFixed(3)} (${g.channels} channels opened)`)
  }
  const out = {
    bytes_ratio: lb === undefined ? null : Number((lb.dpBytesPerStep / lb.bytesPerStep).toFixed(1)),
    loss_ratio: lb === undefined ? null : Number((lb.diloco / lb.baseline).toFixed(4)),
    allreduce_goodput_ratio: g === undefined ? null : Number((g.allreduceMbS / g.rawBothMbS).toFixed(3)),
    device: be.kind,
    detail: {
      ...(lb === undefined ? {} : lb.detail),
      ...(g === undefined
        ? {}
        : {
            goodput_processes: 2,
            raw_one_way_mb_s: Number(g.rawOneWayMbS.toFixed(2)),
            raw_both_ways_mb_s: Number(g.rawBothMbS.toFixed(2)),
            allreduce_busbw_mb_s: Number(g.allreduceMbS.toFixed(2)),
            allreduce_vs_one_way: Number((g.allreduceMbS / g.rawOneWayMbS).toFixed(3))
          })
    }
  }
  if (lb !== undefined && g !== undefined) {
    mkdirSync('bench/results', { recursive: true })
    writeFileSync('bench/results/train.json', JSON.stringify(out, null, 2) + '\n')
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => { if (a.role !== 'goodput-peer') process.exit(0) }, (e: unknown) => { process.stderr.write(`bench:train: ${(e as Error).stack ?? String(e)}\n`); process.exit(1) })
