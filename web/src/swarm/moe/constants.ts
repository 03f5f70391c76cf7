/**
 * Limits and tuning of MoE expert placement (CONTRIBUTING.md STYLE 8): each says its unit and why. The wire limits
 * of the `expert` protocol itself live in ../constants.ts.
 */

/** Most (i, j) pairs one co-selection summary carries per layer: the strongest ones say enough. */
export const MAX_SUMMARY_PAIRS_PER_LAYER = 32

/** Most MoE layers one summary covers (Mixtral-size models have 32). */
export const MAX_SUMMARY_LAYERS = 128

/** Largest expert index a summary may name, exclusive (Switch-size layers have 128–2048 experts). */
export const MAX_SUMMARY_EXPERTS = 4096

/**
 * Largest summary, in bytes of JSON: it rides in the peer's signed CRDT entry, whose whole
 * payload is capped at 16 KiB (net/crdt/entries.ts), beside the peer's other fields.
 */
export const MAX_SUMMARY_BYTES = 6 * 1024

/** Summaries of fewer tokens than this are ignored: a handful of tokens says nothing about affinity. */
export const MIN_SUMMARY_TOKENS = 8

/**
 * A move of hosted experts must raise the share of co-selected pairs kept on one peer by at
 * least this much (absolute, 0..1) when coverage stays the same: moving costs a reload.
 */
export const MIN_AFFINITY_GAIN = 0.1

/** After a move, dropped experts are still served this long, in ms, for callers holding old records. */
export const DROP_GRACE_MS = 10_000

/** Placement re-checks are spread by ± this fraction of the period, so peers that joined together do not move together. */
export const RECHECK_JITTER = 0.2

/** A block server re-publishes its co-selection summary this often, in ms: fresh enough for placement, rare enough for the CRDT. */
export const SUMMARY_PUBLISH_MS = 10_000
