/**
 * The one registry of WebSwarm wire protocols: ids (all `/webswarm/<name>/<semver>`), versions,
 * size limits and timeouts. Grammars: PROTOCOL.md.
 *
 * Every protocol the swarm speaks is declared here once, as data, so limits are reviewed in one
 * place and no handler invents its own: the swarm transport (swarm/transport/libp2p.ts) takes each
 * swarm protocol's bytes, message count, stream counts and relayed-link rule from SWARM_PROTOCOLS. Sections are owned by their module (kad/crdt/discovery:
 * NET-A; tensor streams/shards: NET-B); the swarm layer adds infer/expert/allreduce additively.
 */
import type { TensorStreamLimits } from './stream/index.ts'

// ---------------------------------------------------------------- kad, crdt-sync, discovery (NET-A)

/** Prefix of every WebSwarm protocol id; versions are the last path segment. */
export const PROTOCOL_PREFIX = '/webswarm'

const KiB = 1024
const MiB = 1024 * KiB

/** A libp2p stream protocol of the NET-A family: id plus the limits handler and dialer honour. */
export interface ProtocolSpec {
  /** Full multistream-select id, e.g. `/webswarm/crdt-sync/2.0.0`. */
  readonly id: string
  /** Largest single message a peer may send, in bytes; larger → stream reset. */
  readonly maxMessageBytes: number
  /** Most messages one stream may carry in either direction before it is reset. */
  readonly maxMessagesPerStream: number
  /** Whole-exchange deadline in ms: a stream still open after this is aborted. */
  readonly timeoutMs: number
  /** Concurrent inbound streams per connection (libp2p registrar limit). */
  readonly maxInboundStreams: number
  /** Concurrent outbound streams per connection (libp2p registrar limit). */
  readonly maxOutboundStreams: number
  /** Whether the protocol may run over limited (relayed) connections. */
  readonly runOnLimitedConnection: boolean
}

/** Private Kademlia protocol: our DHT never mixes with the public IPFS one. */
export const KAD_PROTOCOL = `${PROTOCOL_PREFIX}/kad/1.0.0`

/**
 * y-protocols SyncStep1/SyncStep2 exchange at connect (grammar in PROTOCOL.md § crdt-sync).
 * 16 MiB per message: a SyncStep2 carries the whole missing doc state; a 1,000-peer doc is
 * ~0.5 MiB, so this leaves a 30x margin while still bounding memory per stream.
 */
export const CRDT_SYNC: ProtocolSpec = {
  id: `${PROTOCOL_PREFIX}/crdt-sync/2.0.0`,
  maxMessageBytes: 16 * MiB,
  // step1 + step2 in each direction.
  maxMessagesPerStream: 2,
  // 16 MiB at ~1 MB/s over a slow path is 16 s; 30 s bounds a stuck peer.
  timeoutMs: 30_000,
  maxInboundStreams: 4,
  maxOutboundStreams: 4,
  // SyncStep2 can exceed the relay's 128 KiB signalling limit; sync only over unlimited links.
  runOnLimitedConnection: false
}

/** Gossipsub topic carrying a swarm's CRDT updates and awareness (PROTOCOL.md § crdt-sync). */
export function crdtTopic (swarm: string): string {
  return `webswarm/${swarm}/crdt`
}

/** Pubsub peer-discovery topic of a swarm. */
export function discoveryTopic (swarm: string): string {
  return `webswarm/${swarm}/discovery`
}

/** Largest gossipsub message we publish or accept on a CRDT topic, in bytes (one update batch). */
export const CRDT_GOSSIP_MAX_BYTES = 1 * MiB

/** Swarm names: short, lowercase, safe inside topics and DHT keys. */
export const SWARM_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/

/** Clock skew tolerated on a record's issue time (ms): peers' clocks differ by seconds. */
export const DHT_CLOCK_SKEW_MS = 30_000

/** Petals' cadence: records live 120 s and are refreshed at half-life (60 s). */
export const DHT_DEFAULT_TTL_MS = 120_000

/**
 * A DHT record namespace: the key's first segment, which kad-dht uses to pick the validator and
 * selector. `ownerKeyed`: the key's last segment must be the signer's peer id, so one peer cannot
 * overwrite another's record.
 */
export interface DhtNamespaceSpec {
  /** First key segment, e.g. `ws-blocks` for `/ws-blocks/<model>/<block>/<peer>`. */
  readonly name: string
  /** Largest payload (application bytes). */
  readonly maxValueBytes: number
  /** Longest lifetime a record may claim (ms); readers reject longer ones. */
  readonly maxTtlMs: number
  /** Keys end in the announcer's peer id; only that peer may sign them. */
  readonly ownerKeyed: boolean
}

/**
 * Registered namespaces. Values are announcements, not data (data moves over streams), so a few
 * KiB bound them. Lifetimes are capped so a crashed announcer's records vanish soon.
 */
export const DHT_NAMESPACES = {
  /** `/ws-blocks/<model>/<block>/<peer>`: a peer serves transformer block <block>. */
  blocks: { name: 'ws-blocks', maxValueBytes: 4 * KiB, maxTtlMs: 300_000, ownerKeyed: true },
  /** `/ws-experts/<model>/<layer>/<expert>/<peer>`: a peer hosts one MoE expert. */
  experts: { name: 'ws-experts', maxValueBytes: 4 * KiB, maxTtlMs: 300_000, ownerKeyed: true },
  /** `/ws-model/<id>`: model metadata (config hash, shard manifest); newest valid wins. */
  model: { name: 'ws-model', maxValueBytes: 16 * KiB, maxTtlMs: 3_600_000, ownerKeyed: false },
  /** `/ws-peer/<swarm>/<peer>`: a peer's own announcement (capabilities, addresses). */
  peer: { name: 'ws-peer', maxValueBytes: 4 * KiB, maxTtlMs: 300_000, ownerKeyed: true }
} satisfies Record<string, DhtNamespaceSpec>

