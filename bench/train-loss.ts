/**
 * bench:train, part 2 — eval loss after the same tokens: N-worker DiLoCo (batch B each) vs one
 * worker with batch N·B, the same steps, the same inner AdamW (warm-up, clipping, weight decay),
 * on a tiny byte-level Llama and the Brown corpus. Every inner lr of the grid runs on both sides
 * (and every outer lr:momentum on DiLoCo's) for every seed; each side keeps its best mean loss on
 * the *tuning* windows and reports its mean loss on the disjoint *test* windows. Also part 1:
 * bytes on the wire per worker per inner step (measured: every allreduce message a worker sent).
 */
import type { Backend } from '../web/src/gpu/backend.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../web/src/model/data.ts'
import { initModel } from '../web/src/model/model.ts'
import { evaluateLoss, Trainer } from '../web/src/model/train.ts'
import { MemoryNetwork } from '../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../web/src/swarm/train/allreduce.ts'
import { codecOf, type CompressionSpec } from '../web/src/swarm/train/codec.ts'
import { TINY_MODEL } from '../web/src/swarm/train/run-board.ts'
import { DiLoCoWorker } from '../web/src/swarm/train/worker.ts'

/** The loss comparison's settings (bench/train.ts flags). */
export interface LossOptions {
  /** Workers. */
  N: number
  /** Inner steps per round. */
  H: number
  /** Rounds. */
  R: number
  /** Tokens per sequence. */
  T: number
  /** Sequences per inner step per DiLoCo worker; the baseline takes N·B per step. */
  B: number
  /** Inner lr over the run, both sides: warm-up then constant, or warm-up then cosine to MIN_LR_FRAC·lr at step R·H. */
  SCHEDULE: 'constant' | 'cosine'
  MIN_LR_FRAC: number
  /** Inner AdamW lr grid, run on both sides (each keeps its best on the tuning windows). */
  LRS: number[]
  SEEDS: number[]
  WARMUP: number
  /**
   * Outer (lr:momentum[:finalLr]) grid, DiLoCo only; with the inner lr, chosen on the tuning
   * windows. finalLr: the outer lr moves linearly from lr at the first sync to finalLr at the last.
   */
  OUTERS: Outer[]
  /** The model: TINY_MODEL with this width (MLP 2×) and depth. */
  HIDDEN: number
  LAYERS: number
  /** Inner AdamW betas and weight decay, both sides. */
  ADAM: { beta1: number, beta2: number, weightDecay: number }
  /** Gradient-norm clip, both sides (0: none). @default 1 */
  MAX_GRAD_NORM?: number
  /** DiLoCo's pseudo-gradient codec (q8, or top-k: codec.ts). */
  CODEC: CompressionSpec
  /** Delayed outer update over this many syncs (worker.ts delayOuter; 0: none, 1: the one-step delay). */
  DELAY: number
  /** Streaming DiLoCo fragments (worker.ts `fragments`): each syncs every H steps, staggered by ⌊H/F⌋; a delayed update lands ⌊H/F⌋ steps late. @default 1 */
  FRAGMENTS?: number
  /** Error-feedback decay β (worker.ts efDecay; < 1: SparseLoCo's error-feedback momentum). */
  EF_DECAY: number
  /** θ_local ← θ_global − residual after each sync (worker.ts localResidual). */
  LOCAL_RESIDUAL?: boolean
  /** Screening: no baseline runs (loss_ratio NaN). */
  SKIP_BASELINE?: boolean
  /** Runs (one baseline or one DiLoCo run of a seed and lr) at once, each in its own process; 1: all in this one. */
  JOBS?: number
  /** The backend the child processes of JOBS > 1 create (bench/train.ts --device). */
  DEVICE?: string
}

/** A codec as the results name it: q8/64, topk/256/4/2/4 (chunk/k/bits/resultBits). */
export function codecName (c: CompressionSpec): string {
  return codecOf(c).id
}

/** The bench's model: the swarm's TINY_MODEL (C 32, 2 layers) unless --hidden / --layers say otherwise. */
function benchModel (o: LossOptions): Record<string, unknown> {
  return { ...TINY_MODEL, hidden_size: o.HIDDEN, intermediate_size: 2 * o.HIDDEN, num_hidden_layers: o.LAYERS }
}

