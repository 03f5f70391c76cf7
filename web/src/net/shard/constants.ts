/** Limits and timeouts of content-addressed shard exchange; each with its unit and reason. */
export { SHARD_CHUNK_BYTES as DEFAULT_CHUNK_BYTES } from '../protocols.ts'

/** Version tag hashed into every manifest root, so a future layout can never collide with this one. */
export const MANIFEST_DOMAIN = 'webswarm-shard-manifest/1\n'

/** Bytes of a sha256 digest. */
export const HASH_BYTES = 32

/** Largest chunk size a manifest may declare (bytes): bounds one response and one hash check. */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024

/** Most chunks one manifest may list: 1 Mi × 1 MiB chunks = 1 TiB, far beyond any model we move. */
export const MAX_MANIFEST_CHUNKS = 1024 * 1024

/** Concurrent chunk requests per provider: two keeps its pipe busy while one response is verified. */
export const DEFAULT_PER_PROVIDER = 2

/** Concurrent chunk requests in all: caps memory at this × chunk size. */
export const DEFAULT_MAX_IN_FLIGHT = 8

/** Time for one chunk request, dial included (ms): 1 MiB at ≥ 1 MB/s with slack for a busy peer. */
export const DEFAULT_CHUNK_TIMEOUT_MS = 15_000

/** Idle timeout of a chunk request (ms): a provider that stops sending for this long is dropped. */
export const DEFAULT_CHUNK_IDLE_MS = 5_000

/** Time for a manifest request (ms). */
export const DEFAULT_MANIFEST_TIMEOUT_MS = 15_000

/** Time for a provider lookup (ms). */
export const DEFAULT_LOOKUP_TIMEOUT_MS = 15_000

/** Failed attempts (timeouts, resets) before a provider is dropped for the rest of a fetch. */
export const DEFAULT_PROVIDER_FAILURES = 2

/** Most providers a lookup returns that we use. */
export const DEFAULT_MAX_PROVIDERS = 16

/** Provider lookups per fetch: the first, plus re-lookups when every known provider is gone. */
export const DEFAULT_LOOKUPS = 3

/** Format tag of a pieced file's index (pieces.ts): a later layout gets a new tag. */
export const PIECES_FORMAT = 'webswarm-pieces/1'

/** Most pieces one index may list: a GGUF has one per tensor, ~20k for a 64-expert MoE with per-expert tensors. */
export const MAX_PIECES = 1 << 20

/** Largest index accepted from a peer (bytes): ~150 bytes per piece × 64k pieces, with room. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024

/** How long a pieced file's provider lookup is reused by the next piece fetches (ms): one DHT lookup per model load, not per tensor. */
export const PIECE_PROVIDERS_TTL_MS = 30_000
