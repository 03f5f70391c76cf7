/**
 * Manifests: a file split into fixed-size chunks, each named by its sha256, and a root hash that
 * names the whole file:
 *
 *   root = sha256( "webswarm-shard-manifest/1\n" | u64 size | u32 chunkBytes | u32 count | count × chunk sha256 )
 *
 * (integers little-endian). A fetcher asks for a root, checks the manifest it gets hashes to it,
 * then checks every chunk against the manifest: no provider is trusted.
 */
import { DEFAULT_CHUNK_BYTES, HASH_BYTES, MANIFEST_DOMAIN, MAX_CHUNK_BYTES, MAX_MANIFEST_CHUNKS } from './constants.ts'
import { ManifestError } from './errors.ts'

export interface ShardManifest {
  /** File size (bytes). */
  size: number
  /** Bytes per chunk; the last chunk may be shorter. */
  chunkBytes: number
  /** sha256 of each chunk, in order (count × 32 bytes). */
  hashes: Uint8Array
}

export async function sha256 (data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>))
}

export function toHex (b: Uint8Array): string {
  let s = ''
  for (const v of b) s += v.toString(16).padStart(2, '0')
  return s
}

const HEX64 = /^[0-9a-f]{64}$/

export function isHashHex (s: unknown): s is string {
  return typeof s === 'string' && HEX64.test(s)
}

export function chunkCount (m: Pick<ShardManifest, 'size' | 'chunkBytes'>): number {
  return Math.ceil(m.size / m.chunkBytes)
}

/** Hex sha256 of chunk `i`. */
export function chunkHash (m: ShardManifest, i: number): string {
  return toHex(m.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES))
}

/** Byte length of chunk `i` (the last one may be short). */
export function chunkLength (m: ShardManifest, i: number): number {
  return Math.min(m.chunkBytes, m.size - i * m.chunkBytes)
}

/** Checks a manifest's fields against each other and the limits. */
function checkManifest (m: ShardManifest): void {
  if (!Number.isSafeInteger(m.size) || m.size < 0) throw new ManifestError(`size ${m.size} is not a byte count`)
  if (!Number.isInteger(m.chunkBytes) || m.chunkBytes < 1 || m.chunkBytes > MAX_CHUNK_BYTES) throw new ManifestError(`chunkBytes ${m.chunkBytes} outside 1…${MAX_CHUNK_BYTES}`)
  const count = chunkCount(m)
  if (count > MAX_MANIFEST_CHUNKS) throw new ManifestError(`${count} chunks > ${MAX_MANIFEST_CHUNKS}`)
  if (m.hashes.byteLength !== count * HASH_BYTES) throw new ManifestError(`${m.hashes.byteLength} hash bytes for ${count} chunks (need ${count * HASH_BYTES})`)
}

/** The root hash (hex) naming a manifest. */
export async function manifestRoot (m: ShardManifest): Promise<string> {
  checkManifest(m)
  const domain = new TextEncoder().encode(MANIFEST_DOMAIN)
  const buf = new Uint8Array(domain.byteLength + 16 + m.hashes.byteLength)
  buf.set(domain, 0)
  const v = new DataView(buf.buffer, domain.byteLength, 16)
  v.setBigUint64(0, BigInt(m.size), true)
  v.setUint32(8, m.chunkBytes, true)
  v.setUint32(12, chunkCount(m), true)
  buf.set(m.hashes, domain.byteLength + 16)
  return toHex(await sha256(buf))
}

/** Splits `data` into chunks and hashes them; returns the manifest, its root and the chunks (views). */
export async function buildManifest (data: Uint8Array, chunkBytes = DEFAULT_CHUNK_BYTES): Promise<{ manifest: ShardManifest, root: string, chunks: Uint8Array[] }> {
  const count = Math.ceil(data.byteLength / chunkBytes)
  const hashes = new Uint8Array(count * HASH_BYTES)
  const chunks: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const c = data.subarray(i * chunkBytes, Math.min((i + 1) * chunkBytes, data.byteLength))
    chunks.push(c)
    hashes.set(await sha256(c), i * HASH_BYTES)
  }
  const manifest = { size: data.byteLength, chunkBytes, hashes }
  return { manifest, root: await manifestRoot(manifest), chunks }
}
