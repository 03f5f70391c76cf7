/**
 * Signed entries of the swarm doc's `peers` map (grammar in PROTOCOL.md § crdt-sync).
 *
 *   peers[<peer id>] = { v: 1, payload: <JSON text>, sig: <base64 signature> }
 *   payload          = { peer: <peer id>, seq: <int>, expiresAt: <ms>, data: <object> }
 *   signed bytes     = "webswarm-crdt-peer/1\n" <swarm> "\n" <payload text>
 *
 * Only the peer whose id is the map key can produce a valid signature (the key is its public
 * key), so a peer may only write its own entry. Including the swarm name stops an entry from being
 * replayed into another swarm; `seq` stops an older signed entry from being replayed over a newer
 * one; `expiresAt` lets anyone delete an entry its owner stopped refreshing.
 *
 * Other signed maps (SIGNED_MAPS) hold entries of the same form, signed over
 * "webswarm-crdt-<map>/1\n" <swarm> "\n" <payload text> so that an entry cannot be moved from
 * one map to another. `data` is opaque to net/: the swarm layer gives it meaning.
 */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { base64 } from 'multiformats/bases/base64'
import { ForgedEntryError } from '../errors.ts'

const ENTRY_VERSION = 1
/** Name of the signed root map in every swarm doc. */
export const PEERS_MAP = 'peers'
/** Signed map of accusations against servers caught returning wrong outputs (swarm/evidence.ts), one entry per accuser. */
export const EVIDENCE_MAP = 'evidence'
/** Root maps whose entries only the key's owner may write (and anyone may delete once expired). */
export const SIGNED_MAPS: readonly string[] = [PEERS_MAP, EVIDENCE_MAP]
/** Entry lifetime: owners refresh at half of it; expired entries may be deleted by anyone. */
export const PEER_ENTRY_TTL_MS = 10 * 60_000
/** Largest payload JSON per entry, in bytes: capabilities and roles, not data. */
const MAX_ENTRY_PAYLOAD_BYTES = 16 * 1024
/** Longest signature text (Ed25519: 88 base64 chars; RSA-4096: ~690). */
const MAX_SIG_CHARS = 1024

/** A verified peers-map entry. */
export interface PeerEntry {
  peer: string
  seq: number
  expiresAt: number
  data: Record<string, unknown>
  /** `peers` entries: the identity's proof-of-work stamp (../pow.ts), signed with the rest. */
  pow?: string
}

/** The raw value stored in the Y.Map. */
export interface RawEntry {
  v: number
  payload: string
  sig: string
}

const enc = new TextEncoder()

function signedBytes (swarm: string, payload: string, map: string): Uint8Array {
  const domain = map === PEERS_MAP ? 'peer' : map
  return enc.encode(`webswarm-crdt-${domain}/1\n${swarm}\n${payload}`)
}

/** Signs an entry of signed map `map` for the key's owner. */
export async function signEntry (privateKey: PrivateKey, swarm: string, entry: PeerEntry, map = PEERS_MAP): Promise<RawEntry> {
  const payload = JSON.stringify(entry)
  if (enc.encode(payload).length > MAX_ENTRY_PAYLOAD_BYTES) throw new ForgedEntryError(entry.peer, `payload exceeds ${MAX_ENTRY_PAYLOAD_BYTES} bytes`)
  const sig = await privateKey.sign(signedBytes(swarm, payload, map))
  return { v: ENTRY_VERSION, payload, sig: base64.baseEncode(sig) }
}

/** Verifies the value found under <map>[key] (default peers); throws ForgedEntryError naming the problem. */
export async function verifyEntry (swarm: string, key: string, value: unknown, map = PEERS_MAP): Promise<PeerEntry> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ForgedEntryError(key, 'value is not an entry object')
  const raw = value as Partial<RawEntry>
  if (raw.v !== ENTRY_VERSION) throw new ForgedEntryError(key, `entry version ${String(raw.v)}, expected ${ENTRY_VERSION}`)
  if (typeof raw.payload !== 'string' || typeof raw.sig !== 'string') throw new ForgedEntryError(key, 'payload/sig missing')
  if (enc.encode(raw.payload).length > MAX_ENTRY_PAYLOAD_BYTES || raw.sig.length > MAX_SIG_CHARS) throw new ForgedEntryError(key, 'entry too large')
  let pub
  try {
    pub = peerIdFromString(key).publicKey
  } catch {
    throw new ForgedEntryError(key, 'key is not a peer id')
  }
  if (pub === undefined) throw new ForgedEntryError(key, 'peer id does not embed a public key')
  let sig: Uint8Array
  try {
    sig = base64.baseDecode(raw.sig)
  } catch {
    throw new ForgedEntryError(key, 'signature is not base64')
  }
  if (!(await pub.verify(signedBytes(swarm, raw.payload, map), sig))) throw new ForgedEntryError(key, 'bad signature: not written by the key owner')
  let entry: PeerEntry
  try {
    entry = JSON.parse(raw.payload) as PeerEntry
  } catch {
    throw new ForgedEntryError(key, 'payload is not JSON')
  }
  if (entry.peer !== key) throw new ForgedEntryError(key, `payload names peer ${String(entry.peer)}`)
  if (!Number.isSafeInteger(entry.seq) || entry.seq < 0) throw new ForgedEntryError(key, 'bad seq')
  if (!Number.isFinite(entry.expiresAt)) throw new ForgedEntryError(key, 'bad expiresAt')
  if (typeof entry.data !== 'object' || entry.data === null || Array.isArray(entry.data)) throw new ForgedEntryError(key, 'data is not an object')
  return entry
}
