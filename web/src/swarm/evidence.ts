/**
 * Evidence against servers caught returning wrong outputs (client/verify.ts), in the swarm doc so
 * that peers that never routed through a liar can avoid it too — after checking it themselves.
 *
 *   evidence[<accuser peer id>] = signed entry (net/crdt, map EVIDENCE_MAP), data =
 *     { v: 1, accusations: Accusation[] }   — newest last, at most MAX_ACCUSATIONS_PER_ENTRY
 *
 * The entry is signed by the accuser's libp2p key (only it can write under its id), so a forged
 * accusation — someone else's id, a bad signature — never enters the doc (net/crdt rejects the
 * update) and is skipped and counted (`forged`) if written locally. An accusation carries hashes:
 * the accused's inputs [0, position] (SHA-256 of the f32 rows), the accused's output row at
 * `position` and the honest one; and, when it fits the entry (MAX_EXHIBIT_CHARS, newest first),
 * an exhibit with those rows themselves. A reader checks each accusation
 * (evidence-check.ts): digests against the exhibit, the claimed disagreement, then a
 * recomputation of the row on servers other than both parties (or its own blocks) and the
 * accused's own answer to the same inputs. It avoids a server only on evidence that survives all
 * of that; forged, refuted and unverifiable accusations are ignored and counted, so writing
 * accusations gets no honest server avoided. Only accusers that are members — a live entry in
 * the `peers` map, which carries the identity's proof-of-work stamp (net/pow.ts) — are read.
 * The exhibit publishes the hidden states of the accused's inputs up to the lie (README.md §
 * Threat model: what a published accusation reveals).
 */
import { base64 } from 'multiformats/bases/base64'
import { EVIDENCE_MAP, type SwarmDoc } from '../net/crdt/index.ts'
import type { BanList } from './ban-list.ts'
import { EVIDENCE_TTL_MS, MAX_ACCUSATIONS_PER_ENTRY } from './constants.ts'
import { MalformedEvidenceError } from './errors.ts'
import type { EvidenceChecker, Exhibit, Verdict } from './evidence-check.ts'

export const EVIDENCE_VERSION = 1
/** Longest peer id or model id in an accusation, in characters (an Ed25519 peer id is 52; model ids are names or hashes). */
const MAX_ID_CHARS = 256
/**
 * Most base64 characters of an exhibit's three tensors together; and of one entry's JSON, the
 * budget exhibits are dropped (oldest first) to stay under (net/crdt's 16 KiB entry payload less
 * room for the hashes of MAX_ACCUSATIONS_PER_ENTRY accusations).
 */
const MAX_EXHIBIT_CHARS = 12 * 1024
const ENTRY_BUDGET_CHARS = 15 * 1024
const BASE64 = /^[A-Za-z0-9+/]*$/

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
  /** The rows behind the digests, as base64 f32 little-endian (multiformats base64, no padding), when they fit the entry. */
  exhibit?: { inputs: string, accused: string, honest: string }
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
  const exhibit = a.exhibit === undefined ? undefined : parseExhibit(a.exhibit)
  return {
    model: id(a.model, 'model'),
    blocks: [start, end],
    position: count(a.position, 'position'),
    inputsHash: digest(a.inputsHash, 'inputsHash'),
    accusedDigest: digest(a.accusedDigest, 'accusedDigest'),
    honestDigest: digest(a.honestDigest, 'honestDigest'),
    deviation,
    accused: id(a.accused, 'accused'),
    at: a.at,
    ...(exhibit === undefined ? {} : { exhibit })
  }
}

function parseExhibit (x: unknown): NonNullable<Accusation['exhibit']> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new MalformedEvidenceError('accusation: exhibit is not an object')
  const e = x as Record<string, unknown>
  let chars = 0
  for (const k of ['inputs', 'accused', 'honest']) {
    const v = e[k]
    if (typeof v !== 'string' || !BASE64.test(v) || v.length % 4 === 1) throw new MalformedEvidenceError(`accusation: exhibit.${k} must be base64 text`)
    chars += v.length
  }
  if (chars > MAX_EXHIBIT_CHARS) throw new MalformedEvidenceError(`accusation: exhibit of ${chars} characters, at most ${MAX_EXHIBIT_CHARS}`)
  return { inputs: e.inputs as string, accused: e.accused as string, honest: e.honest as string }
}

const f32ToText = (x: Float32Array): string => base64.baseEncode(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))

