/**
 * Limits, timeouts and tuning constants of the swarm roles (CONTRIBUTING.md STYLE 8). Each says its unit and why.
 * Readers of peer data cap both bytes and counts with these.
 */

import { EXPERT, INFER } from '../net/protocols.ts'

/** Wire protocol ids, from the one registry (web/src/net/protocols.ts). */
export const INFER_PROTOCOL = INFER.id
export const EXPERT_PROTOCOL = EXPERT.id

/**
 * Version (`v` in the metadata) of every `infer` / `expert` message; it follows the protocol ids'
 * major version. 2: messages are framed-tensor-stream messages (fields in the metadata, tensors
 * as typed tensors) instead of one u8 tensor holding a byte encoding.
 */
export const WIRE_VERSION = 2

/** Largest single message, in bytes: a (T, C) f32 prefill chunk of 512 tokens × 4096 wide is 8 MiB. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024

/** How long a client waits for a server's reply to one `infer` message, in ms (software WebGPU is slow). */
export const INFER_TIMEOUT_MS = INFER.timeoutMs

/** How long a block server waits for one expert host, in ms, before asking another host. */
export const EXPERT_TIMEOUT_MS = EXPERT.timeoutMs

/** Longest string field (model ids, session ids, error text), in bytes. */
export const MAX_STRING_BYTES = 1024

/** Highest tensor rank a peer may send: our tensors are (T, C) rows. */
export const MAX_TENSOR_RANK = 4

/**
 * Least time a client waits for a one-token step before hedging it on a spare, in ms (the
 * deadline is otherwise srtt + 4 · rttvar of that server's steps, client/latency.ts). Loaded
 * machines stall a healthy peer for hundreds of ms now and then; below this a hedge would cost
 * a spare a replay too often. Well under the 3 s recovery target with replay added.
 */
export const HEDGE_FLOOR_MS = 1_000

/** Most tokens in one `infer` step (prefill chunk), in tokens. Longer prompts are sent in chunks. */
export const MAX_STEP_TOKENS = 512

/** Most tokens one session may ask to cache (its `maxTokens`), in tokens. */
export const MAX_SESSION_TOKENS = 8192

/** Most experts named in one `expert` call, in experts: a peer hosts at most a layer's worth. */
export const MAX_EXPERTS_PER_CALL = 256

/**
 * Most token rows per expert in one `expert` call, in rows (a prefill chunk's worth).
 * @alias its own name for the wire limit, equal to MAX_STEP_TOKENS today (knip: not a duplicate export)
 */
export const MAX_ROWS_PER_EXPERT = MAX_STEP_TOKENS


/**
 * How long a server holds a CHAIN step whose input is to be pushed by the previous server, in ms,
 * before answering `pushWait` (the client then sends the input itself). Covers the previous hops'
 * compute and a first WebRTC dial between the two servers.
 */
export const PUSH_WAIT_MS = 10_000

/**
 * How long a server waits for the next server to accept a PUSH, in ms (it only validates, then
 * acks). Longer than PUSH_WAIT_MS on purpose: a push given up on here must not still be run
 * there (its CHAIN has stopped waiting by then), else the client's own STEP would find the
 * position taken. Loopback WebRTC under load delays a message by seconds now and then (SCTP
 * retransmission), which a shorter timeout turned into needless failovers.
 */
export const PUSH_TIMEOUT_MS = 12_000

/** How long a server's background connection to a next hop may take, in ms (a WebRTC dial through the relay). */
export const CONNECT_AHEAD_TIMEOUT_MS = 15_000

/**
 * A session with no message for this long is closed and its cache freed, in ms. Clients close
 * their sessions themselves; this only catches clients that vanished. It must outlast the other
 * stages of a pipeline: on a software adapter a quarter of a 1B model takes a minute a step, and
 * at 60 s the later stages' sessions expired while they waited for the earlier ones.
 */
export const SESSION_IDLE_TIMEOUT_MS = 300_000

/** How often the server sweeps idle sessions, in ms. */
export const SESSION_SWEEP_INTERVAL_MS = 5_000

/** Concurrent sessions one server holds at most, whatever its memory budget (bounds bookkeeping). */
export const MAX_SESSIONS_PER_SERVER = 256

/** First ban of a failed peer, in ms; doubles on each further failure (Petals' exponential backoff). */
export const BAN_BASE_MS = 1_000

/** Longest ban, in ms: a flaky peer is retried at least this often. */
export const BAN_MAX_MS = 60_000

/**
 * Ban of a server caught returning wrong outputs (client/verify.ts), in ms: an hour, not a
 * backoff — a liar is not flaky, and a success does not clear it.
 */
export const LIAR_BAN_MS = 3_600_000

/** Default fraction of steps after which a client checks a hop's outputs on another server (client/verify.ts). */
export const VERIFY_RATE = 0.05

/**
 * Outvoted mismatches before a server is banned as a liar (client/verify.ts): each one is rewound
 * at once; the ban waits for a second because honest MoE servers can flip a near-tied expert
 * choice (1 position in 10,017 in bench:verify, f32 vs f16 KV).
 */
export const VERIFY_STRIKES = 2

/** Accusations one client keeps in its signed evidence entry (swarm/evidence.ts): about 350 bytes each, under the entry's 16 KiB. */
export const MAX_ACCUSATIONS_PER_ENTRY = 32

/**
 * Lifetime of an evidence entry, in ms: as long as the ban it explains.
 * @alias its own name for the entry lifetime, equal to LIAR_BAN_MS by design (knip: not a duplicate export)
 */
export const EVIDENCE_TTL_MS = LIAR_BAN_MS

/** Times a client re-plans one step's failed span before giving up on the generation. */
export const MAX_FAILOVERS_PER_STEP = 8

/** Petals' balance quality: rebalance only if the swarm's min per-block throughput would rise so that old/new < this. */
export const BALANCE_QUALITY = 0.75

/** Slack against float rounding in throughput sums (Petals uses the same 1e-3). */
export const THROUGHPUT_EPS = 1e-3

/** Block records expire after this, in ms (Petals: 120 s)… */
export const RECORD_TTL_MS = 120_000

/** …and are refreshed at half-life, in ms (Petals: 60 s). */
export const RECORD_REFRESH_MS = RECORD_TTL_MS / 2

/** RTT assumed for a peer never measured, in ms: pessimistic so measured peers win ties. */
export const DEFAULT_RTT_MS = 100

/** Extra cost per hop in the route planner, in ms: serialising and framing a (T, C) tensor. */
export const HOP_OVERHEAD_MS = 1

/**
 * When no route exists only because candidates are banned, the planner waits for the first ban to
 * end if that is at most this long, in ms (a peer whose first dial failed gets a second chance).
 */
export const PLAN_MAX_BAN_WAIT_MS = 5_000
