/**
 * Flood limits of the swarm doc (PROTOCOL.md § Identity stamps and flood limits):
 *  - `oversizedItem`: no single value an update inserts may exceed `maxItemBytes` (a map entry
 *    is one item: a CRDT entry is metadata — capabilities, run records — never bulk data);
 *  - `PeerBuckets`: per-peer token buckets on CRDT messages and bytes (gossip by originator, sync
 *    exchanges by remote peer), so one party cannot drown the others' updates; what is refused is
 *    counted, and a refused gossip update is repaired by anti-entropy once the peer slows down.
 * Identity cost (proof of work on `peers` entries) is in swarm-doc.ts with ../pow.ts.
 */
import * as Y from 'yjs'
import { realClock, type Clock } from '../../util/clock.ts'
import { NetConfigError } from '../errors.ts'

/** Largest value one update may insert into the doc, in bytes (JSON size). A RunSpec with inline text fits. */
export const MAX_ITEM_BYTES = 256 * 1024

export interface PeerRateLimits {
  /** CRDT messages (gossip updates, awareness, sync exchanges) per second per peer, sustained. @default 20 */
  messagesPerSecond: number
  /** Messages a peer may send at once before the sustained rate applies. @default 200 */
  messageBurst: number
  /** Update bytes per second per peer, sustained. @default 512 KiB */
  bytesPerSecond: number
  /** Bytes at once (a newcomer's first sync carries the whole doc). @default 16 MiB */
  byteBurst: number
  /** Peers tracked at most; the least recently seen is forgotten beyond it (it restarts with a full bucket). @default 4096 */
  maxPeers: number
}

const DEFAULT_PEER_RATE_LIMITS: PeerRateLimits = {
  messagesPerSecond: 20, messageBurst: 200, bytesPerSecond: 512 * 1024, byteBurst: 16 * 1024 * 1024, maxPeers: 4096
}

interface Bucket { messages: number, bytes: number, at: number }

/** Per-peer token buckets (messages and bytes), refilled by an injected clock. */
export class PeerBuckets {
  readonly limits: PeerRateLimits
  /** Messages refused, by peer (bounded like the buckets), and in all. */
  refused = 0
  private readonly buckets = new Map<string, Bucket>()

  constructor (limits: Partial<PeerRateLimits> = {}, private readonly clock: Clock = realClock) {
    this.limits = { ...DEFAULT_PEER_RATE_LIMITS, ...limits }
    for (const [k, v] of Object.entries(this.limits)) {
      if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new NetConfigError(`CRDT rate limit ${k} must be a positive number, got ${String(v)}`)
    }
  }

  /**
   * Takes one message of `bytes` from `peer`'s buckets: true if both had room (then both are
   * charged), false if refused (nothing charged: a refused flood does not lock out the peer's
   * later honest updates any longer than its rate requires).
   */
  take (peer: string, bytes: number): boolean {
    const now = this.clock.now()
    const l = this.limits
    let b = this.buckets.get(peer)
    if (b === undefined) {
      b = { messages: l.messageBurst, bytes: l.byteBurst, at: now }
      if (this.buckets.size >= l.maxPeers) this.buckets.delete(this.buckets.keys().next().value!)
    } else {
      const dt = Math.max(0, now - b.at) / 1000
      b.messages = Math.min(l.messageBurst, b.messages + dt * l.messagesPerSecond)
      b.bytes = Math.min(l.byteBurst, b.bytes + dt * l.bytesPerSecond)
      b.at = now
      this.buckets.delete(peer) // re-inserted below: the map's order is least recently seen first
    }
    this.buckets.set(peer, b)
    if (b.messages < 1 || b.bytes < bytes) { this.refused++; return false }
    b.messages -= 1
    b.bytes -= bytes
    return true
  }

  /** Peers currently tracked. */
  get size (): number { return this.buckets.size }
}

/** JSON-ish size of one inserted item's content, in bytes (strings count UTF-16 units: an upper bound for ASCII, close otherwise). */
function contentBytes (content: Y.Item['content']): number {
  if (content instanceof Y.ContentBinary) return content.content.byteLength
  if (content instanceof Y.ContentString) return content.str.length
  if (content instanceof Y.ContentDeleted) return 0
  if (content instanceof Y.ContentType) return 0 // a nested type's own items are counted one by one
  try {
    return JSON.stringify(content.getContent()).length
  } catch {
    return Infinity // a value JSON cannot hold (cycles cannot come from decoding, but be safe)
  }
}

/**
 * The first inserted value of `update` larger than `maxBytes`, as `{ size, where }`, or undefined.
 * An update that does not decode returns undefined here: the doc's own checks refuse it.
 */
export function oversizedItem (update: Uint8Array, maxBytes: number): { size: number, where: string } | undefined {
  let decoded: ReturnType<typeof Y.decodeUpdate>
  try {
    decoded = Y.decodeUpdate(update)
  } catch {
    return undefined
  }
  for (const s of decoded.structs) {
    if (!(s instanceof Y.Item)) continue
    const size = contentBytes(s.content)
    if (size > maxBytes) return { size, where: `${typeof s.parent === 'string' ? s.parent : 'nested'}${s.parentSub !== null ? `[${s.parentSub.slice(0, 80)}]` : ''}` }
  }
  return undefined
}
