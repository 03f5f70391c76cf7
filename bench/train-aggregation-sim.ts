/**
 * Screening for issue #14's loss gap: sparse pseudo-gradient aggregations that the all-reduce does
 * not implement, simulated centrally (no network, no wire codec), to see whether one is worth a
 * protocol before building it. Four workers train the bench's tiny byte-level Llama exactly as
 * bench:train's DiLoCo workers do (same windows, inner AdamW, warm-up and eval windows); only the
 * aggregation is modelled here, with its own simplified quantisers:
 *
 *   senders  today's rule, for calibration: each member's top-k per chunk of `chunk` in 2 bits
 *            (signed grid, scale = the largest kept |value|), the mean over the members that sent
 *            each element, the mean in `rbits` on the union of supports (topk.ts, codec.ts).
 *   union    two phases: members send their top-k indices, the owner sends back the union, then
 *            every member sends its value at every index of the union (`vbits`, zero grid), so
 *            each kept element is the mean over all members; the mean in `rbits`.
 *   power    PowerSGD (Vogels et al. 2019) per matrix at rank `rank`, Q warm-started from the
 *            last round, P and Q each one dense q8 all-reduce; vectors (norms) sent dense.
 *
 * Each member keeps error feedback (β `beta`: e ← β·e + Δ, minus what it sent); the outer step is
 * θ ← θ + `outer` · mean. Bytes are the payload a worker sends per inner step (a quarter of the
 * chunks owned by each of 4 workers: 3/4 of each phase's traffic each way), without the control
 * messages that bench:train's measured bytes include (≈ 960 B a sync there).
 *
 *   node --import tsx bench/train-aggregation-sim.ts --mode union --k 5 --outer 2 [--seed 1]
 *
 * Prints one JSON line: the settings, tune and test loss, payload bytes per step and the ratio to
 * fp32 data-parallel. Findings: BENCHMARKS.md § Training, session 12.
 */
import { parseArgs } from 'node:util'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../web/src/model/data.ts'
import { initModel } from '../web/src/model/model.ts'
import { evaluateLoss, Trainer } from '../web/src/model/train.ts'
import { layoutOf, type ParamSlot } from '../web/src/swarm/train/flat.ts'
import { innerLr, readParams, writeParams, WindowStream } from '../web/src/swarm/train/inner-loop.ts'
import { TINY_MODEL } from '../web/src/swarm/train/run-board.ts'

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string', default: 'senders' },
    k: { type: 'string', default: '5' },
    chunk: { type: 'string', default: '256' },
    'inner-steps': { type: 'string', default: '30' },
    rounds: { type: 'string', default: '20' },
    outer: { type: 'string', default: '0.7' },
    beta: { type: 'string', default: '0.95' },
    vbits: { type: 'string', default: '3' },
    rbits: { type: 'string', default: '4' },
    rank: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    lr: { type: 'string', default: '3e-3' },
    hidden: { type: 'string', default: '32' }
  }
})
const MODE = a.mode
if (MODE !== 'senders' && MODE !== 'union' && MODE !== 'power') throw new Error(`--mode must be senders, union or power, got ${MODE}`)
const N = 4
const H = Number(a['inner-steps'])
const R = Number(a.rounds)
const K = Number(a.k)
const C = Number(a.chunk)
const OUTER = Number(a.outer)
const BETA = Number(a.beta)
const VBITS = Number(a.vbits)
const RBITS = Number(a.rbits)
const RANK = Number(a.rank)
const SEED = Number(a.seed)
const LR = Number(a.lr)
const f = Math.fround

/** x on the zero grid of b bits (2^b − 1 levels, scale s), decoded. */
function zeroGrid (x: number, s: number, b: number): number {
  if (s === 0) return 0
  const M = 2 ** (b - 1) - 1
  return f(f(s) * (Math.max(-M, Math.min(M, Math.round(x / s * M))) / M))
}

/** x on the signed grid of b bits (2^b levels (2j − L)/L, no zero), decoded. */
function signedGrid (x: number, s: number, b: number): number {
  if (s === 0) return 0
  const L = 2 ** b - 1
  const j = Math.max(0, Math.min(L, Math.round((x / s * L + L) / 2)))
  return f(f(s) * ((2 * j - L) / L))
}

