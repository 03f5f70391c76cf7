/**
 * StateShards over libp2p (web/src/net/shard): a bounded store of training states, served on the
 * shard protocol, fetched from the providers a sync record names with net/shard's multi-provider
 * `fetchShard` (every chunk hash-checked; a provider that fails, lies or leaves mid-fetch is
 * dropped and its chunks come from the others).
 *
 * Providers come from the CRDT (the sync record's members), not from DHT provider records: the
 * board already says who holds each state, and a record lookup would add seconds per join.
 * Shard requests need a direct (unlimited) connection; one is opened through the relay's WebRTC
 * signalling when there is none, as Libp2pTransport does for the all-reduce.
 *
 *   const shards = await Libp2pStateShards.start(swarm.node, { relayAddr })
 *   await TrainSession.start({ transport, board, backend, corpus, shards })
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { assembleShard, buildManifest, chunkCount, chunkHash, fetchShard, serveShardStore, type ProviderDirectory, type ShardManifest, type ShardServing, type ShardStore } from '../../net/shard/index.ts'
import type { StreamNode } from '../../net/stream/rpc.ts'
import { dialThroughRelay } from '../../net/peers.ts'
import { StateHashMismatchError } from '../train/errors.ts'
import { KEEP_STATES, stateChunkBytes, type StateFetchOptions, type StateFetchResult, type StateShards } from '../train/state-shards.ts'

/** How long a state a peer read from us stays held beyond `keep` (ms): a joiner's fetch outlives fast syncs. */
const STATE_LEASE_MS = 30_000

/**
 * A ShardStore that holds the chunks of the newest `keep` manifests (chunks shared by several
 * states, e.g. fragments a streaming sync did not touch, are held once). Chunks no held manifest
 * names are not stored, so a peer's memory is bounded by `keep` states, plus at most `keep` more
 * while remote peers are reading them: a state whose manifest or chunk was served (`leaseRoot`,
 * `leaseChunk`) is kept for STATE_LEASE_MS after the last read, so a joiner that is still
 * fetching does not lose its state to newer syncs (they can come several a second on a small model).
 */
export class RetainingShardStore implements ShardStore {
  private readonly manifests = new Map<string, ShardManifest>()
  /** Roots, oldest first. */
  private readonly order: string[] = []
  private readonly chunks = new Map<string, Uint8Array>()
  /** Chunk hash → held roots naming it. */
  private readonly owners = new Map<string, Set<string>>()
  /** Root → time (ms) until which a remote read keeps it. */
  private readonly leases = new Map<string, number>()
  /** Roots a fetch is filling: never dropped while it runs. */
  readonly pinned = new Set<string>()
  /** Sizes fetches expect per root: a manifest of another size is refused before any chunk moves. */
  readonly expectSize = new Map<string, number>()

  constructor (readonly keep = KEEP_STATES, private readonly leaseMs = STATE_LEASE_MS, private readonly now: () => number = Date.now) {}

  getManifest (root: string): ShardManifest | undefined { return this.manifests.get(root) }

  putManifest (root: string, m: ShardManifest): void {
    const want = this.expectSize.get(root)
    if (want !== undefined && m.size !== want) throw new StateHashMismatchError(`manifest ${root.slice(0, 12)}… describes ${m.size} bytes, a state of this run is ${want}`)
    if (this.manifests.has(root)) { this.touch(root); this.evict(); return }
    this.manifests.set(root, m)
    this.order.push(root)
    for (let i = 0; i < chunkCount(m); i++) {
      const h = chunkHash(m, i)
      const set = this.owners.get(h)
      if (set === undefined) this.owners.set(h, new Set([root]))
      else set.add(root)
    }
    this.evict()
  }

  getChunk (hash: string): Uint8Array | undefined { return this.chunks.get(hash) }
  putChunk (hash: string, bytes: Uint8Array): void { if (this.owners.has(hash)) this.chunks.set(hash, bytes) }
  hasChunk (hash: string): boolean { return this.chunks.has(hash) }

