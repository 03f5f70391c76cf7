/**
 * `npm run bench:trust` — issue #13's figures: an open swarm with hostile peers in it.
 *
 * inference (bench/verify-swarm.ts, seeded in-process network, one JS thread):
 *   - overhead on the default shape (byte-llama, seeded weights): verification off, sampled at
 *     VERIFY_RATE, windowed (`window` W: every position checked, W at a time, in one batched
 *     step) and strict; `verify_overhead` = whole-generation wall time / unverified − 1;
 *   - detection with fake blocks: one liar among honest servers — 1 %, 10 %, 100 % of steps,
 *     ×1.03 and ×1.5, another model's blocks, one that turns liar after 100 steps — over 200
 *     steps; `detect_rate` = runs in which a lie was outvoted and rewound / runs with lies,
 *     `ban_rate` = runs in which it was banned (second outvoted lie) / runs with lies;
 *   - false positives: f32 KV against f16 KV on tiny-mixtral, windowed, ≥ `--honest` positions.
 * commitments: the overhead run above with `verify.commit` 32 against full rows, windowed and
 *   strict, on fewer tokens (64): `answer_bytes_per_check`, what a check moves back to the client.
 * training (test/swarm/train/hostile-trainers.ts, seeded MemoryNetwork, ManualClock): 8 workers
 *   of which 2 attack (sign-flip, scale, zeros, noise, replay), trimmed mean (trim 2) and the
 *   contribution check; `loss_ratio` = final held-out loss / the all-honest run's.
 * floods (bench/trust-floods.ts): a CRDT flooder and identity loopers against a relay's doc, and
 *   identities created in a loop against a real relay.
 *
 * overhead: the inference part's overhead run alone, off / W = 32 / W = 64, 5 trials (`cpu_overhead`: the same
 *   ratio on the process's CPU time, which the network's idle timers and other processes' waits do not inflate).
 * Flags: --only inference|detection|honest|overhead|commitments|training|floods (one part; its key in trust.json is replaced, the
 *        others kept, each part with its own date and load) --runs N (10) --honest N (10000)
 *        --tokens N (128) --trials N (3) --syncs N (4)
 *        --mode sampled|windowed (with --only detection: that mode's runs alone, merged into its key)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { VERIFY_RATE } from '../web/src/swarm/constants.ts'
import type { Aggregation } from '../web/src/swarm/train/robust.ts'
import { hostileRun, trainingData, type Attack } from '../test/swarm/train/hostile-trainers.ts'
import { floods } from './trust-floods.ts'
import { arg, detection, falsePositives, load, overhead, type LieCase, type Mode } from './verify-swarm.ts'

const RUNS = Number(arg('runs') ?? 10)
const HONEST = Number(arg('honest') ?? 10_000)
const WINDOW = 32

/** The verification modes the detection runs compare: sampled steps, and windows of WINDOW. */
const SAMPLED: Mode = [`rate ${VERIFY_RATE}`, { rate: VERIFY_RATE, seed: 1 }]
const WINDOWED: Mode = [`window ${WINDOW}`, { window: WINDOW }]

/** The lying servers of the detection runs: how often each lies and how. */
const LIE_CASES: LieCase[] = [
  ...[0.01, 0.1, 1].flatMap(p => [
    { name: `lies ${p * 100} % small (×1.03)`, kind: 'small-scale' as const, when: { p } },
    { name: `lies ${p * 100} % large (×1.5)`, kind: 'scale' as const, when: { p } }
  ]),
  { name: 'another model\'s blocks on 10 %', kind: 'model', when: { p: 0.1 } },
  { name: 'honest 100 steps, then ×1.03 on 5 %', kind: 'small-scale', when: { after: 100, p: 0.05 } }
]

async function inference (): Promise<Record<string, unknown>> {
  const o = await overhead({
    device: 'cpu',
    promptLen: 16,
    tokens: Number(arg('tokens') ?? 128),
    trials: Number(arg('trials') ?? 3),
    modes: [['off', undefined], SAMPLED, ['window 16', { window: 16 }], WINDOWED, ['window 64', { window: 64 }], ['strict', { rate: 1 }]]
  })
  const d = await detection({ steps: 200, runs: RUNS, modes: [SAMPLED, WINDOWED], cases: LIE_CASES })
  const h = await falsePositives(HONEST, { window: WINDOW }, `window ${WINDOW}`)
  return { overhead: o, detection: d, false_positives: h }
}

/**
 * The detection runs alone, with their own key: counts only (seeded, no timing decides), so
 * `--runs` can be raised far enough to bound a 0.99 goal without re-running the timed parts.
 */
async function detectionOnly (): Promise<Record<string, unknown>> {
  const mode = arg('mode')
  if (mode !== undefined && mode !== 'sampled' && mode !== 'windowed') throw new Error(`--mode must be sampled or windowed, got ${mode}`)
  const modes = mode === undefined ? [SAMPLED, WINDOWED] : [mode === 'sampled' ? SAMPLED : WINDOWED]
  return await detection({ steps: 200, runs: RUNS, modes, cases: LIE_CASES })
}

/** The honest runs alone (windowed, as in `inference`): counts only, so they can be re-run without the timed parts. */
async function honestOnly (): Promise<Record<string, unknown>> {
  return await falsePositives(HONEST, { window: WINDOW }, `window ${WINDOW}`)
}

