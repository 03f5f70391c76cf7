/**
 * Content-addressed shard exchange: files (e.g. model weights) split into sha256-named chunks
 * under a manifest root; providers announce roots, fetchers download from several providers in
 * parallel, verify every byte, and resume when a provider disappears. Grammar: PROTOCOL.md, "Shards".
 *
 * @example
 * ```ts
 * const store = new MemoryShardStore()
 * const root = await store.addFile(weights)            // provider side
 * await serveShards(node, store)                    // one of possibly several stores on the node
 * await contentRoutingDirectory(node).provide(root)
 * // elsewhere
 * const mine = new MemoryShardStore()
 * await fetchShard(other, root, { directory: contentRoutingDirectory(other), store: mine })
 * const bytes = mine.assemble(root)
 * ```
 */
export { fetchShard, type FetchShardOptions, type FetchShardResult } from './fetch.ts'
export { answerShardRequest } from './server.ts'
export { serveShards, serveShardStore, servedShardStoreCount, ShardRegistry, type ShardServing, type ShardSource } from './registry.ts'
export { MemoryShardStore, assembleShard, type ShardStore } from './store.ts'
export { buildManifest, manifestRoot, chunkHash, chunkCount, type ShardManifest } from './manifest.ts'
export { contentRoutingDirectory, MemoryDirectory, rootCid, type ProviderDirectory } from './providers.ts'
export { checkPieceIndex, decodePieceIndex, encodePieceIndex, PiecedFile, publishPieces, type Piece, type PieceCut, type PieceFetchOptions, type PieceIndex, type RangeReader } from './pieces.ts'
export * from './errors.ts'
