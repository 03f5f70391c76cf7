/**
 * Provider lookup behind a small interface: who provides a manifest root. One implementation uses
 * libp2p content routing (kad-dht provider records, CID = raw sha256 of the root); another is an
 * in-memory directory for tests and single-process swarms.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { isHashHex } from './manifest.ts'
import { ManifestError } from './errors.ts'

export interface ProviderDirectory {
  /** Announces that `self` provides `root` (refreshing is the directory's or caller's job). */
  provide: (root: string, options?: { signal?: AbortSignal }) => Promise<void>
  /** Peers that announced `root` (at most `limit`), excluding nobody: callers skip themselves. */
  findProviders: (root: string, options?: { signal?: AbortSignal, limit?: number }) => Promise<PeerId[]>
}

/** The CID naming a manifest root in content routing: CIDv1, raw codec, sha2-256 multihash. */
export function rootCid (root: string): CID {
  if (!isHashHex(root)) throw new ManifestError(`root ${JSON.stringify(root)} is not 64 hex digits`)
  const bytes = new Uint8Array(32)
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(root.slice(2 * i, 2 * i + 2), 16)
  return CID.createV1(raw.code, createDigest(sha256Hasher.code, bytes))
}

/** Provider records through libp2p content routing (the kad-dht service of NET-A's node). */
export function contentRoutingDirectory (node: Pick<Libp2p, 'contentRouting' | 'peerId'>): ProviderDirectory {
  return {
    provide: async (root, options) => { await node.contentRouting.provide(rootCid(root), { signal: options?.signal }) },
    findProviders: async (root, options) => {
      const out: PeerId[] = []
      const seen = new Set<string>()
      for await (const p of node.contentRouting.findProviders(rootCid(root), { signal: options?.signal })) {
        const id = p.id.toString()
        if (seen.has(id) || p.id.equals(node.peerId)) continue
        seen.add(id)
        out.push(p.id)
        if (out.length >= (options?.limit ?? Infinity)) break
      }
      return out
    }
  }
}

/** A shared in-memory directory: `forPeer(id)` gives each peer its view. */
export class MemoryDirectory {
  private readonly providers = new Map<string, Map<string, PeerId>>()

  forPeer (self: PeerId): ProviderDirectory {
    return {
      provide: async (root) => {
        const m = this.providers.get(root) ?? new Map<string, PeerId>()
        m.set(self.toString(), self)
        this.providers.set(root, m)
      },
      findProviders: async (root, options) => [...(this.providers.get(root)?.values() ?? [])].filter(p => !p.equals(self)).slice(0, options?.limit ?? Infinity)
    }
  }

  /** Forgets a provider everywhere (a peer leaving). */
  remove (peer: PeerId): void {
    for (const m of this.providers.values()) m.delete(peer.toString())
  }
}
