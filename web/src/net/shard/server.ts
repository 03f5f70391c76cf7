/**
 * The shard protocol's answers (SHARD_PROTOCOL over framed tensor streams; grammar in
 * PROTOCOL.md, "Shards"). Requests carry metadata only:
 *   { op: 'manifest', root: <hex> } → meta { size, chunkBytes } + tensor `hashes` u8 [count × 32]
 *   { op: 'chunk', hash: <hex> }    → tensor `chunk` u8 [n]
 * Unknown roots or chunks answer NOT_FOUND; anything else malformed answers BAD_REQUEST.
 */
import { ErrorCode, HandlerError, type TensorMessage } from '../stream/index.ts'
import { isHashHex } from './manifest.ts'
import type { ShardStore } from './store.ts'

/**
 * Answers one shard request from `store` (a node's registry of stores, registry.ts; exported for
 * the fuzz test). Serving itself (`serveShards`, `serveShardStore`) lives in registry.ts.
 */
export async function answerShardRequest (store: Pick<ShardStore, 'getManifest' | 'getChunk'>, req: TensorMessage): Promise<TensorMessage> {
  const meta = req.meta ?? {}
  if (req.tensors.length !== 0) throw new HandlerError(ErrorCode.BAD_REQUEST, 'shard requests carry no tensors')
  const keys = Object.keys(meta).sort().join(',')
  switch (meta.op) {
    case 'manifest': {
      if (keys !== 'op,root' || !isHashHex(meta.root)) throw new HandlerError(ErrorCode.BAD_REQUEST, 'manifest request needs exactly { op, root: 64 hex }')
      const m = store.getManifest(meta.root)
      if (m === undefined) throw new HandlerError(ErrorCode.NOT_FOUND, `no manifest ${meta.root}`)
      return { meta: { size: m.size, chunkBytes: m.chunkBytes }, tensors: [{ name: 'hashes', dtype: 'u8', shape: [m.hashes.byteLength], data: m.hashes }] }
    }
    case 'chunk': {
      if (keys !== 'hash,op' || !isHashHex(meta.hash)) throw new HandlerError(ErrorCode.BAD_REQUEST, 'chunk request needs exactly { op, hash: 64 hex }')
      const c = store.getChunk(meta.hash)
      if (c === undefined) throw new HandlerError(ErrorCode.NOT_FOUND, `no chunk ${meta.hash}`)
      return { tensors: [{ name: 'chunk', dtype: 'u8', shape: [c.byteLength], data: c }] }
    }
    default:
      throw new HandlerError(ErrorCode.BAD_REQUEST, `unknown shard op ${JSON.stringify(meta.op ?? null)}`)
  }
}