  /** A remote peer read `root`'s manifest: hold it for the lease time from now. */
  leaseRoot (root: string): void {
    if (this.manifests.has(root)) this.leases.set(root, this.now() + this.leaseMs)
  }

  /** A remote peer read chunk `hash`: hold every state naming it for the lease time from now. */
  leaseChunk (hash: string): void {
    for (const root of this.owners.get(hash) ?? []) this.leases.set(root, this.now() + this.leaseMs)
  }

  /** Roots held, oldest first. */
  roots (): string[] { return [...this.order] }
  /** Bytes of chunks held. */
  bytes (): number { let n = 0; for (const c of this.chunks.values()) n += c.byteLength; return n }

  /** The whole state of `root`, if every chunk is held. */
  assemble (root: string): Uint8Array | undefined { return assembleShard(this, root) }

  clear (): void {
    this.manifests.clear(); this.order.length = 0; this.chunks.clear(); this.owners.clear(); this.leases.clear()
  }

  private touch (root: string): void {
    this.order.splice(this.order.indexOf(root), 1)
    this.order.push(root)
  }

  /** Drops states older than the newest `keep`: never a pinned one, nor up to `keep` leased ones (the newest leased). */
  private evict (): void {
    const now = this.now()
    for (const [root, until] of this.leases) if (until <= now || !this.manifests.has(root)) this.leases.delete(root)
    let leased = 0
    for (let i = this.order.length - this.keep - 1; i >= 0; i--) {
      const root = this.order[i]
      if (this.pinned.has(root)) continue
      if (this.leases.has(root) && leased < this.keep) { leased++; continue }
      this.drop(i)
    }
  }

  private drop (i: number): void {
    const [root] = this.order.splice(i, 1)
    const m = this.manifests.get(root)!
    this.manifests.delete(root)
    this.leases.delete(root)
    for (let k = 0; k < chunkCount(m); k++) {
      const h = chunkHash(m, k)
      const set = this.owners.get(h)
      set?.delete(root)
      if (set === undefined || set.size === 0) { this.owners.delete(h); this.chunks.delete(h) }
    }
  }
}

export interface Libp2pStateShardsOptions {
  /** Relay multiaddr (ending in `/p2p/<relay id>`) for WebRTC signalling to peers we hold no direct connection to. */
  relayAddr?: string
  /** States kept. @default KEEP_STATES (3) */
  keep?: number
  /** Per chunk request, ms (fetchShard's default otherwise). */
  chunkTimeoutMs?: number
  /** A chunk request with no byte this long fails, ms. */
  chunkIdleMs?: number
  /** Fetches in flight per provider. */
  perProvider?: number
}

/** Direct WebRTC dials per provider before a shard request gives up on it (NO_RESERVATION answers are retried apart). */
const DIAL_ATTEMPTS = 2

type Node = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'dial' | 'getConnections' | 'peerId'>

export class Libp2pStateShards implements StateShards {
  readonly store: RetainingShardStore
  private readonly dialing = new Map<string, Promise<unknown>>()
  private serving?: ShardServing
  private closed = false

  private constructor (private readonly node: Node, private readonly opts: Libp2pStateShardsOptions) {
    this.store = new RetainingShardStore(opts.keep ?? KEEP_STATES)
  }

  /** Serves this node's states on the shard protocol, beside any other store the node serves (e.g. model weights). */
  static async start (node: Node, opts: Libp2pStateShardsOptions = {}): Promise<Libp2pStateShards> {
    const s = new Libp2pStateShards(node, opts)
    const store = s.store
    // What remote peers read is leased: a joiner's fetch keeps its state alive (local reads do not).
    s.serving = await serveShardStore(node, {
      getManifest: (root) => { store.leaseRoot(root); return store.getManifest(root) },
      getChunk: (hash) => { store.leaseChunk(hash); return store.getChunk(hash) }
    })
    return s
  }