/** NET-A's stream protocols by short name (NET-B's use TensorStreamLimits below). */
export const PROTOCOLS = {
  crdtSync: CRDT_SYNC
} as const satisfies Record<string, ProtocolSpec>

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

// ---------------------------------------------------------------- inference swarm (web/src/swarm)

/**
 * Messages one pooled swarm channel may carry each way (swarm/transport/libp2p.ts): channels carry
 * one request after another and are retired after 5 min or 15 s idle; a decode step every few ms
 * stays far below this in 5 min, while a peer cannot keep one stream busy forever. The transport
 * replaces a channel that reaches it.
 */
const SWARM_CHANNEL_MAX_MESSAGES = 100_000

/**
 * A swarm protocol: a NET-A protocol spec plus what one of its framed-tensor-stream messages may
 * hold besides tensor bytes (`maxMessageBytes` counts tensor bytes only). Each message schema
 * (swarm/wire, swarm/train/wire.ts) fits these; test/swarm/transport-limits.test.ts checks it.
 */
export interface SwarmProtocolSpec extends ProtocolSpec {
  /** Most tensors in one message: the most tensor fields a message of the schema has. */
  readonly maxTensors: number
  /** Most bytes of JSON metadata (the message's non-tensor fields) in one message. */
  readonly maxMetaBytes: number
}

/**
 * A swarm protocol's spec from what sets it apart; every swarm protocol runs one request after
 * another on pooled channels (SWARM_CHANNEL_MAX_MESSAGES), as many streams each way, and never
 * over a relayed link (tensors are too heavy for the relay's data limits).
 */
function swarmProtocol (name: string, version: string, o: Pick<SwarmProtocolSpec, 'maxMessageBytes' | 'maxTensors' | 'maxMetaBytes' | 'timeoutMs'> & { streams: number }): SwarmProtocolSpec {
  const { streams, ...limits } = o
  return {
    id: `${PROTOCOL_PREFIX}/${name}/${version}`,
    ...limits,
    maxMessagesPerStream: SWARM_CHANNEL_MAX_MESSAGES,
    maxInboundStreams: streams,
    maxOutboundStreams: streams,
    runOnLimitedConnection: false
  }
}

/**
 * Pipeline-sharded inference sessions (PROTOCOL.md § infer): one reply per request, requests one
 * after another on pooled channels (OPEN / STEP / CLOSE / INFO). 8 MiB: a 512-token prefill chunk
 * of a 4096-wide model in f32. 30 s: one step of a span on software WebGPU. 2.0.0: messages are
 * metadata + typed tensors (was: one u8 tensor holding a byte encoding of the message).
 * One hidden-state tensor per message at most; an INFO_OK's span list is the largest metadata
 * (64 spans): 32 KiB stays inside one START frame.
 */
export const INFER = swarmProtocol('infer', '2.0.0', { maxMessageBytes: 8 * MiB, maxTensors: 1, maxMetaBytes: 32 * KiB, timeoutMs: 30_000, streams: 32 })

/**
 * Remote MoE experts (PROTOCOL.md § expert): one batched CALL → RESULT per host and layer. 2.0.0:
 * as infer. One rows tensor per expert named in a call (MAX_EXPERTS_PER_CALL, swarm/constants.ts);
 * metadata: 256 items of { expert } plus model and layer.
 */
export const EXPERT = swarmProtocol('expert', '2.0.0', { maxMessageBytes: 8 * MiB, maxTensors: 256, maxMetaBytes: 16 * KiB, timeoutMs: 10_000, streams: 64 })

/**
 * DiLoCo's fault-tolerant all-reduce (PROTOCOL.md § allreduce; web/src/swarm/train). One reply
 * per request over framed tensor streams (pooled channels, as infer): READY/START (long-polled
 * for up to the coordinator's ready window), REDUCE/RESULT (one q8 part, ≤ 1 MiB), FETCH, DONE,
 * SNAPSHOT/STATE (≤ 1 MiB slices). 90 s covers the defaults' longest long-poll (a 60 s READY)
 * plus transfer; the all-reduce times each request by its own wait instead (allreduce.ts, widened
 * by a run whose members reach a sync far apart), so no handler reads this one.
 * The major version follows the wire version (4: the header is the message's metadata and the
 * payload a typed tensor, was a JSON header and payload inside one u8 tensor), so an older peer
 * fails protocol negotiation at once instead of trading refusals with us. Payload ≤ 1 MiB
 * (MAX_PAYLOAD_BYTES, swarm/train/constants.ts), one tensor at most; the header holds ids, counts
 * and member lists only (MAX_HEADER_BYTES). 64 streams: a member keeps ≤ 4 parts in flight per
 * attempt (DEFAULT_WINDOW_PARTS), and an owner serves every member's window.
 */
export const ALLREDUCE = swarmProtocol('allreduce', '4.0.0', { maxMessageBytes: 1 * MiB, maxTensors: 1, maxMetaBytes: 16 * KiB, timeoutMs: 90_000, streams: 64 })

/** The swarm layer's stream protocols (kept beside PROTOCOLS, added by the swarm layer). */
export const SWARM_PROTOCOLS = {
  infer: INFER,
  expert: EXPERT,
  allreduce: ALLREDUCE
} as const satisfies Record<string, SwarmProtocolSpec>
