/**
 * `npm run bench:moe` — MoE expert placement: how many of the pairs of experts the router picks
 * together for one token end up on one peer (one `expert` call instead of two), for
 *
 *   naive     contiguous split of each layer's experts over the peers ({0,1} | {2,3})
 *   offline   placeExperts: the affinity grouping computed with all counts at hand
 *   scheduler the live scheduler (swarm/moe/placement.ts): peers join one by one, each choosing
 *             with the records of those before it and the co-selection summary a block server
 *             would publish (summarize → affinityFromPeers, the CRDT path)
 *   coverage  the scheduler without co-selection counts (what a swarm without summaries does)
 *
 * Counts come from the CPU twins routing real text: Brown-corpus windows (byte tokens) through
 * every MoE layer of the model. Placements are fitted on windows of the training part and scored
 * on windows of the held-out part (so a grouping is not scored on the counts it was fitted to).
 * Score per layer: share of co-selected pairs kept on one peer (affinity-weighted), and `expert`
 * calls per token (distinct peers among its top-k experts; decode sends one call per peer).
 * Also the former bench:inference measure: tiny-mixtral's greedy decode from the fixture prompt.
 *
 * Models: models/byte-mixtral (trained, 3 layers × 4 experts, top-2) and the tiny-mixtral test
 * fixture (random weights, 2 × 4, top-2). Flags: --windows N (24) --seq-len T (128) --peers P (2)
 * Writes bench/results/moe.json (per model and layer: shares and calls/token of each placement)
 * and moe.counts.json (the co-selection counts).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { brownCorpus, TextDataset } from '../web/src/model/data.ts'
import { argmax } from '../web/src/model/sampler.ts'
import { sourceFrom } from '../web/src/model/source.ts'
import { loadClientEnds, loadSpanBackend } from '../web/src/swarm/model-backend.ts'
import { CoSelectionStats, placeExperts } from '../web/src/swarm/moe/coselection.ts'
import { chooseExperts, placementQuality } from '../web/src/swarm/moe/placement.ts'
import { affinityFromPeers, affinityFromStats, summarize, type Affinity } from '../web/src/swarm/moe/summary.ts'
import type { ExpertRecord } from '../web/src/swarm/records.ts'

const { values: flags } = parseArgs({ options: { windows: { type: 'string' }, 'seq-len': { type: 'string' }, peers: { type: 'string' } } })
const WINDOWS = Number(flags.windows ?? 24)
const SEQ_LEN = Number(flags['seq-len'] ?? 128)
const PEERS = Number(flags.peers ?? 2)
/** The former bench:inference measure: greedy tokens decoded from the fixture prompt. */
const GREEDY_TOKENS = 200

/** CoSelectionStats that also keeps each token's choices (calls per token need them). */
class RecordingStats extends CoSelectionStats {
  /** Per layer: every recorded token's k choices, flattened. */
  readonly choices: number[][] = Array.from({ length: this.numLayers }, () => [])
  k = 0
  override record (choices: ReadonlyArray<ArrayLike<number>>, k: number): void {
    super.record(choices, k)
    this.k = k
    choices.forEach((c, l) => { for (let i = 0; i < c.length; i++) this.choices[l].push(c[i]) })
  }

  /** Mean distinct groups (peers) among a token's k experts at layer l; an expert no group holds costs a call of its own. */
  callsPerToken (l: number, groups: ReadonlyArray<readonly number[]>): number {
    const groupOf = new Map<number, number>()
    groups.forEach((g, i) => { for (const e of g) if (!groupOf.has(e)) groupOf.set(e, i) })
    const c = this.choices[l]
    let calls = 0
    for (let t = 0; t < c.length; t += this.k) calls += new Set(c.slice(t, t + this.k).map(e => groupOf.get(e) ?? -1 - e)).size
    return calls / (c.length / this.k)
  }
}

type Loaded = Awaited<ReturnType<typeof load>>

async function load (dir: string) {
  const source = sourceFrom(dir)
  const ends = await loadClientEnds(source, cpu)
  const L = ends.config.numLayers
  return { dir, ends, L, E: ends.config.numExperts, id: dir.split('/').at(-1)!, source }
}

