/**
 * Evidence against servers caught returning wrong outputs (client/verify.ts), in the swarm doc so
 * that peers that never routed through a liar can avoid it too.
 *
 *   evidence[<accuser peer id>] = signed entry (net/crdt, map EVIDENCE_MAP), data =
 *     { v: 1, accusations: Accusation[] }   — newest last, at most MAX_ACCUSATIONS_PER_ENTRY
 *
 * The entry is signed by the accuser's libp2p key (only it can write under its id), so a forged
 * accusation — someone else's id, a bad signature — never enters the doc (net/crdt rejects the
 * update) and is skipped if written locally. An accusation carries hashes, not tensors: the
 * accused's inputs [0, position] (SHA-256 of the f32 rows), the accused's output row at
 * `position` and the honest one (SHA-256 each). A peer holding those inputs (say, a client of
 * the same session) can recompute the row and compare digests; one that does not (the common
 * case: inputs are a user's prompt) counts distinct accusers instead — `suspects` — and a
 * client avoids a server accused by at least `minAccusers` of them (`banSuspects`). Only
 * accusers that are members — a live entry in the `peers` map, which carries the identity's
 * proof-of-work stamp (net/pow.ts) — count, so accusing costs an identity's stamp each. One party
 * with many stamped identities can still accuse an honest server, hence a default of two
 * accusers and no action on one.
 */
import { EVIDENCE_MAP, type SwarmDoc } from '../net/crdt/index.ts'
import type { BanList } from './ban-list.ts'
import { EVIDENCE_TTL_MS, MAX_ACCUSATIONS_PER_ENTRY } from './constants.ts'
import { MalformedEvidenceError } from './errors.ts'

export const EVIDENCE_VERSION = 1
/** Longest peer id or model id in an accusation, in characters (an Ed25519 peer id is 52; model ids are names or hashes). */
const MAX_ID_CHARS = 256
/** Distinct accusers before a peer that did not witness the lie avoids the accused. */
const DEFAULT_MIN_ACCUSERS = 2

/** One server caught lying, as its accuser saw it. */
export interface Accusation {
  model: string
  /** Blocks [start, end) of the span whose output was wrong. */
  blocks: [number, number]
  /** First position whose output was wrong. */
  position: number
  /** SHA-256 (hex) of the accused's inputs for positions [0, position], f32 little-endian. */
  inputsHash: string
  /** SHA-256 (hex) of the accused's output row at `position`. */
  accusedDigest: string
  /** SHA-256 (hex) of the row two other opinions agreed on. */
  honestDigest: string
  /** Relative L2 distance between the two rows (client/verify-compare.ts). */
  deviation: number
  accused: string
  /** When, ms since the epoch (the accuser's clock). */
  at: number
}

const HEX64 = /^[0-9a-f]{64}$/

function id (x: unknown, what: string): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_ID_CHARS) throw new MalformedEvidenceError(`accusation: ${what} must be a string of 1..${MAX_ID_CHARS} characters`)
  return x
}

function digest (x: unknown, what: string): string {
  if (typeof x !== 'string' || !HEX64.test(x)) throw new MalformedEvidenceError(`accusation: ${what} must be a SHA-256 in lowercase hex`)
  return x
}

function count (x: unknown, what: string): number {
  if (!Number.isSafeInteger(x) || (x as number) < 0) throw new MalformedEvidenceError(`accusation: ${what} must be an integer ≥ 0, got ${String(x)}`)
  return x as number
}

/** Checks one accusation from the doc; throws MalformedEvidenceError naming the bad field. */
export function parseAccusation (x: unknown): Accusation {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new MalformedEvidenceError('accusation is not an object')
  const a = x as Record<string, unknown>
  const blocks = a.blocks
  if (!Array.isArray(blocks) || blocks.length !== 2) throw new MalformedEvidenceError('accusation: blocks must be [start, end]')
  const [start, end] = [count(blocks[0], 'blocks[0]'), count(blocks[1], 'blocks[1]')]
  if (end <= start) throw new MalformedEvidenceError(`accusation: blocks [${start}, ${end}) are empty`)
  const deviation = a.deviation
  if (typeof deviation !== 'number' || !Number.isFinite(deviation) || deviation < 0) throw new MalformedEvidenceError('accusation: deviation must be a finite number ≥ 0')
  if (typeof a.at !== 'number' || !Number.isFinite(a.at)) throw new MalformedEvidenceError('accusation: at must be a time in ms')
  return {
    model: id(a.model, 'model'),
    blocks: [start, end],
    position: count(a.position, 'position'),
    inputsHash: digest(a.inputsHash, 'inputsHash'),
    accusedDigest: digest(a.accusedDigest, 'accusedDigest'),
    honestDigest: digest(a.honestDigest, 'honestDigest'),
    deviation,
    accused: id(a.accused, 'accused'),
    at: a.at
  }
}

