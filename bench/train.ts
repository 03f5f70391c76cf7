/**
 * `npm run bench:train [-- --device cpu|webgpu --workers 4 --inner-steps 150 --rounds 4 --goodput-mb 8]`
 *
 * 1. Bytes on the wire per worker per inner step: DiLoCo (H inner steps, q8 pseudo-gradients,
 *    measured: every allreduce message a worker sent) vs data-parallel training (an fp32 gradient
 *    ring all-reduce every step: 2·(N−1)/N·4·P bytes sent per worker per step, the textbook cost).
 * 2. Eval loss after the same tokens: N-worker DiLoCo vs one worker with an N× batch (same inner
 *    lr, same steps, same validation windows), on a tiny byte-level Llama and the Brown corpus.
 * 3. All-reduce goodput vs raw stream throughput between the same two Node peers over direct
 *    WebRTC: raw = one request of S bytes through the framed tensor stream (reply 1 byte);
 *    goodput = q8 payload bytes each member moves per direction in a 2-member all-reduce.
 * Writes bench/results/train.json {"bytes_ratio","loss_ratio","allreduce_goodput_ratio","device"}.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { q8Bytes, quantizeQ8 } from '../web/src/gpu/cpu/quant.ts'
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
    lr: { type: 'string', default: '3e-3' },
    'goodput-mb': { type: 'string', default: '8' },
    'skip-goodput': { type: 'boolean', default: false }
  }
})
const N = Number(a.workers)
const H = Number(a['inner-steps'])
const R = Number(a.rounds)
const T = Number(a['seq-len'])
const LR = Number(a.lr)
const MODEL_SEED = 1
const EVAL_WINDOWS = 32

async function backend (): Promise<Backend> {
  if (a.device === 'cpu') return (await import('../web/src/gpu/cpu-backend.ts')).cpu
  if (a.device !== 'webgpu') throw new Error(`--device must be cpu or webgpu, got ${a.device}`)
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

function log (line: string): void { process.stderr.write(line + '\n') }

async function lossAndBytes (be: Backend, train: TextDataset, evalWindows: Window[]): Promise<{ diloco: number, baseline: number, bytesPerStep: number, dpBytesPerStep: number, P: number }> {
  const config = parseConfig(TINY_MODEL)
  const net = new MemoryNetwork({ seed: 1 })
  const ids = Array.from({ length: N }, (_, i) => `worker-${i}`)
  const dir = { expected: () => ids }
  const workers = ids.map((id, i) => {
    // All workers share this process's one thread, so they reach a sync minutes apart: the
    // ready window is widened so none is left out (in a real swarm each has its own device).
    const ar = new AllReducePeer(net.endpoint(id), { run: 'bench', directory: dir, readyWindowMs: 600_000, coordinatorTimeoutMs: 1_200_000, partTimeoutMs: 120_000 })
    return new DiLoCoWorker(initModel(config, be, MODEL_SEED), train, ar, { innerSteps: H, seqLen: T, innerLr: LR, dataSeed: i + 1 }, {
      onSync: (e) => { if (i === 0) log(`  diloco sync ${e.seq}: members ${e.members.length}, hash ${e.hash.slice(0, 12)}…`) }
    })
  })
  for (const w of workers) await w.initFromModel()
  const t0 = performance.now()
  await Promise.all(workers.map(async w => { await w.runSyncs(R) }))
  log(`  diloco: ${N} workers × ${R * H} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const hashes = new Set(workers.map(w => w.lastHash))
  if (hashes.size !== 1) throw new Error(`replicas diverged: ${[...hashes].join(', ')}`)
  const diloco = await workers[0].evalGlobal(evalWindows)
  const P = workers[0].layout.total
  const sent = workers.map(w => w.allreduce.bytesSent)
  const bytesPerStep = sent.reduce((x, y) => x + y, 0) / N / (R * H)
  for (const w of workers) { w.allreduce.stop(); w.dispose() }

  // Baseline: one worker, N× batch, the same number of steps (so the same tokens).
  const model = initModel(config, be, MODEL_SEED)
  const tr = new Trainer(model, { lr: LR, totalSteps: Number.MAX_SAFE_INTEGER, minLr: LR }, {}, { maxGradNorm: 1 })
  const it = train.windows(T, 77)
  const t1 = performance.now()
  for (let s = 0; s < R * H; s++) await tr.trainStep(Array.from({ length: N }, () => it.next().value as Window))
  log(`  baseline: 1 worker × ${R * H} steps of batch ${N} in ${((performance.now() - t1) / 1000).toFixed(1)} s`)
  const baseline = await evaluateLoss(model, evalWindows)
  tr.dispose(); model.dispose()
  return { diloco, baseline, bytesPerStep, dpBytesPerStep: 2 * (N - 1) / N * 4 * P, P }
}

async function goodput (): Promise<{ rawMbS: number, allreduceMbS: number }> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const nodes: WebSwarmNode[] = []
  try {
    for (let i = 0; i < 2; i++) {
      const n = await createPeer({ iceServers: [], discoveryIntervalMs: 600_000 })
      await n.dial(relay.getMultiaddrs()[0])
      await waitForReservation(n)
      nodes.push(n)
    }
    await nodes[0].dial(multiaddr(`${relayAddr}/p2p-circuit/webrtc/p2p/${nodes[1].peerId.toString()}`), { signal: AbortSignal.timeout(30_000) })
    const [ta, tb] = nodes.map(n => new Libp2pTransport(n, { relayAddr }))
    const bytes = Number(a['goodput-mb']) * 1024 * 1024
    // raw: one-way S bytes through the same framed stream layer, best of 3
    tb.handle('/webswarm/bench-sink/1.0.0', async () => new Uint8Array(1))
    const body = new Uint8Array(bytes).fill(7)
    let rawBest = Infinity
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now()
      await ta.request(tb.self, '/webswarm/bench-sink/1.0.0', body, { timeoutMs: 120_000 })
      rawBest = Math.min(rawBest, performance.now() - t0)
    }
    // all-reduce of n elements whose q8 is `bytes` long: each member sends and receives half of it
    const n = Math.floor(bytes / (4 + 64)) * 64
    const ids = [ta.self, tb.self]
    const dir = { expected: () => ids }
    const arOpts = { run: 'bench', directory: dir, readyWindowMs: 10_000, coordinatorTimeoutMs: 60_000, partTimeoutMs: 60_000 }
    const pa = new AllReducePeer(ta, arOpts)
    const pb = new AllReducePeer(tb, arOpts)
    const x = new Float32Array(n).map((_, i) => Math.sin(i))
    const q = quantizeQ8(x, 64)
    let arBest = Infinity
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now()
      await Promise.all([pa.reduce(r, q, n), pb.reduce(r, q, n)])
      arBest = Math.min(arBest, performance.now() - t0)
    }
    pa.stop(); pb.stop()
    const perDirection = q8Bytes(n, 64) / 2
    return { rawMbS: bytes / 1e6 / (rawBest / 1000), allreduceMbS: perDirection / 1e6 / (arBest / 1000) }
  } finally {
    await Promise.allSettled(nodes.map(async n => { await n.stop() }))
    await relay.stop()
  }
}

async function main (): Promise<void> {
  const be = await backend()
  log(`bench:train on ${be.kind}${be.kind === 'cpu' ? ' (CPU twins: --device cpu)' : ''}: ${N} workers, H = ${H}, ${R} rounds, seq ${T}`)
  const { train, validation } = new TextDataset(await brownCorpus()).split(0.05)
  const vit = validation.windows(T, 4242)
  const evalWindows = Array.from({ length: EVAL_WINDOWS }, () => vit.next().value as Window)
  const lb = await lossAndBytes(be, train, evalWindows)
  const bytesRatio = lb.dpBytesPerStep / lb.bytesPerStep
  const lossRatio = lb.diloco / lb.baseline
  log(`  params ${lb.P}; bytes/worker/step: DiLoCo ${lb.bytesPerStep.toFixed(1)}, DP fp32 ${lb.dpBytesPerStep.toFixed(0)} → ${bytesRatio.toFixed(0)}×`)
  log(`  eval loss: DiLoCo ${lb.diloco.toFixed(4)}, baseline ${lb.baseline.toFixed(4)} → ratio ${lossRatio.toFixed(4)}`)
  let g: { rawMbS: number, allreduceMbS: number } | undefined
  if (a['skip-goodput'] !== true) {
    g = await goodput()
    log(`  goodput: raw ${g.rawMbS.toFixed(1)} MB/s, all-reduce ${g.allreduceMbS.toFixed(1)} MB/s per direction → ${(g.allreduceMbS / g.rawMbS).toFixed(3)}`)
  }
  const out = {
    bytes_ratio: Number(bytesRatio.toFixed(1)),
    loss_ratio: Number(lossRatio.toFixed(4)),
    allreduce_goodput_ratio: g === undefined ? null : Number((g.allreduceMbS / g.rawMbS).toFixed(3)),
    device: be.kind,
    detail: {
      workers: N, inner_steps: H, rounds: R, seq_len: T, inner_lr: LR, params: lb.P,
      diloco_bytes_per_worker_step: Number(lb.bytesPerStep.toFixed(1)), dp_fp32_bytes_per_worker_step: Math.round(lb.dpBytesPerStep),
      diloco_eval_loss: Number(lb.diloco.toFixed(4)), baseline_eval_loss: Number(lb.baseline.toFixed(4)),
      raw_mb_s: g === undefined ? null : Number(g.rawMbS.toFixed(2)), allreduce_mb_s: g === undefined ? null : Number(g.allreduceMbS.toFixed(2))
    }
  }
  mkdirSync('bench/results', { recursive: true })
  writeFileSync('bench/results/train.json', JSON.stringify(out, null, 2) + '\n')
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => { process.exit(0) }, (e: unknown) => { process.stderr.write(`bench:train: ${(e as Error).stack ?? String(e)}\n`); process.exit(1) })
