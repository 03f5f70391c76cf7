/**
 * A file published as named byte ranges ("pieces"), each its own content-addressed shard, under
 * one index shard that lists them. A reader fetches the index, then only the pieces its reads
 * touch: a peer serving a few blocks of a GGUF model moves the header and those blocks' tensors,
 * never the whole file. Every byte is verified twice over: the index hashes to its root, each
 * piece's manifest hashes to the root the index names, each chunk to its manifest hash.
 *
 * Index (UTF-8 JSON, the bytes of the index shard):
 *   { "format": "webswarm-pieces/1", "file": <name>, "size": <bytes>,
 *     "pieces": [{ "name": <string>, "offset": <bytes>, "length": <bytes>, "root": <64 hex> }, …] }
 * Pieces are in offset order and cover [0, size) with no gap or overlap.
 */
import type { PeerId } from '@libp2p/interface'
import type { StreamNode } from '../stream/rpc.ts'
import { MAX_INDEX_BYTES, MAX_PIECES, PIECE_PROVIDERS_TTL_MS, PIECES_FORMAT } from './constants.ts'
import { PieceIndexError, ShardFetchError } from './errors.ts'
import { fetchShard, type FetchShardOptions } from './fetch.ts'
import { buildManifest, chunkHash, isHashHex } from './manifest.ts'
import type { ProviderDirectory } from './providers.ts'
import { assembleShard, type ShardStore } from './store.ts'

export interface Piece {
  /** What the range holds (e.g. a tensor name); unique within an index. */
  name: string
  /** Byte offset in the file. */
  offset: number
  /** Byte length (≥ 0). */
  length: number
  /** Manifest root of the piece's bytes. */
  root: string
}

export interface PieceIndex {
  /** The file's name (e.g. `model.gguf`). */
  file: string
  /** The file's size (bytes). */
  size: number
  pieces: Piece[]
}

/** A named range to cut a file at, before hashing. */
export interface PieceCut { name: string, offset: number, length: number }

/** Checks that pieces are ordered, named once, and tile [0, size) exactly. */
export function checkPieceIndex (ix: PieceIndex): void {
  if (typeof ix.file !== 'string' || ix.file === '') throw new PieceIndexError('index names no file')
  if (!Number.isSafeInteger(ix.size) || ix.size < 0) throw new PieceIndexError(`size ${String(ix.size)} is not a byte count`)
  if (!Array.isArray(ix.pieces) || ix.pieces.length > MAX_PIECES) throw new PieceIndexError(`pieces must be an array of at most ${MAX_PIECES}`)
  const names = new Set<string>()
  let at = 0
  for (const [i, p] of ix.pieces.entries()) {
    if (typeof p !== 'object' || p === null || typeof p.name !== 'string' || !isHashHex(p.root)) throw new PieceIndexError(`piece ${i} is not { name, offset, length, root: 64 hex }`)
    if (names.has(p.name)) throw new PieceIndexError(`piece name '${p.name}' appears twice`)
    names.add(p.name)
    if (p.offset !== at) throw new PieceIndexError(`piece ${i} '${p.name}' starts at ${String(p.offset)}, expected ${at} (pieces must tile the file)`)
    if (!Number.isSafeInteger(p.length) || p.length < 0) throw new PieceIndexError(`piece ${i} '${p.name}' has length ${String(p.length)}`)
    at += p.length
  }
  if (at !== ix.size) throw new PieceIndexError(`pieces cover ${at} bytes of a ${ix.size}-byte file`)
}

export function encodePieceIndex (ix: PieceIndex): Uint8Array {
  checkPieceIndex(ix)
  return new TextEncoder().encode(JSON.stringify({ format: PIECES_FORMAT, file: ix.file, size: ix.size, pieces: ix.pieces.map(p => ({ name: p.name, offset: p.offset, length: p.length, root: p.root })) }))
}

/** Parses and checks an index's bytes (from a peer: every field is checked). */
export function decodePieceIndex (bytes: Uint8Array): PieceIndex {
  if (bytes.byteLength > MAX_INDEX_BYTES) throw new PieceIndexError(`index of ${bytes.byteLength} bytes > ${MAX_INDEX_BYTES}`)
  let v: unknown
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (e) {
    throw new PieceIndexError(`index is not UTF-8 JSON (${(e as Error).message})`)
  }
  const o = v as Partial<PieceIndex> & { format?: unknown }
  if (typeof o !== 'object' || o === null || o.format !== PIECES_FORMAT) throw new PieceIndexError(`index format is not ${PIECES_FORMAT}`)
  const ix: PieceIndex = { file: o.file as string, size: o.size as number, pieces: o.pieces as Piece[] }
  checkPieceIndex(ix)
  return ix
}

/** A file read by range (e.g. a ModelSource's file), so publishing never holds the whole file at once. */
export interface RangeReader {
  size: number
  read: (offset: number, length: number) => Promise<Uint8Array>
}

/**
 * Cuts the file at `cuts` (which must tile it), stores every piece's manifest and chunks and the
 * index in `store`; returns the index and its root (the name peers fetch the file by).
 */