/** An entry's data: the accuser's accusations; throws MalformedEvidenceError. */
function parseEvidence (data: Record<string, unknown>): Accusation[] {
  if (data.v !== EVIDENCE_VERSION) throw new MalformedEvidenceError(`evidence version ${String(data.v)}, expected ${EVIDENCE_VERSION}`)
  const list = data.accusations
  if (!Array.isArray(list)) throw new MalformedEvidenceError('evidence: accusations must be an array')
  if (list.length > MAX_ACCUSATIONS_PER_ENTRY) throw new MalformedEvidenceError(`evidence: ${list.length} accusations, at most ${MAX_ACCUSATIONS_PER_ENTRY}`)
  return list.map(parseAccusation)
}

/** An accusation with the peer whose signed entry holds it. */
export interface SignedAccusation { accuser: string, accusation: Accusation }

/** The evidence map of one swarm doc: this peer's accusations in, everyone's (verified) out. */
export class EvidenceBoard {
  /** Entries skipped for malformed data (their signatures were valid: a buggy or hostile accuser). */
  malformed = 0

  /**
   * `membersOnly`: count only accusers with a live `peers` entry (a stamped identity); tests of
   * the map alone may turn it off. @default true
   */
  constructor (readonly sdoc: SwarmDoc, private readonly ttlMs = EVIDENCE_TTL_MS, private readonly membersOnly = true) {}

  /** Adds an accusation to this peer's own signed entry (the oldest dropped beyond the cap). */
  async accuse (a: Accusation): Promise<void> {
    const own = await this.own()
    const next = [...own, parseAccusation(a)].slice(-MAX_ACCUSATIONS_PER_ENTRY)
    await this.sdoc.setSigned(EVIDENCE_MAP, { v: EVIDENCE_VERSION, accusations: next }, this.ttlMs)
  }

  private async own (): Promise<Accusation[]> {
    const e = (await this.sdoc.signedEntries(EVIDENCE_MAP)).get(this.sdoc.selfId)
    if (e === undefined) return []
    try {
      return parseEvidence(e.data)
    } catch {
      return [] // our own entry, unreadable (an older version): start over
    }
  }

  /** Every accusation in entries whose signatures verify and that have not expired; malformed entries are skipped and counted. */
  async accusations (now = Date.now()): Promise<SignedAccusation[]> {
    const out: SignedAccusation[] = []
    let malformed = 0
    const members = this.membersOnly ? await this.sdoc.peers(now) : undefined
    for (const [accuser, e] of await this.sdoc.signedEntries(EVIDENCE_MAP, now)) {
      if (members !== undefined && !members.has(accuser)) continue
      let list: Accusation[]
      try {
        list = parseEvidence(e.data)
      } catch {
        malformed++ // a signed but malformed entry: its author's problem, not a reason to fail
        continue
      }
      for (const accusation of list) if (accusation.accused !== accuser) out.push({ accuser, accusation })
    }
    this.malformed = malformed
    return out
  }

  /** Accused peers (of `model`, when given) → their distinct accusers. */
  async suspects (model?: string, now = Date.now()): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>()
    for (const { accuser, accusation } of await this.accusations(now)) {
      if (model !== undefined && accusation.model !== model) continue
      let s = out.get(accusation.accused)
      if (s === undefined) out.set(accusation.accused, (s = new Set()))
      s.add(accuser)
    }
    return out
  }

  /** Bans, as liars in `bans`, the peers of `model` accused by at least `minAccusers` distinct accusers; returns them. */
  async banSuspects (bans: BanList, model: string, minAccusers = DEFAULT_MIN_ACCUSERS, now = Date.now()): Promise<string[]> {
    const banned: string[] = []
    for (const [peer, accusers] of await this.suspects(model, now)) {
      if (accusers.size >= minAccusers && peer !== this.sdoc.selfId) {
        bans.banLiar(peer)
        banned.push(peer)
      }
    }
    return banned
  }
}