/** An accusation's exhibit as tensors; undefined when it has none or its bytes are not whole f32s. */
export function exhibitOf (a: Accusation): Exhibit | undefined {
  if (a.exhibit === undefined) return undefined
  try {
    const [inputs, accused, honest] = [a.exhibit.inputs, a.exhibit.accused, a.exhibit.honest].map(t => {
      const b = base64.baseDecode(t)
      if (b.length % 4 !== 0) throw new MalformedEvidenceError('exhibit bytes are not whole f32s')
      return new Float32Array(b.slice().buffer) // copied: Float32Array needs an aligned offset
    })
    return { inputs, accused, honest }
  } catch {
    return undefined // undecodable: the checker calls the accusation forged (its digests cannot be matched)
  }
}

/** Drops exhibits from the oldest accusations until the entry's JSON fits ENTRY_BUDGET_CHARS. */
function fitExhibits (list: Accusation[]): Accusation[] {
  const out = list.slice()
  for (let i = 0; i < out.length && JSON.stringify(out).length > ENTRY_BUDGET_CHARS; i++) {
    if (out[i].exhibit === undefined) continue
    const { exhibit: _dropped, ...bare } = out[i]
    out[i] = bare
  }
  return out
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

/** What a scan of the evidence map did (EvidenceBoard.avoidChecked). */
export interface EvidenceScan {
  /** Accused peers now banned as liars on evidence that survived every check. */
  avoided: string[]
  /** Verdicts of the accusations read (evidence-check.ts), each accusation once. */
  verdicts: Record<Verdict, number>
  /** Entries whose signatures do not verify (written into a replica directly; the network refuses them). */
  forged: number
  /** Signed entries whose data does not parse. */
  malformed: number
}

/** The evidence map of one swarm doc: this peer's accusations in, everyone's (signed) out. */
export class EvidenceBoard {
  /** Entries skipped for malformed data (their signatures were valid: a buggy or hostile accuser). */
  malformed = 0
  /** Entries skipped for signatures that do not verify. */
  forged = 0

  /**
   * `membersOnly`: count only accusers with a live `peers` entry (a stamped identity); tests of
   * the map alone may turn it off. @default true
   */
  constructor (readonly sdoc: SwarmDoc, private readonly ttlMs = EVIDENCE_TTL_MS, private readonly membersOnly = true) {}

  /** Adds an accusation (with its exhibit when it fits) to this peer's own signed entry (the oldest dropped beyond the cap). */
  async accuse (a: Accusation, exhibit?: Exhibit): Promise<void> {
    const own = await this.own()
    let next = parseAccusation(a)
    if (exhibit !== undefined) {
      const e = { inputs: f32ToText(exhibit.inputs), accused: f32ToText(exhibit.accused), honest: f32ToText(exhibit.honest) }
      // Too large for the entry (long contexts, wide models): the hashes alone, which others cannot check.
      if (e.inputs.length + e.accused.length + e.honest.length <= MAX_EXHIBIT_CHARS) next = { ...next, exhibit: e }
    }
    const list = fitExhibits([...own, next].slice(-MAX_ACCUSATIONS_PER_ENTRY))
    await this.sdoc.setSigned(EVIDENCE_MAP, { v: EVIDENCE_VERSION, accusations: list }, this.ttlMs)
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

  /** Every accusation in entries whose signatures verify and that have not expired; forged and malformed entries are skipped and counted. */
  async accusations (now = Date.now()): Promise<SignedAccusation[]> {
    const out: SignedAccusation[] = []
    let malformed = 0
    const members = this.membersOnly ? await this.sdoc.peers(now) : undefined
    // Verified at any age (0: nothing expired) against all keys: the difference failed its signature.
    this.forged = this.sdoc.signedMap(EVIDENCE_MAP).size - (await this.sdoc.signedEntries(EVIDENCE_MAP, 0)).size
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

  /**
   * Checks the accusations against `model` (checker: each once, results cached) and bans, as
   * liars in `bans`, the accused of any that is confirmed; returns what it did.
   */
  async avoidChecked (bans: BanList, model: string, checker: EvidenceChecker, now = Date.now()): Promise<EvidenceScan> {
    const verdicts: Record<Verdict, number> = { confirmed: 0, forged: 0, refuted: 0, unreproduced: 0, unverifiable: 0 }
    const avoided = new Set<string>()
    const list = (await this.accusations(now)).filter(x => x.accusation.model === model && x.accusation.accused !== this.sdoc.selfId)
    const suspects = new Set(list.map(x => x.accusation.accused))
    for (const { accuser, accusation } of list) {
      const { verdict } = await checker.check(accuser, accusation, suspects)
      verdicts[verdict]++
      if (verdict === 'confirmed' && !avoided.has(accusation.accused)) {
        bans.banLiar(accusation.accused)
        avoided.add(accusation.accused)
      }
    }
    return { avoided: [...avoided], verdicts, forged: this.forged, malformed: this.malformed }
  }
}
