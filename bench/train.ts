/**
 * `npm run bench:train [-- --device cpu|webgpu --workers 4 --batch 1 --inner-steps 150 --rounds 4
 *   --seq-len 32 --seeds 1,2,3 --lrs 3e-3,6e-3 --outer 0.7:0.9,1:0,0.7:0.5,1.5:0[,lr:momentum:finalLr] --warmup 50
 *   --schedule constant|cosine --min-lr-frac 0.1 --hidden 32 --layers 2 --beta1 0.9 --beta2 0.999
 *   --weight-decay 0.01 --max-grad-norm 1 --codec q8|topk --topk-chunk 256 --topk-k 4 --topk-bits 2 --topk-result-bits 4 --topk-mean members|senders
 *   --ef-decay 1 --delay-outer --delay-outer-syncs 1 --fragments 1 --local-residual --goodput-mb 8 --util-syncs 6 --no-trainer-thread --skip-loss --skip-goodput --skip-util --skip-baseline
 *   --jobs 1
 *   --out FILE]` (--skip-baseline: screening DiLoCo settings only, the loss ratio is then NaN;
 *   --jobs N: the loss runs N at a time, each in its own process — the same figures, sooner)
 *
 * 1. Bytes on the wire per worker per inner step: DiLoCo (H inner steps, q8 pseudo-gradients,
 *    measured: every allreduce message a worker sent) vs data-parallel training (an fp32 gradient
 *    ring all-reduce every step: 2·(N−1)/N·4·P bytes sent per worker per step, the textbook cost).
 * 2. Eval loss after the same tokens: N-worker DiLoCo (batch B each) vs one worker with batch N·B,
 *    the same steps, the same inner AdamW (warm-up, clipping, weight decay), on a tiny
 *    byte-level Llama and the Brown corpus. Every inner lr of the grid runs on both sides (and
 *    every outer lr:momentum on DiLoCo's) for every seed; each side keeps its best mean loss on
 *    the *tuning* windows and reports its mean loss on the disjoint *test* windows.
 * 3. All-reduce goodput vs raw stream throughput between two Node peers, each in its own process
 *    (as real peers are), over a direct WebRTC connection: raw one-way, raw both ways at once
 *    (the all-reduce's traffic pattern), and the all-reduce's bus bandwidth (NCCL's busbw).
 * 4. compute_utilization: 4 DiLoCo workers, each in its own process, over real WebRTC (the run's
 *    codec, H and delay): the fraction of wall time they spend in inner steps (bench/train-util.ts),
 *    each on its trainer thread (--no-trainer-thread: on the node's own thread, as before session 9).
 * Writes bench/results/train.json (or --out) {"bytes_ratio","loss_ratio","compute_utilization",
 * "allreduce_goodput_ratio","codec","device"}: a part skipped with --skip-loss / --skip-goodput /
 * --skip-util keeps the existing file's figures for it. BENCH_TRAIN_PEER_PROF=DIR writes the peer processes' CPU profiles.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import type { Backend } from '../web/src/gpu/backend.ts'
import { goodput, type GoodputResult } from './train-goodput.ts'
import { codecName, runLossBench, type LossResult } from './train-loss.ts'
import type { ThreadBreakdown } from './train-thread-times.ts'
import { utilization, type UtilResult, type WorkerTimes } from './train-util.ts'
import type { CompressionSpec, SparseMean } from '../web/src/swarm/train/codec.ts'
import { mergeResults, type Results } from './train-results.ts'
import { outerDelayOf } from '../web/src/swarm/train/worker.ts'

const { values: a } = parseArgs({
  options: {
    device: { type: 'string', default: 'cpu' },
    workers: { type: 'string', default: '4' },
    'inner-steps': { type: 'string', default: '150' },
    rounds: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '32' },
    batch: { type: 'string', default: '1' },
    hidden: { type: 'string', default: '32' },
    beta1: { type: 'string', default: '0.9' },
    beta2: { type: 'string', default: '0.999' },
    'weight-decay': { type: 'string', default: '0.01' },
    layers: { type: 'string', default: '2' },
    schedule: { type: 'string', default: 'constant' },
    'min-lr-frac': { type: 'string', default: '0.1' },
    lrs: { type: 'string', default: '3e-3,6e-3' },
    seeds: { type: 'string', default: '1,2,3' },
    warmup: { type: 'string', default: '50' },
    outer: { type: 'string', default: '0.7:0.9,1:0,0.7:0.5,1.5:0' },
    'goodput-mb': { type: 'string', default: '8' },
    codec: { type: 'string', default: 'q8' },
    'topk-chunk': { type: 'string', default: '256' },
    'topk-k': { type: 'string', default: '4' },
    'topk-bits': { type: 'string', default: '2' },
    'topk-result-bits': { type: 'string', default: '4' },
    'topk-mean': { type: 'string', default: 'members' },
    'delay-outer': { type: 'boolean', default: false },
    'delay-outer-syncs': { type: 'string' },
    fragments: { type: 'string', default: '1' },
    'ef-decay': { type: 'string', default: '1' },
    'util-syncs': { type: 'string', default: '6' },
    'skip-util': { type: 'boolean', default: false },
    'no-trainer-thread': { type: 'boolean', default: false },
    'skip-baseline': { type: 'boolean', default: false },
    jobs: { type: 'string', default: '1' },
    'max-grad-norm': { type: 'string', default: '1' },
    'local-residual': { type: 'boolean', default: false },
    'skip-goodput': { type: 'boolean', default: false },
    'skip-loss': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/train.json' },
    'part-elements': { type: 'string' },
    'window-parts': { type: 'string' }
  }
})
const N = Number(a.workers)
const H = Number(a['inner-steps'])
const R = Number(a.rounds)
const T = Number(a['seq-len'])
const RESULTS = a.out ?? 'bench/results/train.json'
const CODEC: CompressionSpec = a.codec === 'q8'
  ? { kind: 'q8', block: 64 }
  : a.codec === 'topk'
    ? { kind: 'topk', chunk: Number(a['topk-chunk']), k: Number(a['topk-k']), bits: Number(a['topk-bits']), resultBits: Number(a['topk-result-bits']), ...(a['topk-mean'] === 'members' ? {} : { mean: a['topk-mean'] as SparseMean }) }
    : (() => { throw new Error(`--codec must be q8 or topk, got ${a.codec}`) })()
/** Syncs of outer-update delay (0: none): --delay-outer is 1, --delay-outer-syncs N is N (worker.ts delayOuter, 1–4). */
const DELAY = a['delay-outer-syncs'] !== undefined ? outerDelayOf(Number(a['delay-outer-syncs'])) : a['delay-outer'] === true ? 1 : 0
/** The codec name's delay suffix: '+delay' for one sync (as before), '+delayN' for N > 1. */
const DELAY_TAG = DELAY === 0 ? '' : DELAY === 1 ? '+delay' : `+delay${DELAY}`
const EF_DECAY = Number(a['ef-decay'])
/** Streaming DiLoCo fragments (worker.ts `fragments`; the codec names get '+fragF' for F > 1). */
const FRAGMENTS = Number(a.fragments)
const FRAG_TAG = FRAGMENTS === 1 ? '' : `+frag${FRAGMENTS}`

