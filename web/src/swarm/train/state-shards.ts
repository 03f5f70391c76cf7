/**
 * θ_global ‖ outer momentum as a content-addressed shard set. After each sync every member
 * publishes the new state (the same bytes everywhere, so the same manifest root) and records the
 * root on the board next to θ_global's hash; a late joiner, or a worker that fell behind, fetches
 * that root from the sync's members at once and checks the bytes against the board's θ hash.
 *
 * The training code only sees `StateShards`; the libp2p side (net/shard's store, server and
 * multi-provider fetch) is injected from web/src/swarm/transport/shard-store.ts.
 */
import type { SnapshotState } from './allreduce.ts'
import { StateHashMismatchError } from './errors.ts'
import { hashBytes } from './outer.ts'

/** Smallest and largest chunk of a state shard set (bytes). */
export const MIN_STATE_CHUNK_BYTES = 16 * 1024
export const MAX_STATE_CHUNK_BYTES = 1024 * 1024
/** A state is cut into about this many chunks (while chunks stay in the bounds above). */
const STATE_CHUNKS_TARGET = 16

/** States a member keeps serving: the newest and the ones before (a joiner may read a record one or two syncs old). */
export const KEEP_STATES = 3

/**
 * Chunk size of a state of `size` bytes: a power of two near size / 16, clamped to
 * [16 KiB, 1 MiB]. A function of the size alone, so every member cuts the same bytes into the
 * same chunks and gets the same root; small states still spread over several providers.
 */
export function stateChunkBytes (size: number): number {
  let c = MIN_STATE_CHUNK_BYTES
  while (c < MAX_STATE_CHUNK_BYTES && c * STATE_CHUNKS_TARGET < size) c *= 2
  return c
}

export interface StateFetchResult {
  data: Uint8Array
  /** Chunks per provider (peer id → count) fetched in this call. */
  fetchedFrom: Map<string, number>
}

export interface StateFetchOptions {
  /** Bytes the state must have (8 × parameters). */
  expectBytes: number
  signal?: AbortSignal
  /** One line per refused provider or chunk. */
  log?: (line: string) => void
  /** After each stored chunk. */
  onProgress?: (done: number, total: number) => void
}

/** Storage and exchange of state shard sets (implemented over libp2p in transport/shard-store.ts). */
export interface StateShards {
  /** Stores `data` (cut with `stateChunkBytes`), serves it, drops states beyond the newest KEEP_STATES; returns the root. */
  publish: (data: Uint8Array) => Promise<string>
  /**
   * Fetches `root` from `providers` in parallel, every chunk hash-checked (a provider serving a bad
   * chunk is dropped, its chunks fetched from the others); refuses a manifest that is not
   * `expectBytes` long before any chunk is fetched. The fetched state is served from then on.
   */
  fetch: (root: string, providers: readonly string[], opts: StateFetchOptions) => Promise<StateFetchResult>
  /** Stops serving and drops every state. */
  close: () => void
}

/**
 * Fetches the state named by sync `seq`'s record and checks it against the record: θ_global's
 * sha256 must equal `hash` (the chunks are already checked against the root). Returns it as a
 * SnapshotState for DiLoCoWorker.initFromSnapshot.
 */
export async function fetchStateShards (shards: StateShards, seq: number, rec: { hash: string, root: string }, providers: readonly string[], expectBytes: number, log?: (line: string) => void): Promise<SnapshotState & { fetchedFrom: Map<string, number> }> {
  const { data, fetchedFrom } = await shards.fetch(rec.root, providers, { expectBytes, log })
  if (data.byteLength !== expectBytes || expectBytes % 8 !== 0) throw new StateHashMismatchError(`state ${rec.root.slice(0, 12)}… holds ${data.byteLength} bytes, θ ‖ momentum needs ${expectBytes}`)
  const half = data.byteLength / 2
  const hash = await hashBytes(data.subarray(0, half))
  if (hash !== rec.hash) throw new StateHashMismatchError(`state ${rec.root.slice(0, 12)}… of sync ${seq} holds θ_global ${hash.slice(0, 12)}…, the board records ${rec.hash.slice(0, 12)}…`)
  return { round: seq, data, hash, momentumHash: await hashBytes(data.subarray(half)), meta: '{}', fetchedFrom }
}