export async function publishPieces (store: ShardStore, file: string, data: Uint8Array | RangeReader, cuts: readonly PieceCut[], chunkBytes?: number): Promise<{ root: string, index: PieceIndex }> {
  const src: RangeReader = data instanceof Uint8Array ? { size: data.byteLength, read: async (o, n) => data.subarray(o, o + n) } : data
  checkPieceIndex({ file, size: src.size, pieces: cuts.map(c => ({ ...c, root: '0'.repeat(64) })) }) // cuts tile the file before anything is hashed
  const pieces: Piece[] = []
  for (const c of cuts) {
    const bytes = await src.read(c.offset, c.length)
    if (bytes.byteLength !== c.length) throw new PieceIndexError(`read of piece '${c.name}' returned ${bytes.byteLength} of ${c.length} bytes`)
    const { manifest, root, chunks } = await buildManifest(bytes, chunkBytes)
    store.putManifest(root, manifest)
    chunks.forEach((b, i) => { store.putChunk(chunkHash(manifest, i), b) })
    pieces.push({ ...c, root })
  }
  const index: PieceIndex = { file, size: src.size, pieces }
  const { manifest, root, chunks } = await buildManifest(encodePieceIndex(index), chunkBytes)
  store.putManifest(root, manifest)
  chunks.forEach((b, i) => { store.putChunk(chunkHash(manifest, i), b) })
  return { root, index }
}

/** fetchShard's options a piece reader passes through (directory and store are its own). */
export type PieceFetchOptions = Omit<FetchShardOptions, 'directory' | 'store' | 'onProgress'> & {
  /** How long one lookup of the file's providers serves later piece fetches (ms). @default PIECE_PROVIDERS_TTL_MS (30 s) */
  providersTtlMs?: number
}

/**
 * Reads byte ranges of a pieced file from peers: the index once, then each piece a read touches,
 * once (concurrent reads of one piece share its fetch). Providers are those of the index root:
 * whoever announces the file may hold any piece; one that lacks a piece answers NOT_FOUND and the
 * fetcher asks the others.
 */
export class PiecedFile {
  private readonly fetching = new Map<string, Promise<Uint8Array>>()
  /** Pieces fetched from peers by this reader (name → bytes), for accounting and tests. */
  readonly fetched = new Map<string, number>()

  private constructor (
    private readonly node: StreamNode,
    readonly root: string,
    readonly index: PieceIndex,
    private readonly store: ShardStore,
    private readonly directory: ProviderDirectory,
    private readonly opts: PieceFetchOptions
  ) {}

  /** Fetches and checks the index of `root` (through `store`: a held index is not fetched again). */
  static async open (node: StreamNode, root: string, o: PieceFetchOptions & { directory: ProviderDirectory, store: ShardStore }): Promise<PiecedFile> {
    const { directory, store, ...rest } = o
    await fetchShard(node, root, { ...rest, directory, store })
    const bytes = assembleShard(store, root)
    if (bytes === undefined) throw new ShardFetchError(`index ${root.slice(0, 12)}… was fetched but is missing from the store`)
    return new PiecedFile(node, root, decodePieceIndex(bytes), store, directory, rest)
  }

  /** The last lookup of the file's providers and when it was made (ms). */
  private providers?: { at: number, found: Promise<PeerId[]> }

  /**
   * The directory one piece fetch uses: every piece is looked up among the providers of the file
   * (not by its own root). A fetch's first lookup reuses a recent one (a DHT lookup per tensor
   * would cost seconds each); its re-lookups, made when every provider it knew failed, are fresh.
   */
  private pieceDirectory (): ProviderDirectory {
    let first = true
    return {
      provide: async (r, opt) => { await this.directory.provide(r, opt) },
      findProviders: async (_r, opt) => {
        const now = Date.now()
        if (!first || this.providers === undefined || now - this.providers.at > (this.opts.providersTtlMs ?? PIECE_PROVIDERS_TTL_MS)) {
          const found = this.directory.findProviders(this.root, opt)
          this.providers = { at: now, found }
          found.catch(() => { if (this.providers?.found === found) this.providers = undefined })
        }
        first = false
        return await this.providers.found
      }
    }
  }

  /** The piece named `name`. */
  piece (name: string): Piece | undefined { return this.index.pieces.find(p => p.name === name) }

  /** Bytes [offset, offset + length) of the file, fetching the pieces they fall in. */
  async read (offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.index.size) {
      throw new PieceIndexError(`read [${offset}, ${offset + length}) outside ${this.index.file} (${this.index.size} bytes)`)
    }
    const out = new Uint8Array(length)
    const end = offset + length
    const touched = this.index.pieces.filter(p => p.length > 0 && p.offset < end && p.offset + p.length > offset)
    await Promise.all(touched.map(async (p) => {
      const bytes = await this.pieceBytes(p)
      const from = Math.max(offset, p.offset)
      const to = Math.min(end, p.offset + p.length)
      out.set(bytes.subarray(from - p.offset, to - p.offset), from - offset)
    }))
    return out
  }

  private async pieceBytes (p: Piece): Promise<Uint8Array> {
    let f = this.fetching.get(p.root)
    if (f === undefined) {
      f = (async () => {
        const res = await fetchShard(this.node, p.root, { ...this.opts, directory: this.pieceDirectory(), store: this.store })
        if (res.manifest.size !== p.length) throw new PieceIndexError(`piece '${p.name}' is ${res.manifest.size} bytes by its manifest, ${p.length} by the index`)
        const bytes = assembleShard(this.store, p.root)
        if (bytes === undefined) throw new ShardFetchError(`piece '${p.name}' was fetched but is missing from the store`)
        if (res.fetchedFrom.size > 0) this.fetched.set(p.name, p.length)
        return bytes
      })()
      this.fetching.set(p.root, f)
      f.catch(() => this.fetching.delete(p.root)) // a failed fetch may be retried
    }
    return await f
  }
}