async function backend (): Promise<Backend> {
  if (a.device === 'cpu') return (await import('../web/src/gpu/cpu-backend.ts')).cpu
  if (a.device !== 'webgpu') throw new Error(`--device must be cpu or webgpu, got ${a.device}`)
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

function log (line: string): void { process.stderr.write(line + '\n') }

/** A worker's times with whole milliseconds (the results file). */
function roundTimes (t: WorkerTimes): WorkerTimes {
  const r = (x: number): number => Math.round(x)
  return { startAt: r(t.startAt), wallMs: r(t.wallMs), stepMs: r(t.stepMs), steps: t.steps, launchMs: r(t.launchMs), landMs: r(t.landMs), ...(t.cpu === undefined ? {} : { cpu: { stepMs: r(t.cpu.stepMs), launchMs: r(t.cpu.launchMs), landMs: r(t.cpu.landMs), allMs: r(t.cpu.allMs), waitMs: r(t.cpu.waitMs), idleMsPerS: Number(t.cpu.idleMsPerS.toFixed(1)) } }), ...(t.trainer === undefined ? {} : { trainer: { planWaitMs: r(t.trainer.planWaitMs), cpuMs: r(t.trainer.cpuMs), waitMs: r(t.trainer.waitMs) } }),
    ...(t.thread === undefined ? {} : { thread: Object.fromEntries(Object.entries(t.thread).map(([k, v]) => [k, Array.isArray(v) ? v.map(r) : Number((v as number).toFixed(1))])) as unknown as ThreadBreakdown }) }
}

async function main (): Promise<void> {
  const be = await backend()
  let lb: LossResult | undefined
  if (a['skip-loss'] !== true) {
    log(`bench:train on ${be.kind}${be.kind === 'cpu' ? ' (CPU twins: --device cpu)' : ''}: ${N} workers × batch ${a.batch}, H = ${H}, ${R} rounds, seq ${T}, ${a.schedule} inner lr`)
    if (a.schedule !== 'constant' && a.schedule !== 'cosine') throw new Error(`--schedule must be constant or cosine, got ${a.schedule}`)
    lb = await runLossBench({
      N, H, R, T, B: Number(a.batch), SCHEDULE: a.schedule, MIN_LR_FRAC: Number(a['min-lr-frac']), HIDDEN: Number(a.hidden), LAYERS: Number(a.layers),
      ADAM: { beta1: Number(a.beta1), beta2: Number(a.beta2), weightDecay: Number(a['weight-decay']) },
      MAX_GRAD_NORM: Number(a['max-grad-norm']),
      LRS: (a.lrs ?? '').split(',').map(Number),
      SEEDS: (a.seeds ?? '').split(',').map(Number),
      WARMUP: Number(a.warmup),
      OUTERS: (a.outer ?? '').split(',').map((x) => { const [lr, momentum, finalLr] = x.split(':').map(Number); return finalLr === undefined ? { lr, momentum } : { lr, momentum, finalLr } }),
      CODEC,
      DELAY,
      FRAGMENTS,
      EF_DECAY,
      SKIP_BASELINE: a['skip-baseline'] === true,
      JOBS: Number(a.jobs),
      DEVICE: a.device,
      LOCAL_RESIDUAL: a['local-residual'] === true
    }, be)
    log(`  params ${lb.P}; bytes/worker/step: DiLoCo ${lb.bytesPerStep.toFixed(1)}, DP fp32 ${lb.dpBytesPerStep.toFixed(0)} → ${(lb.dpBytesPerStep / lb.bytesPerStep).toFixed(0)}×`)
    log(`  eval loss: DiLoCo ${lb.diloco.toFixed(4)}, baseline ${lb.baseline.toFixed(4)} → ratio ${(lb.diloco / lb.baseline).toFixed(4)}`)
  }
  let g: GoodputResult | undefined
  if (a['skip-goodput'] !== true) {
    g = await goodput({
      mb: Number(a['goodput-mb']),
      ...(a['part-elements'] !== undefined ? { partElements: Number(a['part-elements']) } : {}),
      ...(a['window-parts'] !== undefined ? { windowParts: Number(a['window-parts']) } : {})
    })
    log(`  goodput (2 peer processes): raw one-way ${g.rawOneWayMbS.toFixed(2)} MB/s, raw both ways ${g.rawBothMbS.toFixed(2)} MB/s per direction, all-reduce busbw ${g.allreduceMbS.toFixed(2)} MB/s → ${(g.allreduceMbS / g.rawBothMbS).toFixed(3)} (${g.channels} channels opened)`)
  }
  let u: UtilResult | undefined
  if (a['skip-util'] !== true) {
    u = await utilization({ workers: N, H, syncs: Number(a['util-syncs']), T, B: Number(a.batch), hidden: Number(a.hidden), layers: Number(a.layers), codec: CODEC, delay: DELAY, fragments: FRAGMENTS, thread: a['no-trainer-thread'] !== true })
    log(`  compute utilization (${N} worker processes, WebRTC, ${codecName(CODEC)}${FRAG_TAG}${DELAY === 0 ? '' : `, outer update delayed ${DELAY} sync${DELAY > 1 ? 's' : ''}`}, steps ${a['no-trainer-thread'] === true ? 'on the node\'s thread' : 'on a trainer thread'}): ${u.utilization.toFixed(3)}, ${u.stepsPerS.toFixed(2)} inner steps/s (per worker ${u.perWorker.map(x => x.toFixed(3)).join(', ')}; starting syncs ${u.launchFraction.toFixed(3)}, applying them ${u.syncFraction.toFixed(3)} of wall time; ${u.syncs} syncs, ${u.wallS.toFixed(1)} s)`)
    if (u.stepCpuShare !== undefined) log(`  JS thread${u.trainerCpuOfWall !== undefined ? 's (node + trainer)' : ''}: steps ${u.stepCpuShare.toFixed(3)} of their CPU, other event-loop work ${u.otherCpuShare!.toFixed(3)}; node thread waiting for a core ${u.runQueueFraction!.toFixed(3)} of wall time; idle node ${u.idleCpuMsPerS!.toFixed(1)} ms CPU/s`)
    if (u.threadFractions !== undefined) log(`  trainer thread's wall time (of wall, mean): ${Object.entries(u.threadFractions).map(([k, v]) => `${k.replace(/Ms$/, '')} ${v.toFixed(4)}`).join(', ')}; steady state (less the last landing) ${u.steadyUtilization!.toFixed(3)}; workers' clocks started within ${u.startSpreadMs.toFixed(0)} ms`)
    if (u.trainerCpuOfWall !== undefined) log(`  trainer thread: ${u.trainerCpuOfWall.toFixed(3)} of a core, waiting for one ${u.trainerRunQueueFraction!.toFixed(3)} of wall time, waiting at syncs for what to apply ${u.trainerPlanWaitFraction!.toFixed(3)}`)
  }
  const lossPart = lb === undefined
    ? undefined
    : {
        bytes_ratio: Number((lb.dpBytesPerStep / lb.bytesPerStep).toFixed(1)),
        loss_ratio: Number((lb.diloco / lb.baseline).toFixed(4)),
        codec: codecName(CODEC) + (EF_DECAY !== 1 ? `+ef${EF_DECAY}` : '') + FRAG_TAG + DELAY_TAG,
        device: be.kind,
        detail: lb.detail
      }
  const goodputPart = g === undefined
    ? undefined
    : {
        allreduce_goodput_ratio: Number((g.allreduceMbS / g.rawBothMbS).toFixed(3)),
        detail: {
          goodput_processes: 2,
          raw_one_way_mb_s: Number(g.rawOneWayMbS.toFixed(2)),
          raw_both_ways_mb_s: Number(g.rawBothMbS.toFixed(2)),
          allreduce_busbw_mb_s: Number(g.allreduceMbS.toFixed(2)),
          allreduce_vs_one_way: Number((g.allreduceMbS / g.rawOneWayMbS).toFixed(3))
        }
      }
  const utilPart = u === undefined
    ? undefined
    : { compute_utilization: Number(u.utilization.toFixed(3)), detail: { util_codec: codecName(CODEC) + FRAG_TAG + DELAY_TAG, util_delay_outer_syncs: DELAY, util_trainer_thread: a['no-trainer-thread'] !== true, util_steps_per_s: Number(u.stepsPerS.toFixed(3)), util_processes: N, util_inner_steps: H, util_syncs: u.syncs, util_per_worker: u.perWorker.map(x => Number(x.toFixed(3))), util_sync_fraction: Number(u.syncFraction.toFixed(3)), util_launch_fraction: Number(u.launchFraction.toFixed(3)), util_wall_s: Number(u.wallS.toFixed(1)),
        ...(u.stepCpuShare === undefined ? {} : { util_step_cpu_share: Number(u.stepCpuShare.toFixed(3)), util_other_cpu_share: Number(u.otherCpuShare!.toFixed(3)), util_run_queue_fraction: Number(u.runQueueFraction!.toFixed(3)), util_idle_cpu_ms_per_s: Number(u.idleCpuMsPerS!.toFixed(1)) }),
        ...(u.trainerCpuOfWall === undefined ? {} : { util_trainer_cpu_of_wall: Number(u.trainerCpuOfWall.toFixed(3)), util_trainer_run_queue_fraction: Number(u.trainerRunQueueFraction!.toFixed(3)), util_trainer_plan_wait_fraction: Number(u.trainerPlanWaitFraction!.toFixed(3)) }),
        util_start_spread_ms: Math.round(u.startSpreadMs),
        ...(u.threadFractions === undefined ? {} : { util_steady_utilization: Number(u.steadyUtilization!.toFixed(3)), util_trainer_wall_fractions: Object.fromEntries(Object.entries(u.threadFractions).map(([k, v]) => [k.replace(/Ms$/, ''), Number(v.toFixed(4))])) }),
        util_workers: u.workers.map(t => roundTimes(t)) } }
  const out = mergeResults({ loss: lossPart, goodput: goodputPart, util: utilPart }, () => JSON.parse(readFileSync(RESULTS, 'utf8')) as Partial<Results>)
  if (out !== undefined) {
    mkdirSync(dirname(RESULTS), { recursive: true })
    writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n')
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => { process.exit(0) }, (e: unknown) => { process.stderr.write(`bench:train: ${(e as Error).stack ?? String(e)}\n`); process.exit(1) })
