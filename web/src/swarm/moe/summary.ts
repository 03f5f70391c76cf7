/**
 * Co-selection counts in a live swarm. Block servers whose MoE layers call remote experts run the
 * router, so they see every token's top-k choice: they count it (CoSelectionStats) and publish a
 * compact summary — the strongest pairs per layer — in their signed CRDT peer entry under
 * `coselection`. A peer placing experts reads every entry's summary, checks it, and averages the
 * per-token rates: each publisher weighs the same, so one peer cannot outvote the others by
 * claiming more tokens.
 *
 *   coselection = { v: 1, model: <id>, tokens: <int>, layers: [{ layer: <int>, pairs: [[i, j, n], …] }] }
 *   i < j < E; n ≤ tokens = tokens whose top-k held both i and j at that layer.
 *
 * ML code only: the caller hands in the peers map's data; nothing here knows libp2p or the CRDT.
 */
import { MalformedMessageError } from '../errors.ts'
import type { CoSelectionStats } from './coselection.ts'
import { MAX_SUMMARY_BYTES, MAX_SUMMARY_EXPERTS, MAX_SUMMARY_LAYERS, MAX_SUMMARY_PAIRS_PER_LAYER, MIN_SUMMARY_TOKENS } from './constants.ts'

const SUMMARY_VERSION = 1

/** One layer's strongest pairs: [i, j, tokens that picked both], i < j. */
interface LayerPairs { layer: number, pairs: Array<[number, number, number]> }

export interface CoSelectionSummary {
  v: number
  model: string
  /** Tokens routed since the publisher started counting. */
  tokens: number
  layers: LayerPairs[]
}

/**
 * Co-selection rates per layer: layer → (E, E) symmetric, entry (i, j) = share of tokens that
 * picked both i and j, averaged over publishers. What placement reads.
 */
export type Affinity = Map<number, Float64Array>

const enc = new TextEncoder()

/** The compact summary of `stats`: per layer its `maxPairs` strongest pairs, cut further to fit MAX_SUMMARY_BYTES. */
export function summarize (stats: CoSelectionStats, model: string, maxPairs = MAX_SUMMARY_PAIRS_PER_LAYER): CoSelectionSummary {
  const E = stats.numExperts
  const layers: LayerPairs[] = stats.pairs.slice(0, MAX_SUMMARY_LAYERS).map((m, l) => {
    const pairs: Array<[number, number, number]> = []
    for (let i = 0; i < E; i++) for (let j = i + 1; j < E; j++) if (m[i * E + j] > 0) pairs.push([i, j, m[i * E + j]])
    pairs.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1])
    return { layer: stats.firstLayer + l, pairs: pairs.slice(0, maxPairs) }
  })
  const s: CoSelectionSummary = { v: SUMMARY_VERSION, model, tokens: stats.tokens, layers }
  // Too big for the entry: drop the weakest pair of the longest layer until it fits.
  while (enc.encode(JSON.stringify(s)).length > MAX_SUMMARY_BYTES) {
    const longest = layers.reduce((a, b) => b.pairs.length > a.pairs.length ? b : a)
    if (longest.pairs.length === 0) break
    longest.pairs.pop()
  }
  return s
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0

/**
 * Checks a summary read from another peer: every field, every bound. Throws MalformedMessageError
 * naming the first problem. `numLayers` / `numExperts` are the model's (layer and expert ids must
 * fall inside them).
 */
