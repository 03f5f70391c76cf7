/**
 * Signed, expiring DHT record values (grammar in PROTOCOL.md § kad).
 *
 *   value     = version:u8(=1) pubkey:bytes issuedAt:f64 expiresAt:f64 payload:bytes sig:bytes
 *   signed    = "webswarm-dht-record/1\n" key:bytes issuedAt:f64 expiresAt:f64 payload:bytes
 *
 * `pubkey` is the announcer's libp2p public key (protobuf); `sig` is its signature over `signed`,
 * which binds the record to its key so it cannot be replayed under another key. Readers reject
 * records that fail to parse, carry a bad signature, are expired, claim a future issue time, live
 * longer than the namespace allows, or (owner-keyed namespaces) sit under another peer's key.
 * Among valid records the newest `issuedAt` wins.
 */
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { DHT_CLOCK_SKEW_MS, DHT_NAMESPACES, KAD_PROTOCOL, type DhtNamespaceSpec } from '../protocols.ts'
import { InvalidRecordError, MalformedMessageError, NetConfigError } from '../errors.ts'
import { Reader, Writer } from '../wire.ts'

const RECORD_VERSION = 1
const SIGN_DOMAIN = new TextEncoder().encode('webswarm-dht-record/1\n')
/** Libp2p public keys in protobuf form: Ed25519 is 36 bytes, RSA-4096 ~550; 1 KiB bounds them. */
const MAX_PUBKEY_BYTES = 1024
/** Signatures: Ed25519 64 bytes, RSA-4096 512; 1 KiB bounds them. */
const MAX_SIG_BYTES = 1024
/** Longest key we sign or accept, in bytes. */
const MAX_KEY_BYTES = 512

/** A parsed, verified record. */
export interface SignedRecord {
  /** The full DHT key, e.g. `/ws-blocks/tiny/3/12D3Koo…`. */
  key: string
  /** Application bytes. */
  payload: Uint8Array
  /** Announcer's peer id (string form), derived from the embedded public key. */
  signer: string
  /** ms since epoch when the announcer signed it. */
  issuedAt: number
  /** ms since epoch after which readers reject it. */
  expiresAt: number
}

const namespacesByName = new Map<string, DhtNamespaceSpec>(Object.values(DHT_NAMESPACES).map(n => [n.name, n]))

/** Looks up the namespace of a key (`/<ns>/…`), or throws naming the key. */
export function namespaceOf (key: string): DhtNamespaceSpec {
  const parts = key.split('/')
  const ns = parts.length >= 3 && parts[0] === '' ? namespacesByName.get(parts[1]) : undefined
  if (ns === undefined) throw new InvalidRecordError(key, `key is not under a registered namespace (${[...namespacesByName.keys()].join(', ')})`)
  if (parts.some((p, i) => i > 0 && p === '')) throw new InvalidRecordError(key, 'key has an empty segment')
  return ns
}

function signedBytes (key: string, issuedAt: number, expiresAt: number, payload: Uint8Array): Uint8Array {
  return new Writer().raw(SIGN_DOMAIN).string(key).f64(issuedAt).f64(expiresAt).bytes(payload).finish()
}

/** Builds and signs a record value for `key`, valid from now for `ttlMs`. */
export async function signRecord (privateKey: PrivateKey, key: string, payload: Uint8Array, ttlMs: number, now = Date.now()): Promise<Uint8Array> {
  const ns = namespaceOf(key)
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw new NetConfigError(`DHT key ${key} is longer than ${MAX_KEY_BYTES} bytes`)
  if (payload.length > ns.maxValueBytes) throw new NetConfigError(`DHT record ${key}: payload ${payload.length} B exceeds ${ns.name} cap ${ns.maxValueBytes} B`)
  if (!(ttlMs > 0 && ttlMs <= ns.maxTtlMs)) throw new NetConfigError(`DHT record ${key}: ttl ${ttlMs} ms outside (0, ${ns.maxTtlMs}]`)
  if (ns.ownerKeyed) {
    const owner = key.split('/').at(-1)
    const self = peerIdFromPublicKey(privateKey.publicKey).toString()
    if (owner !== self) throw new NetConfigError(`DHT record ${key}: namespace ${ns.name} is owner-keyed; key must end in /${self}`)
  }
  const issuedAt = now
  const expiresAt = now + ttlMs
  const sig = await privateKey.sign(signedBytes(key, issuedAt, expiresAt, payload))
  return new Writer()
    .u8(RECORD_VERSION)
    .bytes(publicKeyToProtobuf(privateKey.publicKey))
    .f64(issuedAt)
    .f64(expiresAt)
    .bytes(payload)
    .bytes(sig)
    .finish()
}

