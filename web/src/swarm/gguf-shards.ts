/**
 * GGUF models over the swarm's content-addressed shards. A publisher cuts the file into one piece
 * for the header and one per tensor (net/shard/pieces.ts: each piece a sha256-chunked shard, all
 * listed by one index shard whose root names the model). A peer that serves blocks [a, b) opens
 * the root as a ModelSource and loads as from a URL: the GGUF loader's range reads fetch only the
 * header and those blocks' tensors, from any peers that hold them, every chunk verified.
 *
 *   // publisher
 *   const store = new MemoryShardStore()
 *   const { root } = await publishGguf(store, 'model.gguf', bytes)
 *   await serveShardStore(node, store); await directory.provide(root)
 *   // server of blocks [4, 8)
 *   const { source } = await ggufShardSource(node, root, { directory, store: new MemoryShardStore() })
 *   const span = await loadBlocks(source, backend, { start: 4, end: 8 })
 */
import { PieceIndexError, PiecedFile, publishPieces, type PieceCut, type PieceFetchOptions, type PieceIndex, type ProviderDirectory, type ShardStore } from '../net/shard/index.ts'
import type { StreamNode } from '../net/stream/rpc.ts'
import { CorruptWeightsError, WeightsSourceError } from '../model/errors.ts'
import { parseGgufHeader, readGgufHeader, type GgufHeader } from '../model/gguf/read.ts'
import { isGgufName, type ModelSource } from '../model/source.ts'

/** Name of the piece holding the GGUF header (metadata, tensor infos, alignment padding). */
export const GGUF_HEADER_PIECE = 'gguf.header'

/**
 * Cuts tiling a GGUF file: the header up to the first tensor's data, then each tensor up to the
 * next one's (its alignment padding rides with it), the last one to the end of the file.
 */
export function ggufCuts (h: GgufHeader, size: number): PieceCut[] {
  const tensors = [...h.tensors.values()].sort((a, b) => a.offset - b.offset)
  const headerEnd = tensors[0]?.offset ?? size
  if (headerEnd < h.dataStart) throw new CorruptWeightsError(`tensor '${tensors[0].name}' starts at ${headerEnd}, inside the header (data starts at ${h.dataStart})`)
  const cuts: PieceCut[] = [{ name: GGUF_HEADER_PIECE, offset: 0, length: headerEnd }]
  tensors.forEach((t, i) => {
    const end = tensors[i + 1]?.offset ?? size
    if (t.offset + t.bytes > end) throw new CorruptWeightsError(`tensor '${t.name}' [${t.offset}, ${t.offset + t.bytes}) overlaps the next tensor or the end of the file (${end})`)
    cuts.push({ name: t.name, offset: t.offset, length: end - t.offset })
  })
  return cuts
}

export interface PublishGgufOptions {
  /** Chunk size of every piece (bytes). @default SHARD_CHUNK_BYTES */
  chunkBytes?: number
}

/**
 * Publishes a GGUF file into `store` as pieces (header + one per tensor): from its bytes, or read
 * piece by piece from a ModelSource holding `file` (the whole file is never in memory at once
 * beyond what the store keeps). Returns the root peers load it by.
 */
export async function publishGguf (store: ShardStore, file: string, data: Uint8Array | ModelSource, opts: PublishGgufOptions = {}): Promise<{ root: string, index: PieceIndex }> {
  if (!isGgufName(file)) throw new WeightsSourceError(`'${file}' is not a .gguf file name`)
  if (data instanceof Uint8Array) {
    return await publishPieces(store, file, data, ggufCuts(parseGgufHeader(data, data.byteLength, file), data.byteLength), opts.chunkBytes)
  }
  const size = await data.size(file)
  if (size === undefined) throw new WeightsSourceError(`${data.label}/${file}: file not found`)
  const header = await readGgufHeader(data, file)
  return await publishPieces(store, file, { size, read: async (o, n) => await data.read(file, o, n) }, ggufCuts(header, size), opts.chunkBytes)
}

export interface GgufShardSourceOptions extends PieceFetchOptions {
  /** Who provides the model's root (any provider may hold only some pieces). */
  directory: ProviderDirectory
  /** Where fetched chunks go; serve it too and this peer becomes a provider of what it fetched. */
  store: ShardStore
}

/**
 * The GGUF model named `root` as a ModelSource: the index is fetched now, the header and tensors
 * as the loader reads them. `pieces` tells what was fetched (tests count bytes with it).
 */
export async function ggufShardSource (node: StreamNode, root: string, opts: GgufShardSourceOptions): Promise<{ source: ModelSource, pieces: PiecedFile }> {
  const pieces = await PiecedFile.open(node, root, opts)
  const ix = pieces.index
  if (!isGgufName(ix.file)) throw new PieceIndexError(`index ${root.slice(0, 12)}… names '${ix.file}', not a .gguf file`)
  const header = ix.pieces[0]
  if (header?.name !== GGUF_HEADER_PIECE) throw new PieceIndexError(`index ${root.slice(0, 12)}… does not start with the '${GGUF_HEADER_PIECE}' piece`)
  const label = `shards:${root.slice(0, 12)}…`
  const source: ModelSource = {
    label,
    file: ix.file,
    headerBytes: header.length,
    size: async (file) => file === ix.file ? ix.size : undefined,
    read: async (file, offset, length) => {
      if (file !== ix.file) throw new WeightsSourceError(`${label}: holds only '${ix.file}', not '${file}'`)
      return await pieces.read(offset, length)
    }
  }
  return { source, pieces }
}