/** int8 absmax blocks of 64, decoded (the q8 codec's rounding). */
function q8 (x: Float64Array): Float64Array {
  const out = new Float64Array(x.length)
  for (let b = 0; b < x.length; b += 64) {
    const end = Math.min(x.length, b + 64)
    let s = 0
    for (let j = b; j < end; j++) s = Math.max(s, Math.abs(x[j]))
    for (let j = b; j < end; j++) out[j] = s === 0 ? 0 : Math.round(x[j] / s * 127) * s / 127
  }
  return out
}

/** Indices of the k largest |e| in [lo, hi), ascending (ties: lower index first). */
function topIndices (e: Float32Array, lo: number, hi: number, k: number): number[] {
  const idx = Array.from({ length: hi - lo }, (_, i) => lo + i)
  idx.sort((x, y) => Math.abs(e[y]) - Math.abs(e[x]) || x - y)
  return idx.slice(0, Math.min(k, hi - lo)).sort((x, y) => x - y)
}

/** Today's rule on chunk [lo, hi): writes the mean, subtracts what each member sent; payload bytes per worker. */
function sendersChunk (ef: Float32Array[], mean: Float64Array, lo: number, hi: number): number {
  const sum = new Map<number, number>()
  const count = new Map<number, number>()
  for (const e of ef) {
    const kept = topIndices(e, lo, hi, K)
    const s = Math.max(...kept.map(j => Math.abs(e[j])))
    for (const j of kept) {
      const v = signedGrid(e[j], s, 2)
      e[j] = f(e[j] - v)
      sum.set(j, (sum.get(j) ?? 0) + v)
      count.set(j, (count.get(j) ?? 0) + 1)
    }
  }
  const m = [...sum].map(([j, s]) => [j, s / count.get(j)!] as const)
  const rs = Math.max(0, ...m.map(([, v]) => Math.abs(v)))
  for (const [j, v] of m) mean[j] = zeroGrid(v, rs, RBITS)
  const kr = Math.min(hi - lo, N * K)
  return 0.75 * (4 + K + Math.ceil(2 * K / 8)) + 0.75 * (4 + kr + Math.ceil(RBITS * kr / 8))
}

/** The two-phase union rule on chunk [lo, hi); payload bytes per worker. */
function unionChunk (ef: Float32Array[], mean: Float64Array, lo: number, hi: number): number {
  const U = [...new Set(ef.flatMap(e => topIndices(e, lo, hi, K)))].sort((x, y) => x - y)
  const sums = new Float64Array(U.length)
  for (const e of ef) {
    const s = Math.max(...U.map(j => Math.abs(e[j])))
    U.forEach((j, t) => { const v = zeroGrid(e[j], s, VBITS); e[j] = f(e[j] - v); sums[t] += v })
  }
  const rs = Math.max(0, ...Array.from(sums, v => Math.abs(v / N)))
  U.forEach((j, t) => { mean[j] = zeroGrid(sums[t] / N, rs, RBITS) })
  // indices to the owner, the union back (a count byte + indices), values on it, the mean on it
  return 0.75 * K + 0.75 * (1 + U.length) + 0.75 * (4 + Math.ceil(VBITS * U.length / 8)) + 0.75 * (4 + Math.ceil(RBITS * U.length / 8))
}

/** PowerSGD on one matrix slot: writes its approximate mean, subtracts it from every residual; elements all-reduced. */
function powerSlot (ef: Float32Array[], mean: Float64Array, slot: ParamSlot, Qs: Map<string, Float64Array>, rand: () => number): number {
  const o = slot.offset
  const [m, n] = slot.shape
  const r = Math.min(RANK, m, n)
  let Q = Qs.get(slot.name)
  if (Q === undefined) { Q = Float64Array.from({ length: n * r }, rand); Qs.set(slot.name, Q) }
  const P = new Float64Array(m * r) // mean of M_i Q
  for (const e of ef) for (let i = 0; i < m; i++) for (let c = 0; c < r; c++) { let s = 0; for (let j = 0; j < n; j++) s += e[o + i * n + j] * Q[j * r + c]; P[i * r + c] += s / N }
  const Pq = q8(P)
  for (let c = 0; c < r; c++) { // Gram–Schmidt on P's columns
    for (let d = 0; d < c; d++) { let dot = 0; for (let i = 0; i < m; i++) dot += Pq[i * r + c] * Pq[i * r + d]; for (let i = 0; i < m; i++) Pq[i * r + c] -= dot * Pq[i * r + d] }
    let norm = 0
    for (let i = 0; i < m; i++) norm += Pq[i * r + c] ** 2
    norm = Math.sqrt(norm) || 1
    for (let i = 0; i < m; i++) Pq[i * r + c] /= norm
  }
  const Qm = new Float64Array(n * r) // mean of M_iᵀ P
  for (const e of ef) for (let j = 0; j < n; j++) for (let c = 0; c < r; c++) { let s = 0; for (let i = 0; i < m; i++) s += e[o + i * n + j] * Pq[i * r + c]; Qm[j * r + c] += s / N }
  const Qq = q8(Qm)
  Qs.set(slot.name, Qq)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0
      for (let c = 0; c < r; c++) s += Pq[i * r + c] * Qq[j * r + c]
      mean[o + i * n + j] = s
      for (const e of ef) e[o + i * n + j] = f(e[o + i * n + j] - s)
    }
  }
  return r * (m + n)
}

