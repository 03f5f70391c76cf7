/**
 * Who is in a run, and which founding of it: member entries with a heartbeat, and the run's
 * `genesis` (a random tag of the declaration that every sync record and member entry carries).
 *
 *   train["member/<id>/<peer>"] = { fromSeq, at, genesis }
 *
 * `at` is the writer's wall clock (ms since the epoch), refreshed every MEMBER_HEARTBEAT_MS while
 * its session runs. A reader counts a member as live when `at` is at most MEMBER_TTL_MS old and at
 * most MAX_CLOCK_SKEW_MS ahead of its own clock; a stale one (a closed tab) is neither expected in
 * rounds nor tried as a provider of states, and becomes live again with its next heartbeat.
 *
 * Forks: two peers that declare the same run before seeing each other's entry both found it.
 * Yjs converges `run/<id>` to one of the two declarations, so every peer ends up reading the same
 * genesis; records and entries of the other founding are ignored, and its members adopt the
 * winner's θ_global at their next round boundary (session.ts `healFork`).
 */
import { MAX_ID_CHARS } from './constants.ts'
import type { RunSpec } from './run-board.ts'
import { WebSwarmError } from '../../util/errors.ts'

/** How often a running session refreshes its entry's `at`, ms. */
export const MEMBER_HEARTBEAT_MS = 10_000
/**
 * Age beyond which an entry is stale, ms: six heartbeats, so a few lost or delayed CRDT updates
 * and a clock up to MAX_CLOCK_SKEW_MS behind the reader's still read as live.
 */
export const MEMBER_TTL_MS = 60_000
/** How far ahead of the reader's clock `at` may be, ms; further is a wrong clock or a forged entry (which would otherwise stay live for ever). */
export const MAX_CLOCK_SKEW_MS = 30_000
/** Entries stale for this long are deleted by any live member (keeps the board small), ms. */
export const MEMBER_PRUNE_MS = 10 * 60_000

/** A run founding's tag: 64 random bits in hex ('' for declarations written before tags existed). */
export const GENESIS_PATTERN = /^[0-9a-f]{16}$/

export interface MemberEntry {
  /** First sync the peer takes part in. */
  fromSeq: number
  /** Heartbeat: the writer's clock at its last refresh, ms since the epoch. */
  at: number
  /** Genesis of the founding the peer's θ_global descends from. */
  genesis: string
}

const MEMBER_FIELDS = new Set(['fromSeq', 'at', 'genesis'])

/** Validates a member entry read from the CRDT: the entry, or why it is ignored. */
export function parseMemberEntry (peer: string, raw: unknown): MemberEntry | string {
  if (peer.length === 0 || peer.length > MAX_ID_CHARS) return `peer id must be 1…${MAX_ID_CHARS} characters`
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object'
  const o = raw as Record<string, unknown>
  const extra = Object.keys(o).filter(k => !MEMBER_FIELDS.has(k))
  if (extra.length > 0) return `unknown fields ${extra.slice(0, 4).join(', ')}`
  if (typeof o.fromSeq !== 'number' || !Number.isSafeInteger(o.fromSeq) || o.fromSeq < 0) return 'fromSeq must be a non-negative integer'
  if (typeof o.at !== 'number' || !Number.isSafeInteger(o.at) || o.at <= 0) return 'heartbeat at must be a positive integer (ms since the epoch)'
  const genesis = o.genesis ?? ''
  if (typeof genesis !== 'string' || (genesis !== '' && !GENESIS_PATTERN.test(genesis))) return 'genesis must be 16 hex digits'
  return { fromSeq: o.fromSeq, at: o.at, genesis }
}

/** 'live', 'stale', or why the heartbeat cannot be believed (too far in the future). */
export function liveness (e: MemberEntry, now: number): 'live' | 'stale' | string {
  if (e.at > now + MAX_CLOCK_SKEW_MS) return `heartbeat ${Math.round((e.at - now) / 1000)} s in the future (more than ${MAX_CLOCK_SKEW_MS / 1000} s of clock skew, or forged)`
  return now - e.at > MEMBER_TTL_MS ? 'stale' : 'live'
}

/** A fresh genesis tag. */
export function newGenesis (): string {
  const b = new Uint8Array(8)
  globalThis.crypto.getRandomValues(b)
  return [...b].map(x => x.toString(16).padStart(2, '0')).join('')
}

/** What a declaration says, without its genesis: equal keys train the same model the same way. */
export function specContentKey (spec: RunSpec): string {
  const { genesis: _g, ...rest } = spec
  return canonicalJson(rest)
}

function canonicalJson (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().map(k => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

/** The run was founded twice at once with different settings, and this peer's founding lost. */
export class RunForkedError extends WebSwarmError {
  override name = 'RunForkedError'
  readonly errorCode = 'train.run-forked'
  readonly callerFault = false
}
