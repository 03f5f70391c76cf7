/**
 * Proof of work for new identities (PROTOCOL.md § Identity stamps): a hashcash stamp over a peer
 * id. Creating a libp2p identity is free, so without a cost one party can flood the swarm doc and
 * the relay with thousands of them; a stamp makes each identity cost ~2^bits sha256 evaluations,
 * small for one honest tab (≈ 0.1–0.5 s at the default) and linear in the identities a flooder
 * wants.
 *
 *   stamp      = "<epoch>:<nonce>"            epoch: UTC day number, nonce: decimal integer
 *   hashed     = "webswarm-pow/1\n" <scope> "\n" <peer id> "\n" <epoch> "\n" <nonce>
 *   valid when   sha256(hashed) has ≥ bits leading zero bits, and epoch is today or yesterday
 *
 * `scope` names what the stamp admits to (a swarm name, or a relay's salt), so a stamp made for
 * one swarm is worth nothing in another; the day epoch makes precomputed stamps expire (a peer
 * makes a new one each day it stays). The stamp is bound to the peer id, so copying someone
 * else's stamp gives nothing. Pure: no I/O, no ML; the clock is a parameter.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { NetConfigError } from './errors.ts'

/** Default difficulty: 2^16 ≈ 65k hashes per identity and day (BENCHMARKS.md § PoW for the time it takes). */
export const DEFAULT_POW_BITS = 16
/**
 * Default difficulty of the stamp a relay asks before a reservation (relay --reservation-pow-bits,
 * PeerManager's `reservationPowBits`): 2^14 ≈ 16k hashes per peer, relay and day. bench/pow.ts on
 * the 2-core machine at load 20: median 113 ms per identity (12 bits: 50 ms), so a tab pays well
 * under a second, in batches that yield to the event loop (mintStamp).
 */
export const DEFAULT_RESERVATION_POW_BITS = 14
/** Highest difficulty a config may ask for (2^32 hashes would take hours in a browser). */
export const MAX_POW_BITS = 32
/** Longest stamp text accepted ("<epoch>:<nonce>", both decimal). */
export const MAX_STAMP_CHARS = 40
const DAY_MS = 86_400_000

const enc = new TextEncoder()

/** The UTC day number of `now` (ms since the epoch). */
export function powEpoch (now: number): number {
  return Math.floor(now / DAY_MS)
}

function checkBits (bits: number): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > MAX_POW_BITS) throw new NetConfigError(`proof-of-work difficulty must be an integer in [0, ${MAX_POW_BITS}] bits, got ${bits}`)
}

/** Leading zero bits of a digest. */
export function leadingZeroBits (d: Uint8Array): number {
  let z = 0
  for (const b of d) {
    if (b === 0) { z += 8; continue }
    return z + Math.clz32(b) - 24
  }
  return z
}

function prefix (scope: string, peer: string, epoch: number): Uint8Array {
  return enc.encode(`webswarm-pow/1\n${scope}\n${peer}\n${epoch}\n`)
}

function digest (scope: string, peer: string, epoch: number, nonce: number): Uint8Array {
  return sha256.create().update(prefix(scope, peer, epoch)).update(enc.encode(String(nonce))).digest()
}

/** Why `stamp` does not admit `peer` to `scope` at `bits` on day `now`, or undefined if it does. */
export function stampProblem (stamp: unknown, scope: string, peer: string, bits: number, now: number): string | undefined {
  checkBits(bits)
  if (typeof stamp !== 'string') return 'no proof-of-work stamp'
  if (stamp.length > MAX_STAMP_CHARS) return `stamp longer than ${MAX_STAMP_CHARS} characters`
  const m = /^(\d{1,9}):(\d{1,15})$/.exec(stamp)
  if (m === null) return 'stamp is not "<epoch>:<nonce>"'
  const epoch = Number(m[1])
  const nonce = Number(m[2])
  const today = powEpoch(now)
  if (epoch !== today && epoch !== today - 1) return `stamp of day ${epoch}, not today (${today}) or yesterday`
  const z = leadingZeroBits(digest(scope, peer, epoch, nonce))
  if (z < bits) return `stamp has ${z} leading zero bits, ${bits} required`
  return undefined
}

/** Whether `stamp` admits `peer` to `scope` at `bits` on day `now`. */
export function verifyStamp (stamp: unknown, scope: string, peer: string, bits: number, now: number): boolean {
  return stampProblem(stamp, scope, peer, bits, now) === undefined
}

export interface MintOptions {
  /** Hashes between two yields to the event loop (a page stays responsive). @default 4096 */
  batch?: number
  signal?: AbortSignal
  /** First nonce tried (tests; several workers could split the space). @default 0 */
  start?: number
}

/**
 * Finds a stamp for `peer` in `scope` at `bits` for the day of `now`. Yields to the event loop
 * every `batch` hashes; expected cost 2^bits hashes.
 */
export async function mintStamp (scope: string, peer: string, bits: number, now: number, o: MintOptions = {}): Promise<string> {
  checkBits(bits)
  const batch = o.batch ?? 4096
  const epoch = powEpoch(now)
  // The prefix's blocks are hashed once; each try clones that state and hashes only the nonce.
  const base = sha256.create().update(prefix(scope, peer, epoch))
  for (let nonce = o.start ?? 0; nonce < Number.MAX_SAFE_INTEGER; nonce++) {
    if (leadingZeroBits(base.clone().update(enc.encode(String(nonce))).digest()) >= bits) return `${epoch}:${nonce}`
    if (nonce % batch === batch - 1) {
      o.signal?.throwIfAborted()
      await new Promise<void>(resolve => { setTimeout(resolve, 0) })
    }
  }
  throw new NetConfigError(`no proof-of-work stamp found for ${peer} at ${bits} bits`)
}
