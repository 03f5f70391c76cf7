/**
 * `npm run bench:kernels` — GFLOP/s of square f32 matmuls on this machine's WebGPU adapter:
 * our `matmul` (shaders/matmul.wgsl, the builder's pick), the naive one-thread-per-output
 * kernel (shaders/matmul_naive.wgsl) and @tensorflow/tfjs-backend-webgpu's matMul, all on the
 * SAME GPUDevice in one process (Dawn allows one instance per process, so tfjs is handed our
 * device instead of creating its own).
 *
 * Flags: --sizes 256,512,1024 (none: skip the squares)   --trials 3   --sweep (time every MATMUL_CONFIGS entry too)
 *        --decode 1024 (also time linear's M = 1 decode step x (1, n) · w (n, n)ᵀ; 0 skips it)
 *        --gemv 2048x8192 --gemv-dtype q4_k (the dequantizing GEMV at M = 1 on w (N, K) kept in its
 *        GGUF encoding: GB/s of weight bytes read, against a streaming copy kernel's GB/s in the
 *        same run — `gemv_bandwidth_ratio`, the share of the adapter's bandwidth decode gets;
 *        --gemv 0 skips it; --gemv-sweep 64x2,256x1 also times the GPU `gemv` and those `gemv_cols` shapes (WGxCOLS),
 *        --gemv-reps 5 calls a trial) → bench/results/kernels-gemv.json
 * Measurements of the three are interleaved trial by trial and the best trial is kept, so
 * load from other processes on the shared 2-core machine hits all of them alike.
 * Writes bench/results/kernels.json (the list of results) and kernels.meta.json (adapter, machine).
 */
import { writeFileSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import { GpuBackend } from '../web/src/gpu/gpu-backend.ts'
import { benchMatmul, matmulFlops } from '../web/src/gpu/ops/matmul-bench.ts'
import { matmul, MATMUL_CONFIGS, planMatmul } from '../web/src/gpu/ops/matmul.ts'
import { copyVec4 } from '../web/src/gpu/ops/copy-vec4.ts'
import { matmulQuant, planQuantMatmul, quantMatmulVariant, type MatmulQuantOptions } from '../web/src/gpu/ops/matmul-quant.ts'
import type { WeightDType } from '../web/src/gpu/dtype.ts'
import { isWeightDType, storageBytes } from '../web/src/gpu/quant-types.ts'
import { randomWeightBytes } from '../test/helpers/weight-blocks.ts'
import { Rng } from '../web/src/util/rng.ts'

/** FLOPs of work per timed trial: enough to dwarf submit/readback overhead (~1 s at 1 GFLOP/s). */
const FLOP_PER_TRIAL = 1e9
/** The naive kernel runs ~0.1 GFLOP/s here: above this size it gets a single trial. */
const NAIVE_ONE_TRIAL_FROM = 1024

interface Row { op: 'matmul' | 'linear-decode', size: number, ours_gflops: number, tfjs_gflops: number | null, naive_gflops: number | null, ours_variant: string }

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const sizes = arg('sizes') === 'none' ? [] : (arg('sizes') ?? '256,512,1024').split(',').map(Number)
const trials = Number(arg('trials') ?? 3)
const sweep = process.argv.includes('--sweep')
const decodeN = Number(arg('decode') ?? 1024)
const gemvShape = arg('gemv') ?? '2048x8192'
const gemvDtype = arg('gemv-dtype') ?? 'q4_k'
if (!isWeightDType(gemvDtype as WeightDType)) throw new Error(`--gemv-dtype ${gemvDtype}: not a weight dtype`)

const loadBefore = os.loadavg()[0]
const gpu = await GpuBackend.create()
console.log(`adapter: ${gpu.info.description} (${gpu.info.architecture}, software=${String(gpu.info.software)}, runtime ${gpu.info.runtime})`)

// ---- tfjs on our device ----
type Tf = typeof import('@tensorflow/tfjs-core')
let tf: Tf | undefined
try {
  // tfjs checks `navigator.gpu` exists before building its backend; our device is already open,
  // so a marker object is enough (set only now: device.ts reads navigator.gpu to detect Node).
  const nav = globalThis.navigator as unknown as Record<string, unknown>
  if (nav.gpu === undefined) Object.defineProperty(nav, 'gpu', { value: {}, configurable: true })
  tf = await import('@tensorflow/tfjs-core')
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu')
  // Kernels are registered under the name 'webgpu': replace that backend's factory with one on our device.
  tf.removeBackend('webgpu')
  tf.registerBackend('webgpu', () => new WebGPUBackend(gpu.device, { architecture: gpu.info.architecture, description: gpu.info.description, device: gpu.info.device, vendor: gpu.info.vendor } as GPUAdapterInfo), 10)
  await tf.setBackend('webgpu')
  await tf.ready()
  tf.env().set('WEBGPU_CPU_FORWARD', false) // always run on the GPU, never hand small ops to a CPU backend
  console.log(`tfjs ${tf.version_core} backend: ${tf.getBackend()}`)
} catch (e) {
  console.log(`tfjs unavailable: ${(e as Error).message}`)
  tf = undefined
}

async function benchTfjs (n: number, reps: number): Promise<{ gflops: number, maxDiff: number }> {
  if (tf === undefined) throw new Error('no tfjs')
  const rng = new Rng(1) // the same inputs as benchMatmul's default seed
  const av = rng.uniform(n * n)
  const bv = rng.uniform(n * n)
  const a = tf.tensor2d(av, [n, n])
  const b = tf.tensor2d(bv, [n, n])
  const warm = tf.matMul(a, b)
  const got = await warm.data() as Float32Array
  warm.dispose()
  // Spot-check tfjs against a direct sum on a few entries (the comparison is meaningless if it is wrong).
  let maxDiff = 0
  for (let t = 0; t < 8; t++) {
    const i = rng.int(n); const j = rng.int(n)
    let s = 0
    for (let k = 0; k < n; k++) s += av[i * n + k] * bv[k * n + j]
    maxDiff = Math.max(maxDiff, Math.abs(s - got[i * n + j]))
  }
  const t0 = performance.now()
  let last: ReturnType<Tf['matMul']> | undefined
  for (let r = 0; r < reps; r++) { last?.dispose(); last = tf.matMul(a, b) }
  await last!.data() // flushes tfjs's deferred submits and waits for all of them
  const ms = (performance.now() - t0) / reps
  last!.dispose(); a.dispose(); b.dispose()
  return { gflops: matmulFlops(n, n, n) / (ms * 1e6), maxDiff }
}

const rows: Row[] = []
for (const n of sizes) {
  const reps = Math.max(1, Math.round(FLOP_PER_TRIAL / matmulFlops(n, n, n)))
  const variant = planMatmul(gpu.info, { B: 1, M: n, N: n, K: n }, false).variant.key
  let ours = 0; let naive = 0; let tfjs = tf === undefined ? null : 0; let diff = 0
  for (let t = 0; t < trials; t++) {
    ours = Math.max(ours, (await benchMatmul(gpu, n, reps)).gflops)
    if (tf !== undefined) {
      const r = await benchTfjs(n, reps)
      tfjs = Math.max(tfjs ?? 0, r.gflops); diff = Math.max(diff, r.maxDiff)
    }
    if (t === 0 || n < NAIVE_ONE_TRIAL_FROM) naive = Math.max(naive, (await benchMatmul(gpu, n, n < NAIVE_ONE_TRIAL_FROM ? reps : 1, { kernel: 'naive' })).gflops)
  }
  const row: Row = { op: 'matmul', size: n, ours_gflops: round(ours), tfjs_gflops: tfjs === null ? null : round(tfjs), naive_gflops: round(naive), ours_variant: variant }
  rows.push(row)
  console.log(`${n}²: ours ${row.ours_gflops} GFLOP/s (${variant}) · tfjs ${String(row.tfjs_gflops)} (spot-check |Δ| ${diff.toExponential(1)}) · naive ${row.naive_gflops}` +
    (row.tfjs_gflops !== null ? ` · ours/tfjs ${(ours / row.tfjs_gflops).toFixed(2)}×` : ''))
  if (sweep) {
    for (const [name, cfg] of Object.entries(MATMUL_CONFIGS)) {
      if (cfg.kernel === 'gemv') continue
      let best = 0
      for (let t = 0; t < trials; t++) best = Math.max(best, (await benchMatmul(gpu, n, reps, { config: cfg })).gflops)
      console.log(`   sweep ${name}: ${round(best)} GFLOP/s`)
    }
  }
}

/** linear() at M = 1: x (1, n) · w (n, n)ᵀ — the decode step of every projection; reps of ≥ 0.05 GFLOP per trial. */
async function benchDecode (n: number): Promise<Row> {
  const rng = new Rng(2)
  const xv = rng.uniform(n); const wv = rng.uniform(n * n)
  const reps = Math.max(1, Math.round(5e7 / matmulFlops(1, n, n)))
  const x = gpu.tensor(xv, [1, n]); const w = gpu.tensor(wv, [n, n])
  const variant = planMatmul(gpu.info, { B: 1, M: 1, N: n, K: n, transB: true }, false).variant.key
  let ours = 0; let tfjs: number | null = tf === undefined ? null : 0
  for (let t = 0; t < trials; t++) {
    matmul(x, w, { transB: true }).dispose(); await gpu.sync()
    const t0 = performance.now()
    for (let r = 0; r < reps; r++) matmul(x, w, { transB: true }).dispose()
    await gpu.sync()
    ours = Math.max(ours, matmulFlops(1, n, n) / ((performance.now() - t0) / reps * 1e6))
    if (tf !== undefined) {
      const tx = tf.tensor2d(xv, [1, n]); const tw = tf.tensor2d(wv, [n, n])
      const warm = tf.matMul(tx, tw, false, true); await warm.data(); warm.dispose()
      const t1 = performance.now()
      let last: ReturnType<Tf['matMul']> | undefined
      for (let r = 0; r < reps; r++) { last?.dispose(); last = tf.matMul(tx, tw, false, true) }
      await last!.data()
      tfjs = Math.max(tfjs ?? 0, matmulFlops(1, n, n) / ((performance.now() - t1) / reps * 1e6))
      last!.dispose(); tx.dispose(); tw.dispose()
    }
  }
  x.dispose(); w.dispose()
  return { op: 'linear-decode', size: n, ours_gflops: round(ours), tfjs_gflops: tfjs === null ? null : round(tfjs), naive_gflops: null, ours_variant: variant }
}

if (decodeN > 0) {
  const row = await benchDecode(decodeN)
  rows.push(row)
  console.log(`decode 1×${decodeN}·(${decodeN}×${decodeN})ᵀ: ours ${row.ours_gflops} GFLOP/s (${row.ours_variant}) · tfjs ${String(row.tfjs_gflops)}`)
}

/**
 * The decode GEMV on quantized weights: out (1, N) = x (1, K) · dequant(w)ᵀ, w (N, K) in `dtype`.
 * GB/s counts the weight bytes read (x and out are < 0.1 % of them). The copy kernel (copyVec4:
 * 16 bytes read + 16 written a thread, the loads a GEMV can at best make) streams as many bytes
 * as the weights in each direction; its GB/s counts both directions. Interleaved trial by trial,
 * best kept. With --gemv-sweep the other GEMV shapes join the interleaving (sweep_gbps).
 */
async function benchQuantGemv (N: number, K: number, dtype: WeightDType): Promise<Record<string, unknown>> {
  const wBytes = storageBytes(dtype, [N, K])
  const w = gpu.tensor(randomWeightBytes(dtype, N, K, 3), [N, K], dtype)
  const x = gpu.tensor(new Rng(4).uniform(K), [1, K])
  const copyN = 4 * Math.ceil(wBytes / 16)
  const src = gpu.tensor(new Rng(5).uniform(copyN), [copyN])
  const reps = Number(arg('gemv-reps') ?? 5)
  const plan = planQuantMatmul(gpu.info, 1)
  const key = (o: MatmulQuantOptions): string => quantMatmulVariant({ dtype, kernel: o.kernel ?? plan.kernel, M: 1, hasBias: false, cols: o.cols }).key
  const shapes: MatmulQuantOptions[] = [{}]
  const sweep = arg('gemv-sweep') // gemv_cols shapes as WGxCOLS,… (e.g. 64x2,256x1)
  if (sweep !== undefined) {
    shapes.push({ kernel: 'gemv' })
    for (const s of sweep.split(',')) {
      const [wg, cols] = s.split('x').map(Number)
      shapes.push({ kernel: 'gemv_cols', cols: { wg, cols } })
    }
  }
  const best = shapes.map(() => 0); let copy = 0
  /** Best-so-far bytes / ns of `reps` calls of f after one warm-up call. */
  const time = async (f: () => void): Promise<number> => {
    f(); await gpu.sync()
    const t0 = performance.now()
    for (let r = 0; r < reps; r++) f()
    await gpu.sync()
    return (performance.now() - t0) / reps * 1e6
  }
  for (let t = 0; t < trials; t++) {
    for (const [i, o] of shapes.entries()) best[i] = Math.max(best[i], wBytes / await time(() => matmulQuant(x, w, o).dispose()))
    copy = Math.max(copy, 8 * copyN / await time(() => copyVec4(src).dispose()))
  }
  w.dispose(); x.dispose(); src.dispose()
  return {
    shape: `${N}x${K}`, dtype, weight_bytes: wBytes,
    gemv_gbps: sig(best[0]), copy_gbps: sig(copy), gemv_bandwidth_ratio: sig(best[0] / copy),
    gemv_variant: key({}),
    ...(shapes.length > 1 ? { sweep_gbps: Object.fromEntries(shapes.map((o, i) => [key(o), sig(best[i])])) } : {})
  }
}

let gemvRow: Record<string, unknown> | undefined
if (gemvShape !== '0') {
  const [N, K] = gemvShape.split('x').map(Number)
  gemvRow = await benchQuantGemv(N, K, gemvDtype as WeightDType)
  console.log(`quantized GEMV 1×${K}·(${N}×${K} ${gemvDtype})ᵀ: ${String(gemvRow.gemv_gbps)} GB/s of weights (${String(gemvRow.gemv_variant)}) · vec4 copy kernel ${String(gemvRow.copy_gbps)} GB/s · gemv_bandwidth_ratio ${String(gemvRow.gemv_bandwidth_ratio)}`)
  if (gemvRow.sweep_gbps !== undefined) console.log('GEMV shapes, GB/s of weights:', gemvRow.sweep_gbps)
}

console.log('\n| size | ours GFLOP/s | tfjs-webgpu GFLOP/s | naive WGSL GFLOP/s | ours / tfjs |')
console.log('|---:|---:|---:|---:|---:|')
for (const r of rows) console.log(`| ${r.op === 'matmul' ? `${r.size}²` : `decode 1×${r.size}·(${r.size}×${r.size})ᵀ`} | ${r.ours_gflops} | ${String(r.tfjs_gflops)} | ${String(r.naive_gflops ?? '–')} | ${r.tfjs_gflops !== null ? (r.ours_gflops / r.tfjs_gflops).toFixed(2) + '×' : '–'} |`)

function round (x: number): number { return Math.round(x * 1000) / 1000 }
/** 3 significant digits (software adapters give GB/s in the thousandths). */
function sig (x: number): number { return Number(x.toPrecision(3)) }

const dir = new URL('./results/', import.meta.url)
mkdirSync(dir, { recursive: true })
if (rows.length > 0) writeFileSync(new URL('kernels.json', dir), JSON.stringify(rows, null, 2) + '\n') // not for a GEMV-only run
if (gemvRow !== undefined) {
  writeFileSync(new URL('kernels-gemv.json', dir), JSON.stringify({
    ...gemvRow,
    device: gpu.info.description,
    command: `npm run bench:kernels -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    load: { before: round(loadBefore), after: round(os.loadavg()[0]) },
    note: 'best of the trials; GEMV(s) and the vec4 copy interleaved on one GPUDevice'
  }, null, 2) + '\n')
}
if (rows.length > 0) {
  writeFileSync(new URL('kernels.meta.json', dir), JSON.stringify({
    command: `npm run bench:kernels -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    // 1-minute load averages: other processes on the shared machine slow every kernel alike.
    load: { before: round(loadBefore), after: round(os.loadavg()[0]) },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    adapter: gpu.info,
    tfjs: tf?.version_core ?? null,
    trials,
    note: 'best of the trials; ours, tfjs and naive interleaved on one GPUDevice'
  }, null, 2) + '\n')
}
process.exit(0)
