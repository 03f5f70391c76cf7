/**
 * `npm run bench:verify` — what inference verification (web/src/swarm/client/verify.ts) costs
 * and what it catches at the default sampling rate, on the seeded in-process network
 * (bench/verify-swarm.ts holds the measurements; bench:trust runs them for every mode beside
 * the training and flood figures).
 *
 * 1. Overhead: verification off, at the default rate (VERIFY_RATE) and in strict mode (rate 1).
 * 2. Detection: one server among honest ones lies on 1 %, 10 % or 100 % of its steps, by a small
 *    (×1.03) or large (×1.5) scale, over `--steps` (200) steps at the default rate.
 * 3. False positives (`--honest N`, default 2000 positions): f32 KV against f16 KV, strict mode.
 *
 * Flags: --device cpu|webgpu (cpu) --prompt-len N (16) --tokens N (24) --trials N (5) --runs N (10)
 *        --steps N (200) --honest N (2000)
 *        --only honest|detection: that part alone, into bench/results/verify-<part>.json
 * Writes bench/results/verify.json (headline figures) and verify.meta.json (every trial, load).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { VERIFY_RATE } from '../web/src/swarm/constants.ts'
import { arg, detection, falsePositives, load, overhead, type LieCase, type Mode } from './verify-swarm.ts'

const STEPS = Number(arg('steps') ?? 200)
const RUNS = Number(arg('runs') ?? 10)
const HONEST = Number(arg('honest') ?? 2000)
const rate: Mode = [`rate ${VERIFY_RATE}`, { rate: VERIFY_RATE, seed: 1 }]
const cases: LieCase[] = [0.01, 0.1, 1].flatMap(p => [
  { name: `lies ${p * 100} % small (×1.03)`, kind: 'small-scale' as const, when: { p } },
  { name: `lies ${p * 100} % large (×1.5)`, kind: 'scale' as const, when: { p } }
])
const detect = async (): Promise<Record<string, unknown>> => await detection({ steps: STEPS, runs: RUNS, modes: [rate], cases })
const honest = async (): Promise<Record<string, unknown>> => await falsePositives(HONEST, { rate: 1 }, 'strict mode')

const t0 = Date.now()
const loadBefore = load()
const only = arg('only')
if (only === 'honest' || only === 'detection') {
  const part = only === 'honest' ? await honest() : await detect()
  mkdirSync('bench/results', { recursive: true })
  writeFileSync(`bench/results/verify-${only}.json`, JSON.stringify({ date: new Date().toISOString(), load_before: loadBefore, load_after: load(), seconds: (Date.now() - t0) / 1000, ...part }, null, 2) + '\n')
  process.exit(0)
}
const o = await overhead({ device: arg('device') ?? 'cpu', promptLen: Number(arg('prompt-len') ?? 16), tokens: Number(arg('tokens') ?? 24), trials: Number(arg('trials') ?? 5), modes: [['off', undefined], rate, ['strict', { rate: 1 }]] })
const d = await detect()
const h = await honest()
mkdirSync('bench/results', { recursive: true })
writeFileSync('bench/results/verify.json', JSON.stringify({ gen_ms: o.gen_ms, decode_tps: o.decode_tps, verify_overhead: o.verify_overhead, recompute_ratio: o.recompute_ratio, detection: (d.cases as Record<string, unknown>)[rate[0]], false_positives: h.false_positives, honest_positions: h.positions_compared }, null, 2) + '\n')
writeFileSync('bench/results/verify.meta.json', JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, load_before: loadBefore, load_after: load(), seconds: (Date.now() - t0) / 1000, overhead: o, detection: d, honest: h }, null, 2) + '\n')
console.log(JSON.stringify(o, null, 2))
process.exit(0)