export function parseSummary (value: unknown, numLayers: number, numExperts: number): CoSelectionSummary {
  const bad = (why: string): never => { throw new MalformedMessageError(`co-selection summary: ${why}`) }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('not an object')
  const o = value as Record<string, unknown>
  if (o.v !== SUMMARY_VERSION) bad(`version ${JSON.stringify(o.v)}, expected ${SUMMARY_VERSION}`)
  if (enc.encode(JSON.stringify(o)).length > MAX_SUMMARY_BYTES) bad(`larger than ${MAX_SUMMARY_BYTES} bytes`)
  if (typeof o.model !== 'string' || o.model.length === 0 || o.model.length > 256) bad('model is not a model id')
  if (!isCount(o.tokens)) bad(`tokens ${JSON.stringify(o.tokens)} is not a count`)
  const tokens = o.tokens as number
  if (!Array.isArray(o.layers) || o.layers.length > Math.min(numLayers, MAX_SUMMARY_LAYERS)) bad(`layers must be a list of at most ${Math.min(numLayers, MAX_SUMMARY_LAYERS)}`)
  const seen = new Set<number>()
  const E = Math.min(numExperts, MAX_SUMMARY_EXPERTS)
  const layers = (o.layers as unknown[]).map((x): LayerPairs => {
    const lp = x as Record<string, unknown> | null
    if (typeof lp !== 'object' || lp === null) bad('a layer entry is not an object')
    const layer = lp!.layer
    if (!isCount(layer) || layer >= numLayers) bad(`layer ${JSON.stringify(layer)} is not one of the model's ${numLayers}`)
    if (seen.has(layer as number)) bad(`layer ${String(layer)} listed twice`)
    seen.add(layer as number)
    if (!Array.isArray(lp!.pairs) || lp!.pairs.length > MAX_SUMMARY_PAIRS_PER_LAYER) bad(`layer ${String(layer)}: pairs must be a list of at most ${MAX_SUMMARY_PAIRS_PER_LAYER}`)
    const pairs = (lp!.pairs as unknown[]).map((p): [number, number, number] => {
      if (!Array.isArray(p) || p.length !== 3 || !p.every(isCount)) bad(`layer ${String(layer)}: pair ${JSON.stringify(p)} is not [i, j, n]`)
      const [i, j, n] = p as [number, number, number]
      if (!(i < j && j < E)) bad(`layer ${String(layer)}: pair (${i}, ${j}) needs i < j < ${E}`)
      if (n > tokens) bad(`layer ${String(layer)}: pair (${i}, ${j}) counted ${n} times in ${tokens} tokens`)
      return [i, j, n]
    })
    return { layer: layer as number, pairs }
  })
  return { v: SUMMARY_VERSION, model: o.model as string, tokens, layers }
}

/** A summary that could not be used, and why (for logs and the page). */
export interface RejectedSummary { peer: string, reason: string }

/**
 * Averages the per-token co-selection rates of every valid summary of `model` found in peer
 * entries' `coselection` field. Entries without one are skipped silently; malformed ones are
 * listed in `rejected`. `affinity` is undefined when no summary qualifies (placement then goes by
 * coverage only).
 */
export function affinityFromPeers (
  entries: Iterable<[string, { data: Record<string, unknown> }]>,
  model: string,
  numLayers: number,
  numExperts: number
): { affinity?: Affinity, publishers: string[], rejected: RejectedSummary[] } {
  const E = numExperts
  const sums: Affinity = new Map()
  const publishers: string[] = []
  const rejected: RejectedSummary[] = []
  for (const [peer, e] of entries) {
    const raw = e.data.coselection
    if (raw === undefined) continue
    let s: CoSelectionSummary
    try {
      s = parseSummary(raw, numLayers, numExperts)
    } catch (err) {
      rejected.push({ peer, reason: (err as Error).message })
      continue
    }
    if (s.model !== model || s.tokens < MIN_SUMMARY_TOKENS) continue
    publishers.push(peer)
    for (const { layer, pairs } of s.layers) {
      let m = sums.get(layer)
      if (m === undefined) sums.set(layer, (m = new Float64Array(E * E)))
      for (const [i, j, n] of pairs) {
        m[i * E + j] += n / s.tokens
        m[j * E + i] += n / s.tokens
      }
    }
  }
  if (publishers.length === 0) return { publishers, rejected }
  for (const m of sums.values()) for (let k = 0; k < m.length; k++) m[k] /= publishers.length
  return { affinity: sums, publishers, rejected }
}

/** Affinity straight from local counts (benchmarks, a peer that routes itself): rates per token. */
export function affinityFromStats (stats: CoSelectionStats): Affinity {
  const out: Affinity = new Map()
  const E = stats.numExperts
  stats.pairs.forEach((m, l) => {
    const a = new Float64Array(E * E)
    for (let k = 0; k < a.length; k++) a[k] = Math.floor(k / E) === k % E || stats.tokens === 0 ? 0 : m[k] / stats.tokens
    out.set(stats.firstLayer + l, a)
  })
  return out
}