/** Parses and fully verifies a record value found under `key`; throws InvalidRecordError. */
export async function verifyRecord (key: string, value: Uint8Array, now = Date.now()): Promise<SignedRecord> {
  // A reader holds to the cap a signer does: a hostile peer's record under a longer key is not stored.
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw new InvalidRecordError(key.slice(0, 64) + '…', `key is longer than ${MAX_KEY_BYTES} bytes`)
  const ns = namespaceOf(key)
  let pub: PublicKey
  let issuedAt: number, expiresAt: number, payload: Uint8Array, sig: Uint8Array
  try {
    const r = new Reader(value, KAD_PROTOCOL)
    const version = r.u8('version')
    if (version !== RECORD_VERSION) throw new InvalidRecordError(key, `record version ${version}, expected ${RECORD_VERSION}`)
    pub = publicKeyFromProtobuf(r.bytes(MAX_PUBKEY_BYTES, 'public key'))
    issuedAt = r.f64('issuedAt')
    expiresAt = r.f64('expiresAt')
    payload = r.bytes(ns.maxValueBytes, 'payload')
    sig = r.bytes(MAX_SIG_BYTES, 'signature')
    r.end()
  } catch (e) {
    if (e instanceof InvalidRecordError) throw e
    throw new InvalidRecordError(key, e instanceof MalformedMessageError ? e.message : `bad encoding: ${(e as Error).message}`)
  }
  if (!Number.isFinite(issuedAt) || !Number.isFinite(expiresAt)) throw new InvalidRecordError(key, 'non-finite timestamps')
  if (expiresAt <= now) throw new InvalidRecordError(key, `expired ${now - expiresAt} ms ago`)
  if (issuedAt > now + DHT_CLOCK_SKEW_MS) throw new InvalidRecordError(key, `issued ${issuedAt - now} ms in the future`)
  if (expiresAt - issuedAt > ns.maxTtlMs || expiresAt <= issuedAt) throw new InvalidRecordError(key, `lifetime ${expiresAt - issuedAt} ms outside (0, ${ns.maxTtlMs}]`)
  const signer = peerIdFromPublicKey(pub).toString()
  if (ns.ownerKeyed && key.split('/').at(-1) !== signer) throw new InvalidRecordError(key, `signed by ${signer}, but ${ns.name} keys must end in the signer's peer id`)
  const ok = await pub.verify(signedBytes(key, issuedAt, expiresAt, payload), sig)
  if (!ok) throw new InvalidRecordError(key, `bad signature (claimed signer ${signer})`)
  return { key, payload, signer, issuedAt, expiresAt }
}

const utf8 = new TextDecoder()

type Validator = (key: Uint8Array, value: Uint8Array) => Promise<void>
type Selector = (key: Uint8Array, values: Uint8Array[]) => Promise<number>

/** kad-dht selector: index of the newest record valid at `now`; invalid ones never win. */
export async function selectRecord (key: Uint8Array, values: Uint8Array[], now = Date.now()): Promise<number> {
  const k = utf8.decode(key)
  let best = 0
  let bestAt = -Infinity
  for (let i = 0; i < values.length; i++) {
    const at = await verifyRecord(k, values[i], now).then(r => r.issuedAt, () => -Infinity)
    if (at > bestAt) {
      best = i
      bestAt = at
    }
  }
  return best
}

/**
 * Validators (throw if a record is invalid at `now()`: kad-dht then drops it) and selectors for
 * every registered namespace, for kadDHT({ validators, selectors }).
 */
export function dhtValidators (now: () => number = Date.now): Record<string, Validator> {
  const validate: Validator = async (key, value) => { await verifyRecord(utf8.decode(key), value, now()) }
  return Object.fromEntries(Object.values(DHT_NAMESPACES).map(n => [n.name, validate]))
}

export function dhtSelectors (now: () => number = Date.now): Record<string, Selector> {
  const select: Selector = async (key, values) => await selectRecord(key, values, now())
  return Object.fromEntries(Object.values(DHT_NAMESPACES).map(n => [n.name, select]))
}