  async publish (data: Uint8Array): Promise<string> {
    const { manifest, root, chunks } = await buildManifest(data, stateChunkBytes(data.byteLength))
    this.store.putManifest(root, manifest)
    chunks.forEach((c, i) => { this.store.putChunk(chunkHash(manifest, i), c) })
    return root
  }

  async fetch (root: string, providers: readonly string[], o: StateFetchOptions): Promise<StateFetchResult> {
    const have = this.store.assemble(root)
    if (have !== undefined) {
      if (have.byteLength !== o.expectBytes) throw new StateHashMismatchError(`state ${root.slice(0, 12)}… held here is ${have.byteLength} bytes, expected ${o.expectBytes}`)
      return { data: have, fetchedFrom: new Map() }
    }
    const held = this.store.getManifest(root)
    if (held !== undefined && held.size !== o.expectBytes) throw new StateHashMismatchError(`manifest ${root.slice(0, 12)}… describes ${held.size} bytes, expected ${o.expectBytes}`)
    this.store.pinned.add(root)
    this.store.expectSize.set(root, o.expectBytes)
    try {
      const res = await fetchShard(this.streamNode(), root, {
        directory: this.directory(providers, o.log),
        store: this.store,
        signal: o.signal,
        chunkTimeoutMs: this.opts.chunkTimeoutMs,
        chunkIdleMs: this.opts.chunkIdleMs,
        perProvider: this.opts.perProvider,
        onProgress: o.onProgress,
        log: o.log
      })
      const data = this.store.assemble(root)
      if (data === undefined) throw new StateHashMismatchError(`state ${root.slice(0, 12)}… was fetched but chunks are missing from the store`)
      return { data, fetchedFrom: res.fetchedFrom }
    } finally {
      this.store.pinned.delete(root)
      this.store.expectSize.delete(root)
    }
  }

  /** Stops serving these states (the node's other shard stores stay served) and drops every state. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.store.clear()
    await this.serving?.stop()
  }

  /** The providers a sync record names (bad ids skipped with a line in the log). */
  private directory (providers: readonly string[], log?: (line: string) => void): ProviderDirectory {
    const self = this.node.peerId.toString()
    const ids: PeerId[] = []
    for (const p of providers) {
      if (p === self) continue
      try { ids.push(peerIdFromString(p)) } catch { log?.(`train: provider ${JSON.stringify(p.slice(0, 80))} is not a peer id: skipped`) }
    }
    return {
      provide: async () => {},
      findProviders: async (_root, options) => ids.slice(0, options?.limit ?? Infinity)
    }
  }

  /** The node as net/stream sees it, with a direct connection opened before each shard request. */
  private streamNode (): StreamNode {
    const node = this.node
    return {
      handle: node.handle.bind(node),
      unhandle: node.unhandle.bind(node),
      dialProtocol: (async (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal }) => {
        await this.ensureDirect(peer, options?.signal)
        return await node.dialProtocol(peer, protocols, options)
      }) as StreamNode['dialProtocol']
    }
  }

  private async ensureDirect (peer: PeerId, signal?: AbortSignal): Promise<void> {
    const relay = this.opts.relayAddr
    if (relay === undefined) return
    if (this.node.getConnections(peer).some(c => c.limits === undefined && c.status === 'open')) return
    const key = peer.toString()
    let p = this.dialing.get(key)
    if (p === undefined) {
      p = this.dialDirect(relay, peer, signal).finally(() => this.dialing.delete(key))
      this.dialing.set(key, p)
    }
    await p
  }

  /**
   * WebRTC set-up through a busy relay sometimes fails once, and a provider between reconnecting to
   * the relay and reserving answers NO_RESERVATION: net's dialThroughRelay retries both (bounded)
   * before the provider counts a failure.
   */
  private async dialDirect (relay: string, peer: PeerId, signal?: AbortSignal): Promise<void> {
    await dialThroughRelay(this.node, relay, peer, { signal, attempts: DIAL_ATTEMPTS })
  }
}