type Outer = { lr: number, momentum: number, finalLr?: number }

/** An outer setting as the results name it: lr:momentum, or lr:momentum:finalLr with a decay. */
const outerName = (o: Outer): string => `${o.lr}:${o.momentum}${o.finalLr === undefined ? '' : `:${o.finalLr}`}`

export type LossResult = Awaited<ReturnType<typeof lossAndBytes>>

/** Data seeds of seed s are DATA_SEED_STRIDE·s + (worker index + 1), or + BASELINE_DATA_SEED for the baseline. */
const DATA_SEED_STRIDE = 100
const BASELINE_DATA_SEED = 77
/** Held-out windows for tuning and, disjoint from them, for the reported test loss. */
const EVAL_WINDOWS = 64

function log (line: string): void { process.stderr.write(line + '\n') }

/** Splits the corpus (train / tuning / test byte ranges) and runs the comparison. */
export async function runLossBench (o: LossOptions, be: Backend): Promise<LossResult> {
  const { train, tuneW, testW } = await benchData(o)
  return await lossAndBytes(o, be, train, tuneW, testW)
}

/** The corpus's training range and the tuning and test windows (disjoint byte ranges). */
async function benchData (o: LossOptions): Promise<{ train: TextDataset, tuneW: Window[], testW: Window[] }> {
  const { train, validation } = new TextDataset(await brownCorpus()).split(0.05)
  const { train: tuneSet, validation: testSet } = validation.split(0.5)
  const take = (d: TextDataset): Window[] => { const it = d.windows(o.T, 4242); return Array.from({ length: EVAL_WINDOWS }, () => it.next().value as Window) }
  return { train, tuneW: take(tuneSet), testW: take(testSet) }
}

interface LossRun { tune: number, test: number, bytesPerStep: number }

/** One N-worker DiLoCo run (in-process workers over MemoryNetwork): eval losses and bytes sent. */
async function dilocoRun (o: LossOptions, be: Backend, train: TextDataset, tuneW: Window[], testW: Window[], seed: number, lr: number, outer: Outer): Promise<LossRun & { P: number }> {
  const { N, H, R, T, WARMUP, B } = o
  const F = o.FRAGMENTS ?? 1
  const config = parseConfig(benchModel(o))
  const net = new MemoryNetwork({ seed })
  const ids = Array.from({ length: N }, (_, i) => `worker-${i}`)
  const dir = { expected: () => ids }
  const workers = ids.map((id, i) => {
    // All workers share this process's one thread, so they reach a sync minutes apart: the
    // ready window is widened so none is left out (in a real swarm each has its own device).
    const ar = new AllReducePeer(net.endpoint(id), { run: 'bench', directory: dir, readyWindowMs: 600_000, coordinatorTimeoutMs: 1_200_000, partTimeoutMs: 120_000, ...(o.CODEC.kind === 'q8' ? { block: o.CODEC.block } : {}), codec: codecOf(o.CODEC) })
    return new DiLoCoWorker(initModel(config, be, seed), train, ar, { innerSteps: H, seqLen: T, batchSize: B, innerLr: lr, warmupSteps: WARMUP, ...decay(o, lr), adam: o.ADAM, maxGradNorm: o.MAX_GRAD_NORM ?? 1, dataSeed: DATA_SEED_STRIDE * seed + i + 1, outer: outer.finalLr === undefined ? outer : { ...outer, decaySyncs: R - 1 }, delayOuter: o.DELAY === 0 ? false : o.DELAY, fragments: F, efDecay: o.EF_DECAY, localResidual: o.LOCAL_RESIDUAL === true, ...(o.CODEC.kind === 'q8' ? { block: o.CODEC.block } : {}) }, {})
  })
  for (const w of workers) await w.initFromModel()
  // Fragment 0's R-th sync is at step R·H; the other fragments' last ones come before it: every
  // worker takes R·H steps, the baseline's count.
  await Promise.all(workers.map(async w => { await w.runSyncs(R * F - (F - 1), undefined, { last: true }) }))
  const hashes = new Set(workers.map(w => w.lastHash))
  if (hashes.size !== 1) throw new Error(`replicas diverged: ${[...hashes].join(', ')}`)
  const tune = await workers[0].evalGlobal(tuneW)
  const test = await workers[0].evalGlobal(testW)
  const P = workers[0].layout.total
  const bytesPerStep = workers.map(w => w.allreduce.bytesSent).reduce((x, y) => x + y, 0) / N / (R * H)
  for (const w of workers) { w.allreduce.stop(); w.dispose() }
  return { tune, test, bytesPerStep, P }
}