/** The overhead run alone (off, W = 32, W = 64), wall and CPU time: quick, for re-measuring on a quiet machine. */
async function overheadOnly (): Promise<Record<string, unknown>> {
  return await overhead({
    device: 'cpu',
    promptLen: 16,
    tokens: Number(arg('tokens') ?? 128),
    trials: Number(arg('trials') ?? 5),
    modes: [['off', undefined], [`window ${WINDOW}`, { window: WINDOW }], ['window 64', { window: 64 }]]
  })
}

/** What commitments (verify.commit, swarm/commitment.ts) save: answer bytes per check, full rows against top-k commitments. */
async function commitments (): Promise<Record<string, unknown>> {
  const K = 32
  return await overhead({
    device: 'cpu',
    promptLen: 16,
    tokens: Number(arg('tokens') ?? 64),
    trials: Number(arg('trials') ?? 3),
    modes: [['off', undefined], [`window ${WINDOW}`, { window: WINDOW }], [`window ${WINDOW} commit ${K}`, { window: WINDOW, commit: K }], ['strict', { rate: 1 }], [`strict commit ${K}`, { rate: 1, commit: K }]]
  })
}

async function training (): Promise<Record<string, unknown>> {
  const data = await trainingData()
  const ids = ['w-a', 'w-b', 'w-c', 'w-d', 'w-e', 'w-f', 'w-g', 'w-h']
  const attackers = ['w-c', 'w-f'] // neither the coordinator (smallest id) nor last
  const aggregation: Aggregation = { kind: 'trimmed-mean', trim: 2 }
  const syncs = Number(arg('syncs') ?? 4)
  const seed = 21
  const final = (r: Awaited<ReturnType<typeof hostileRun>>): number => r.honest[0].syncs[r.honest[0].syncs.length - 1].evalLoss!
  const honestRun = await hostileRun({ seed, ids, attackers, syncs, aggregation, data })
  const honestLoss = final(honestRun)
  const honestExcluded = honestRun.nodes.flatMap(n => n.syncs.flatMap(s => s.rejected))
  honestRun.dispose()
  console.log(`training, all honest: loss ${honestRun.before.toFixed(4)} → ${honestLoss.toFixed(4)}, excluded ${JSON.stringify(honestExcluded)} (load ${load()})`)
  const attacks: Record<string, unknown> = {}
  for (const attack of ['sign-flip', 'scale', 'zeros', 'noise', 'replay'] as Attack[]) {
    const r = await hostileRun({ seed, ids, attackers, attack, syncs, aggregation, data })
    const loss = final(r)
    const syncsSeen = r.honest[0].syncs
    // Rounds in which each attacker was excluded, as the honest peers recorded them.
    const excludedIn = Object.fromEntries(attackers.map(a => [a, syncsSeen.filter(s => s.rejected.includes(a)).map(s => s.seq)]))
    const honestWrongly = [...new Set(r.honest.flatMap(n => n.syncs.flatMap(s => s.rejected.filter(p => !attackers.includes(p)))))]
    const hashes = new Map<number, Set<string>>()
    for (const n of r.honest) for (const s of n.syncs) hashes.set(s.seq, (hashes.get(s.seq) ?? new Set()).add(s.hash))
    const identical = [...hashes.values()].every(h => h.size === 1)
    r.dispose()
    attacks[attack] = { loss, loss_ratio: loss / honestLoss, attackers_excluded_in_syncs: excludedIn, syncs: syncsSeen.length, honest_excluded: honestWrongly, honest_replicas_identical: identical, timeouts_fired: r.fired }
    console.log(`training, ${attack}: loss ${loss.toFixed(4)} (ratio ${(loss / honestLoss).toFixed(4)}), attackers excluded in syncs ${JSON.stringify(excludedIn)}, honest excluded ${JSON.stringify(honestWrongly)}, replicas identical ${identical} (load ${load()})`)
  }
  return {
    setup: `seeded MemoryNetwork, ManualClock; 8 DiLoCo workers (2-layer llama, hidden 32, Brown corpus bytes), ${attackers.join(' and ')} hostile; q8 pseudo-gradients, ${JSON.stringify(aggregation)}, Gauntlet-style contribution check; ${syncs} syncs of 4 inner steps; loss = held-out loss after the last sync`,
    honest: { before: honestRun.before, loss: honestLoss, excluded: honestExcluded },
    attacks
  }
}

const only = arg('only')
const parts: Record<string, () => Promise<Record<string, unknown>>> = { inference, detection: detectionOnly, honest: honestOnly, overhead: overheadOnly, commitments, training, floods }
const file = 'bench/results/trust.json'
for (const [name, run] of Object.entries(parts)) {
  if (only !== undefined && only !== name) continue
  const t0 = Date.now()
  const loadBefore = load()
  const part = await run()
  // Read just before writing: parts run as separate processes keep each other's keys.
  const out = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, unknown>
  const was = out[name] as { cases?: Record<string, unknown> } | undefined
  // One mode's detection runs (--mode) replace that mode's cases and keep the other's.
  const merged = name === 'detection' && arg('mode') !== undefined && was?.cases !== undefined ? { ...part, cases: { ...was.cases, ...(part.cases as Record<string, unknown>) } } : part
  out[name] = { date: new Date().toISOString(), load_before: loadBefore, load_after: load(), seconds: (Date.now() - t0) / 1000, ...merged }
  out.device = `CPU only: ${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}, Node ${process.version}`
  mkdirSync('bench/results', { recursive: true })
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
}
process.exit(0)
