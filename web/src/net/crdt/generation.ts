/**
 * Doc generations (PROTOCOL.md § crdt-sync, "Generations"). Yjs keeps the id and key of every
 * deleted map entry forever, so a swarm doc grows with every peer that ever joined (77 B per
 * departed peer, BENCHMARKS.md § Scale). A relay therefore starts a fresh Y.Doc now and then, a
 * *generation*, holding only the live, unexpired entries (copied as signed: nobody re-signs
 * them); peers on an older generation re-seed from the newer one and re-insert their own entries.
 *
 *   generation = { n: <UTC minute it was started>, tag: <u32, the seed's Yjs client id> }
 *
 * Order: by n, then by tag, so two relays that rotate in the same minute agree on one winner and
 * the other re-seeds from it. n is a minute number so that "future" has a meaning a flooder cannot
 * stretch: a generation whose n is past the current minute (+ skew) is refused, hence nobody can
 * make the swarm re-seed more than once a minute. {0, 0} is the doc before any rotation.
 */
import { LimitExceededError, MalformedMessageError, NetConfigError } from '../errors.ts'
import type { Reader, Writer } from '../wire.ts'

export interface Generation {
  /** The UTC minute (⌊ms / GENERATION_EPOCH_MS⌋) the generation was started in; 0 = never rotated. */
  readonly n: number
  /** Tie-break between generations started in one minute: the seed's Yjs client id (1 … 2^32 − 1). */
  readonly tag: number
}

/** The doc before any rotation. */
export const GENESIS: Generation = { n: 0, tag: 0 }
/** Length of the minute a generation number counts, ms: at most one rotation per epoch. */
export const GENERATION_EPOCH_MS = 60_000
/** Clock skew tolerated when judging a generation "from the future", ms (as entries' expiry). */
const GENERATION_SKEW_MS = 30_000
const MAX_TAG = 0xffff_ffff

/**
 * When a relay starts a new generation. The doc's *history* is what a seed of its live values
 * would not hold (deleted keys and their clients, overwritten values): once it reaches
 * `minHistoryBytes`, rotate when it passes `historyShare` of the doc's encoded bytes or when the
 * generation is `everyMs` old. A swarm nobody left is never rotated (each rotation costs every
 * peer one whole-state download).
 */
export interface RotationPolicy {
  /** @default 30 min */
  everyMs: number
  /** @default 0.5 */
  historyShare: number
  /** @default 4 KiB (≈ 50 departed peers) */
  minHistoryBytes: number
}

export const DEFAULT_ROTATION_POLICY: RotationPolicy = { everyMs: 30 * 60_000, historyShare: 0.5, minHistoryBytes: 4 * 1024 }

/** The generation epoch (minute) of time `ms`. */
export function generationEpoch (ms: number): number {
  return Math.floor(ms / GENERATION_EPOCH_MS)
}

/** −1, 0 or 1 as `a` is older than, the same as, or newer than `b`. */
export function compareGenerations (a: Generation, b: Generation): number {
  if (a.n !== b.n) return a.n < b.n ? -1 : 1
  return a.tag === b.tag ? 0 : (a.tag < b.tag ? -1 : 1)
}

export function sameGeneration (a: Generation, b: Generation): boolean {
  return a.n === b.n && a.tag === b.tag
}

export function formatGeneration (g: Generation): string {
  return `${g.n}.${g.tag}`
}

/** Throws when `g` is not a well-formed generation or lies in the future of `now` (protocol names the caller). */
export function checkGeneration (protocol: string, g: Generation, now: number): void {
  if (!Number.isSafeInteger(g.n) || g.n < 0 || !Number.isSafeInteger(g.tag) || g.tag < 0 || g.tag > MAX_TAG) throw new MalformedMessageError(protocol, `generation ${formatGeneration(g)} out of range`)
  if ((g.n === 0) !== (g.tag === 0)) throw new MalformedMessageError(protocol, `generation ${formatGeneration(g)}: only the genesis generation 0.0 has n or tag 0`)
  const latest = generationEpoch(now + GENERATION_SKEW_MS)
  if (g.n > latest) throw new LimitExceededError(protocol, `generation ${formatGeneration(g)} is from the future (this clock's latest is ${latest})`)
}

/** generation = n:varuint tag:varuint */
export function writeGeneration (w: Writer, g: Generation): Writer {
  return w.varuint(g.n).varuint(g.tag)
}

export function readGeneration (r: Reader): Generation {
  const n = r.varuint('generation n')
  const tag = r.varuint('generation tag', MAX_TAG)
  return { n, tag }
}

/** Validates a policy (positive period, share in (0, 1)). */
export function rotationPolicy (p: Partial<RotationPolicy> = {}): RotationPolicy {
  const out = { ...DEFAULT_ROTATION_POLICY, ...p }
  if (!(out.everyMs >= GENERATION_EPOCH_MS)) throw new NetConfigError(`generation everyMs must be at least ${GENERATION_EPOCH_MS} ms, got ${out.everyMs}`)
  if (!(out.historyShare > 0 && out.historyShare < 1)) throw new NetConfigError(`generation historyShare must be in (0, 1), got ${out.historyShare}`)
  if (!(out.minHistoryBytes >= 0)) throw new NetConfigError(`generation minHistoryBytes must be ≥ 0, got ${out.minHistoryBytes}`)
  return out
}
