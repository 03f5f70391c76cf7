/** Where a peer keeps the manifests and chunks it can serve. */
import { buildManifest, chunkCount, chunkHash, type ShardManifest } from './manifest.ts'

export interface ShardStore {
  getManifest: (root: string) => ShardManifest | undefined
  putManifest: (root: string, manifest: ShardManifest) => void
  /** The chunk with this hex sha256, if held. */
  getChunk: (hash: string) => Uint8Array | undefined
  /** Stores a chunk; callers verify its hash first. */
  putChunk: (hash: string, bytes: Uint8Array) => void
  hasChunk: (hash: string) => boolean
}

/** An in-memory store (browsers may back one with IndexedDB/OPFS later; the interface stays). */
export class MemoryShardStore implements ShardStore {
  private readonly manifests = new Map<string, ShardManifest>()
  private readonly chunks = new Map<string, Uint8Array>()

  getManifest (root: string): ShardManifest | undefined { return this.manifests.get(root) }
  putManifest (root: string, manifest: ShardManifest): void { this.manifests.set(root, manifest) }
  getChunk (hash: string): Uint8Array | undefined { return this.chunks.get(hash) }
  putChunk (hash: string, bytes: Uint8Array): void { this.chunks.set(hash, bytes) }
  hasChunk (hash: string): boolean { return this.chunks.has(hash) }

  /** Chunks `data`, stores manifest and chunks; returns the root naming it. */
  async addFile (data: Uint8Array, chunkBytes?: number): Promise<string> {
    const { manifest, root, chunks } = await buildManifest(data, chunkBytes)
    this.putManifest(root, manifest)
    chunks.forEach((c, i) => { this.putChunk(chunkHash(manifest, i), c) })
    return root
  }

  /** The whole file of `root`, if every chunk is held. */
  assemble (root: string): Uint8Array | undefined { return assembleShard(this, root) }
}

/** The whole file of `root` from `store`, if it holds the manifest and every chunk. */
export function assembleShard (store: ShardStore, root: string): Uint8Array | undefined {
  const m = store.getManifest(root)
  if (m === undefined) return undefined
  const out = new Uint8Array(m.size)
  for (let i = 0; i < chunkCount(m); i++) {
    const c = store.getChunk(chunkHash(m, i))
    if (c === undefined) return undefined
    out.set(c, i * m.chunkBytes)
  }
  return out
}
