/**
 * Limits, timeouts and defaults of DiLoCo training and the `allreduce` protocol. Each says its
 * unit and why it has this value (CONTRIBUTING.md STYLE 8); options in index.ts override the defaults.
 */

import { ALLREDUCE } from '../../net/protocols.ts'

/** Protocol id of the fault-tolerant all-reduce (PROTOCOL.md § allreduce), from the registry. */
export const ALLREDUCE_PROTOCOL = ALLREDUCE.id

/**
 * Wire version (`v` in the metadata) of every allreduce message; another version is refused. 2: REDUCE
 * carries the sender's part size (`partElements`; the default went from 64 Ki to 256 Ki elements,
 * and peers cutting the vector differently would each reject the other's parts as malformed), and
 * DONE no longer carries a hash of the mean (nothing read it). 3: REDUCE carries `norm`, the
 * sender's L2 norm of its whole contribution, which the owners' norm rule compares (per-part
 * norms are not comparable across peers: an embedding row only one peer's data touched). 4: the
 * header is the stream message's metadata and the payload its typed tensor (was: a 6-byte prefix,
 * a JSON header and the payload inside one u8 tensor).
 */
export const ALLREDUCE_WIRE_VERSION = 4

/** Largest JSON header of an allreduce message, bytes: ids, counts and member lists only. */
export const MAX_HEADER_BYTES = 16 * 1024

/** Most members in one round: the header lists them all, and an all-to-all exchange grows as N². */
export const MAX_MEMBERS = 64

/** Longest peer id / run id accepted, characters (libp2p Ed25519 peer ids are 52). */
export const MAX_ID_CHARS = 128

/**
 * Elements per part (the unit of pipelining): 256 Ki elements is 272 KiB of q8 (block 64). Each
 * part is one request and one reply, and per message the transport costs about as much CPU as
 * ~50 KiB of payload (bench:train, 2 peer processes: 64 Ki-element parts moved raw bytes at the
 * all-reduce's pace, 256 Ki lifted goodput from ≈ 0.6 to ≈ 0.8 of one 8 MiB message); still
 * small enough that reducing overlaps with receiving and a lost part is cheap to redo.
 */
export const DEFAULT_PART_ELEMENTS = 256 * 1024

/** Largest payload of one message, bytes: one part of q8 or one slice of a state snapshot (1 MiB). */
export const MAX_PAYLOAD_BYTES = 1024 * 1024

/**
 * Parts a member keeps in flight at once (the pipeline depth; with two members about half are its
 * own parts, waiting for the other's contribution, so ≈ 2 × 272 KiB on the wire each way).
 * Deadlock-free because every member sends parts in one global order. 8 measured no better and
 * cost more CPU (more channels open at once).
 */
export const DEFAULT_WINDOW_PARTS = 4

/** q8 block of pseudo-gradients: 64 elements + a 4-byte scale = 1.0625 bytes per element. */
export const DEFAULT_Q8_BLOCK = 64

/**
 * How long an owner waits for every member's contribution to a part once the first one came, ms.
 * A member that sends nothing for this long is treated as dead for this attempt.
 */
export const DEFAULT_PART_TIMEOUT_MS = 15_000

/**
 * How long the coordinator waits, after the first READY of a round, for the other expected peers
 * (ms). Workers finish their H inner steps at about the same time; a straggler beyond this window
 * sits the round out and resyncs (DiLoCo keeps going without it).
 */
export const DEFAULT_READY_WINDOW_MS = 30_000

/**
 * How long a member waits for the coordinator to answer a READY (ms): the READY window plus the
 * time for a failed attempt's members to report.
 */
export const DEFAULT_COORDINATOR_TIMEOUT_MS = 60_000

/** Attempts of one round before a member gives up on it and resyncs from a peer. */
export const MAX_ATTEMPTS = 8

/** Snapshot slice size when a late joiner fetches θ_global + outer momentum, bytes. */
export const SNAPSHOT_SLICE_BYTES = 1024 * 1024

/** Timeout of one snapshot slice request, ms. */
export const SNAPSHOT_TIMEOUT_MS = 30_000

/** DiLoCo's outer optimizer: Nesterov momentum SGD, lr 0.7, momentum 0.9 (Douillard et al. 2023). */
export const DEFAULT_OUTER_LR = 0.7
export const DEFAULT_OUTER_MOMENTUM = 0.9

/**
 * Most syncs a delayed outer update may keep in flight (worker.ts `delayOuter`, the run
 * declaration's `delayOuter`): each one in flight holds a fragment-sized receive buffer and a
 * residual per fragment, and d = 2 already left no wait in bench:train's utilization run
 * (BENCHMARKS.md § Training); more only lets the replicas drift further from θ_global.
 */
export const MAX_OUTER_DELAY = 4

/**
 * Bad-input rule: a contribution whose L2 norm exceeds this multiple of the reference norm (the
 * lower median of the part's contributions, floored at the part's share of the members' claimed
 * whole norms: reduce.ts) is scaled down to it. 4× lets honest workers that
 * drew harder data through untouched (their norms spread by < 2× in our runs) while a corrupted
 * or malicious update moves θ_global by at most as much as four honest ones.
 */
export const NORM_CLIP_FACTOR = 4

/**
 * Contributions needed before the norm rule applies: with one, there is nothing to compare to.
 * With two it still applies (the smaller sets the reference): a hostile peer of a pair can then
 * only shrink one round's update, not blow θ_global up (README.md § Bad input).
 */
export const NORM_RULE_MIN_MEMBERS = 2

/**
 * How often a trainer thread passes its step events on, ms (and at every sync's step). Each
 * message wakes the node's thread, and on a loaded machine the woken thread preempts the trainer
 * right after its step: one message a step cost ≈ 9 % of a worker's wall time in bench:train's
 * utilization run (BENCHMARKS.md § Training, session 9). 250 ms keeps a dashboard live.
 */
export const TRAINER_STEP_EVENTS_MS = 250

/**
 * How often a stepping trainer thread gives its event loop a turn (in which a `halt` is seen), ms:
 * after the first step that ends this long after the last turn, not after every step. A turn
 * after every step cost ≈ 2 % of its wall time in bench:train's utilization run, at load 12–18
 * (≈ 1 ms a turn); this cadence leaves ≈ 1 %, mostly V8's GC tasks, which run in whatever turns
 * there are (BENCHMARKS.md § Training, session 10). An abort waits up to this long more.
 */
export const TRAINER_TURN_MS = 200