async function main (): Promise<void> {
  const { train, validation } = new TextDataset(await brownCorpus()).split(0.05)
  const { train: tuneSet, validation: testSet } = validation.split(0.5)
  const take = (d: TextDataset): Window[] => { const it = d.windows(32, 4242); return Array.from({ length: 64 }, () => it.next().value as Window) }
  const tuneW = take(tuneSet)
  const testW = take(testSet)
  const config = parseConfig({ ...TINY_MODEL, hidden_size: Number(a.hidden), intermediate_size: 2 * Number(a.hidden), num_hidden_layers: 2 })
  const models = Array.from({ length: N }, () => initModel(config, cpu, SEED))
  const layout = layoutOf(models[0].paramSpecs())
  const P = layout.total
  const schedule = { lr: LR, warmupSteps: 50, totalSteps: Number.MAX_SAFE_INTEGER, minLr: LR }
  const trainers = models.map(m => new Trainer(m, schedule, { beta1: 0.9, beta2: 0.999, weightDecay: 0.01 }, { maxGradNorm: 1 }))
  const streams = models.map((_, i) => new WindowStream(train, { seqLen: 32, batchSize: 1, H, dataSeed: 100 * SEED + i + 1 }))
  const ef = models.map(() => new Float32Array(P))
  const Qs = new Map<string, Float64Array>()
  let state = 12345
  const rand = (): number => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648 - 0.5 }
  let global = await readParams(models[0], layout)
  let bytes = 0
  for (let round = 0, step = 0; round < R; round++) {
    for (let h = 0; h < H; h++, step++) {
      for (let i = 0; i < N; i++) await trainers[i].trainStep(streams[i].next(step), innerLr(schedule, step + 1, trainers[i].step + 1))
    }
    for (let i = 0; i < N; i++) {
      const local = await readParams(models[i], layout)
      for (let j = 0; j < P; j++) ef[i][j] = f(f(BETA * ef[i][j]) + f(local[j] - global[j]))
    }
    const mean = new Float64Array(P)
    if (MODE === 'power') {
      let elems = 0
      for (const slot of layout.slots) {
        if (slot.shape.length === 2) { elems += powerSlot(ef, mean, slot, Qs, rand); continue }
        const avg = new Float64Array(slot.size)
        for (let j = 0; j < slot.size; j++) { let s = 0; for (const e of ef) s += e[slot.offset + j]; avg[j] = s / N }
        const sent = q8(avg)
        for (let j = 0; j < slot.size; j++) { mean[slot.offset + j] = sent[j]; for (const e of ef) e[slot.offset + j] = 0 }
        elems += slot.size
      }
      bytes += 2 * 0.75 * elems * 1.0625 // two q8 all-reduces (reduce-scatter + all-gather)
    } else {
      for (let lo = 0; lo < P; lo += C) bytes += (MODE === 'union' ? unionChunk : sendersChunk)(ef, mean, lo, Math.min(P, lo + C))
    }
    global = Float32Array.from(global, (g, j) => f(g + f(f(OUTER) * f(mean[j]))))
    for (const m of models) writeParams(m, layout, 0, global)
  }
  const tune = await evaluateLoss(models[0], tuneW)
  const test = await evaluateLoss(models[0], testW)
  const perStep = bytes / (R * H)
  const dp = 2 * 0.75 * P * 4
  console.log(JSON.stringify({ mode: MODE, k: K, chunk: C, H, R, outer: OUTER, beta: BETA, vbits: VBITS, rbits: RBITS, rank: RANK, lr: LR, seed: SEED, tune: Number(tune.toFixed(4)), test: Number(test.toFixed(4)), payload_bytes_per_step: Number(perStep.toFixed(1)), payload_ratio: Math.round(dp / perStep) }))
  for (const m of models) m.dispose()
  for (const t of trainers) t.dispose()
}

await main()