/** The DiLoCo worker's decay options for this schedule (none: constant after the warm-up). */
function decay (o: LossOptions, lr: number): { totalSteps?: number, minInnerLr?: number } {
  return o.SCHEDULE === 'cosine' ? { totalSteps: o.R * o.H, minInnerLr: o.MIN_LR_FRAC * lr } : {}
}

/** The baseline: one worker, N× batch, the same steps (so the same tokens), the same inner optimizer. */
async function baselineRun (o: LossOptions, be: Backend, train: TextDataset, tuneW: Window[], testW: Window[], seed: number, lr: number): Promise<LossRun> {
  const { N, H, R, T, WARMUP, B } = o
  const model = initModel(parseConfig(benchModel(o)), be, seed)
  const schedule = o.SCHEDULE === 'cosine'
    ? { lr, warmupSteps: WARMUP, totalSteps: R * H, minLr: o.MIN_LR_FRAC * lr }
    : { lr, warmupSteps: WARMUP, totalSteps: Number.MAX_SAFE_INTEGER, minLr: lr }
  const tr = new Trainer(model, schedule, o.ADAM, { maxGradNorm: o.MAX_GRAD_NORM ?? 1 })
  const it = train.windows(T, DATA_SEED_STRIDE * seed + BASELINE_DATA_SEED)
  for (let s = 0; s < R * H; s++) await tr.trainStep(Array.from({ length: N * B }, () => it.next().value as Window))
  const tune = await evaluateLoss(model, tuneW)
  const test = await evaluateLoss(model, testW)
  tr.dispose(); model.dispose()
  return { tune, test, bytesPerStep: NaN }
}

/** One run of the comparison: the baseline or DiLoCo at one inner lr and seed (and outer setting). */
export type Cell = { kind: 'baseline', lr: number, seed: number } | { kind: 'diloco', lr: number, seed: number, outer: Outer }

const cellKey = (c: Cell): string => JSON.stringify(c.kind === 'baseline' ? [c.kind, c.lr, c.seed] : [c.kind, c.lr, c.seed, outerName(c.outer)])

/** Runs one cell here. */
export async function runCell (o: LossOptions, be: Backend, c: Cell, data?: Awaited<ReturnType<typeof benchData>>): Promise<LossRun & { P?: number }> {
  const { train, tuneW, testW } = data ?? await benchData(o)
  return c.kind === 'baseline'
    ? await baselineRun(o, be, train, tuneW, testW, c.seed, c.lr)
    : await dilocoRun(o, be, train, tuneW, testW, c.seed, c.lr, c.outer)
}

/**
 * Runs `cells`, o.JOBS at a time in child processes (bench/train-loss-cell.ts; in this process
 * when JOBS is 1), calling `done` as each finishes; resolves to their results by cellKey.
 */
async function runCells (o: LossOptions, be: Backend, data: Awaited<ReturnType<typeof benchData>>, cells: Cell[], done: (c: Cell, r: LossRun) => void): Promise<Map<string, LossRun & { P?: number }>> {
  const out = new Map<string, LossRun & { P?: number }>()
  const jobs = o.JOBS ?? 1
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < cells.length) {
      const c = cells[next++]
      const r = jobs <= 1 ? await runCell(o, be, c, data) : await runCellInChild(o, c)
      out.set(cellKey(c), r)
      done(c, r)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, lane))
  return out
}

/** One cell in a child process: the options and the cell go in as JSON, its result comes back as the last stdout line. */
async function runCellInChild (o: LossOptions, c: Cell): Promise<LossRun & { P?: number }> {
  const { spawn } = await import('node:child_process')
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./train-loss-cell.ts', import.meta.url).pathname], { stdio: ['pipe', 'pipe', 'inherit'] })
  child.stdin.end(JSON.stringify({ o, c, device: o.DEVICE ?? 'cpu' }))
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  if (code !== 0) throw new Error(`bench cell ${cellKey(c)} exited with code ${code}`)
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as LossRun & { P?: number }
}