/** Routes every window through all layers (prefill), recording the router's choices. */
async function route (m: Loaded, windows: Int32Array[]): Promise<RecordingStats> {
  const stats = new RecordingStats(m.L, m.E)
  const span = await loadSpanBackend(m.source, cpu, m.id, 0, m.L, { coselection: stats })
  for (const w of windows) {
    const ids = Array.from(w)
    const cache = span.createCache(ids.length, 0, m.L)
    await span.forward([{ cache, hidden: await m.ends.ends.embed(ids), tokens: ids.length }])
    cache.dispose()
  }
  span.dispose()
  return stats
}

/** Greedy decode of `n` tokens from `prompt`, recording the routing (bench:inference's former measure). */
async function greedy (m: Loaded, prompt: number[], n: number): Promise<RecordingStats> {
  const stats = new RecordingStats(m.L, m.E)
  const span = await loadSpanBackend(m.source, cpu, m.id, 0, m.L, { coselection: stats })
  const cache = span.createCache(prompt.length + n, 0, m.L)
  const C = m.ends.config.hiddenSize
  let h = (await span.forward([{ cache, hidden: await m.ends.ends.embed(prompt), tokens: prompt.length }]))[0]
  for (let i = 0; i < n - 1; i++) {
    const logits = await m.ends.ends.logits(h.subarray(h.length - C))
    h = (await span.forward([{ cache, hidden: await m.ends.ends.embed([argmax(logits)]), tokens: 1 }]))[0]
  }
  span.dispose()
  return stats
}

const rec = (peer: string, layer: number, experts: readonly number[]): ExpertRecord =>
  ({ peer, model: 'bench', layer, experts: [...experts], throughput: 1, version: 1, expiresAt: Infinity, state: 'online' })

/** Peers join one by one, each choosing `slots` experts of `layers` with the records of those before it. */
function joinOneByOne (E: number, layers: number[], slots: number, peers: number, affinity: Affinity | undefined): ExpertRecord[] {
  const records: ExpertRecord[] = []
  for (let p = 0; p < peers; p++) {
    const self = `peer${String(p).padStart(3, '0')}`
    for (const [l, es] of chooseExperts({ numExperts: E, layers, slots, records, self, affinity })) records.push(rec(self, l, es))
  }
  return records
}