const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length

/**
 * Eval loss after the same tokens, tuned fairly: every inner lr of the grid is run on both sides
 * for every seed; each side keeps the lr with the lowest mean loss on the *tuning* windows, and
 * its mean loss on the disjoint *test* windows is reported (the test windows choose nothing).
 */
async function lossAndBytes (o: LossOptions, be: Backend, train: TextDataset, tuneW: Window[], testW: Window[]): Promise<{ diloco: number, baseline: number, bytesPerStep: number, dpBytesPerStep: number, P: number, detail: Record<string, unknown> }> {
  const { N, H, R, T, B, WARMUP, LRS, SEEDS, OUTERS } = o
  const base = new Map<number, LossRun[]>(LRS.map(lr => [lr, []]))
  const grid: Array<{ lr: number, outer: Outer, d: LossRun[] }> = LRS.flatMap(lr => OUTERS.map(outer => ({ lr, outer, d: [] })))
  let P = 0
  const t0 = performance.now()
  // Every run is deterministic for its seed and settings, so running them in child processes
  // (--jobs) gives the same figures as running them here one after another.
  const cells: Cell[] = LRS.flatMap(lr => SEEDS.flatMap(seed => [
    ...(o.SKIP_BASELINE === true ? [] : [{ kind: 'baseline' as const, lr, seed }]),
    ...OUTERS.map(outer => ({ kind: 'diloco' as const, lr, seed, outer }))
  ]))
  const results = await runCells(o, be, { train, tuneW, testW }, cells, (c, r) => {
    const what = c.kind === 'baseline' ? 'baseline' : `outer ${outerName(c.outer)}: DiLoCo`
    log(`  lr ${c.lr} seed ${c.seed}${c.kind === 'baseline' ? ':' : ''} ${what} tune ${r.tune.toFixed(4)} test ${r.test.toFixed(4)}  (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
  })
  const nan: LossRun = { tune: NaN, test: NaN, bytesPerStep: NaN }
  for (const lr of LRS) {
    for (const seed of SEEDS) {
      // Screening runs of DiLoCo settings may skip the baseline (it does not depend on them): ratio NaN.
      base.get(lr)!.push(o.SKIP_BASELINE === true ? nan : results.get(cellKey({ kind: 'baseline', lr, seed }))!)
      for (const g of grid.filter(x => x.lr === lr)) {
        const d = results.get(cellKey({ kind: 'diloco', lr, seed, outer: g.outer }))! as LossRun & { P: number }
        P = d.P
        g.d.push(d)
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
      codec: codecName(o.CODEC), ef_decay: o.EF_DECAY, delay_outer: o.DELAY > 0, delay_outer_syncs: o.DELAY, fragments: o.FRAGMENTS ?? 1, local_residual: o.LOCAL_RESIDUAL === true, hidden: o.HIDDEN, layers: o.LAYERS, workers: N, inner_steps: H, rounds: R, seq_len: T, batch_per_worker: B, baseline_batch: N * B, warmup_steps: WARMUP,
      adam: o.ADAM, max_grad_norm: o.MAX_GRAD_NORM ?? 1,
      schedule: o.SCHEDULE === 'cosine' ? `cosine to ${o.MIN_LR_FRAC}·lr at step ${R * H}` : 'constant', seeds: SEEDS, inner_lr_grid: LRS,
      outer_grid: OUTERS.map(outerName), params: P,
      diloco_inner_lr: bd.lr, diloco_outer: outerName(bd.outer), baseline_inner_lr: bb.lr,
      diloco_bytes_per_worker_step: Number(bytesPerStep.toFixed(1)), dp_fp32_bytes_per_worker_step: Math.round(dp),
      diloco_test_loss: Number(bd.test.toFixed(4)), baseline_test_loss: Number(bb.test.toFixed(4)),
      // [tune, test] per seed
      diloco_runs: grid.map(g => ({ lr: g.lr, outer: outerName(g.outer), runs: g.d.map(r => [Number(r.tune.toFixed(4)), Number(r.test.toFixed(4))]) })),
      baseline_runs: LRS.map(lr => ({ lr, runs: base.get(lr)!.map(r => [Number(r.tune.toFixed(4)), Number(r.test.toFixed(4))]) }))
    }
  }
}