const groupsOf = (records: ExpertRecord[], l: number): number[][] => records.filter(r => r.layer === l).map(r => r.experts)
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`

interface LayerResult {
  layer: number
  placements: Record<string, number[][]>
  /** Held-out share of co-selected pairs on one peer, per placement. */
  together: Record<string, number>
  /** Held-out `expert` calls per token, per placement. */
  calls_per_token: Record<string, number>
}

function score (m: Loaded, fit: RecordingStats, test: RecordingStats): { layers: LayerResult[], joins: Array<{ peers: number, uncovered: number, together: number }> } {
  const { E, L } = m
  if (E % PEERS !== 0) throw new Error(`--peers ${PEERS} must divide the ${E} experts`)
  // What a swarm's placing peer sees: the block server's summary, through the CRDT parser.
  const live = affinityFromPeers([['blockserver', { data: { coselection: JSON.parse(JSON.stringify(summarize(fit, m.id))) } }]], m.id, L, E).affinity
  const held = affinityFromStats(test)
  const layers: LayerResult[] = []
  for (let l = 0; l < L; l++) {
    const placements: Record<string, number[][]> = {
      naive: Array.from({ length: PEERS }, (_, p) => Array.from({ length: E / PEERS }, (_, i) => p * (E / PEERS) + i)),
      offline: placeExperts(fit, l, PEERS),
      scheduler: groupsOf(joinOneByOne(E, [l], E / PEERS, PEERS, live), l),
      coverage: groupsOf(joinOneByOne(E, [l], E / PEERS, PEERS, undefined), l)
    }
    const together: Record<string, number> = {}
    const calls: Record<string, number> = {}
    for (const [name, groups] of Object.entries(placements)) {
      together[name] = placementQuality(groups.map((g, i) => rec(`p${i}`, l, g)), [l], E, held).togetherShare
      calls[name] = test.callsPerToken(l, groups)
    }
    layers.push({ layer: l, placements, together, calls_per_token: calls })
  }
  // All layers at once: peers of E / PEERS slots join one by one until every expert is covered twice.
  const all = Array.from({ length: L }, (_, l) => l)
  const joins: Array<{ peers: number, uncovered: number, together: number }> = []
  for (let n = 1; n <= 2 * L * PEERS; n++) {
    const q = placementQuality(joinOneByOne(E, all, E / PEERS, n, live), all, E, held)
    joins.push({ peers: n, uncovered: q.uncovered, together: q.togetherShare })
  }
  return { layers, joins }
}

function report (name: string, r: ReturnType<typeof score>, slots: number): void {
  console.log(`\n${name}`)
  console.log('layer | naive | offline | scheduler | coverage-only   (held-out share of co-selected pairs on one peer; calls/token)')
  for (const x of r.layers) {
    const cells = ['naive', 'offline', 'scheduler', 'coverage'].map(k => `${pct(x.together[k])} ${x.calls_per_token[k].toFixed(2)}`)
    console.log(`${x.layer} | ${cells.join(' | ')}   scheduler ${JSON.stringify(x.placements.scheduler)} offline ${JSON.stringify(x.placements.offline)}`)
  }
  console.log(`peers joining one by one (all layers, ${slots} slots each): ${r.joins.map(j => `${j.peers}: ${j.uncovered} uncovered, ${pct(j.together)}`).join(' · ')}`)
}

const t0 = performance.now()
const brown = new TextDataset(await brownCorpus()).split(0.1)
const windowsOf = (d: TextDataset, seed: number): Int32Array[] => {
  const it = d.windows(SEQ_LEN, seed)
  return Array.from({ length: WINDOWS }, () => it.next().value!.inputs)
}
const fitWindows = windowsOf(brown.train, 1)
const testWindows = windowsOf(brown.validation, 2)

const results: Record<string, unknown> = {}
const counts: Record<string, unknown> = {}
for (const dir of ['models/byte-mixtral', 'test/fixtures/tiny-mixtral']) {
  const m = await load(dir)
  const fit = await route(m, fitWindows)
  const test = await route(m, testWindows)
  const r = score(m, fit, test)
  report(`${m.id}: fitted on ${fit.tokens} Brown train tokens, scored on ${test.tokens} held-out tokens, ${PEERS} peers`, r, m.E / PEERS)
  results[m.id] = { fit_tokens: fit.tokens, test_tokens: test.tokens, ...r }
  counts[m.id] = { fit: fit.toJSON(), test: test.toJSON() }
}

// bench:inference's former measure (in-sample, as it was): tiny-mixtral's greedy decode.
const tiny = await load('test/fixtures/tiny-mixtral')
const prompt = (JSON.parse(readFileSync('test/fixtures/tiny-mixtral/reference.json', 'utf8')) as { prompt: number[] }).prompt
const dec = await greedy(tiny, prompt, GREEDY_TOKENS)
const greedyLayers = Array.from({ length: tiny.L }, (_, l) => {
  const placed = placeExperts(dec, l, PEERS)
  return { layer: l, placement: placed, within_share: dec.withinGroupShare(l, placed), naive_within_share: dec.withinGroupShare(l, [[0, 1], [2, 3]]) }
})
for (const c of greedyLayers) console.log(`tiny-mixtral greedy decode, layer ${c.layer}: placement ${JSON.stringify(c.placement)} keeps ${pct(c.within_share)} of co-selected pairs on one peer (naive {0,1}|{2,3}: ${pct(c.naive_within_share)})`)
results.tiny_mixtral_greedy = { tokens: dec.tokens, layers: greedyLayers }
counts.tiny_mixtral_greedy = dec.toJSON()

mkdirSync('bench/results', { recursive: true })
const meta = { windows: WINDOWS, seq_len: SEQ_LEN, peers: PEERS, greedy_tokens: GREEDY_TOKENS, device: 'cpu (CPU twins; placement does not depend on speed)', machine: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg() }, seconds: (performance.now() - t0) / 1000, date: new Date().toISOString() }
writeFileSync('bench/results/moe.json', JSON.stringify({ ...results, meta }, null, 2) + '\n')
writeFileSync('bench/results/moe.counts.json', JSON.stringify(counts) + '\n')
console.log(`\nwrote bench/results/moe.json and moe.counts.json in ${meta.seconds.toFixed(1)} s`)
