/**
 * Binds a SwarmDoc to a libp2p node (grammar in PROTOCOL.md § crdt-sync):
 * - `/webswarm/crdt-sync/2.0.0`: at connect (and periodically, for anti-entropy) the dialling side
 *   opens a stream; both sides send SyncStep1 (generation + state vector) and answer the other's
 *   with SyncStep2 (the missing update; the whole state when the other side's generation is older,
 *   so it re-seeds: generation.ts). Length-prefixed frames; every read capped and timed.
 * - gossipsub topic `webswarm/<swarm>/crdt`: every local update (named by its generation) and
 *   awareness change is published; received ones are validated (SwarmDoc.applyRemoteIn) before
 *   gossipsub forwards them. An update of a newer generation makes this node sync with its
 *   forwarder (and re-seed); one of an older generation is refused and counted.
 * Bad input on either path: the stream is reset (or the gossip message rejected) with a log line,
 * and the doc is unchanged.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { TypedEventEmitter } from 'main-event'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { GenerationMismatchError, LimitExceededError, MalformedMessageError, ProtocolTimeoutError, UnsupportedMessageError } from '../errors.ts'
import type { WebSwarmNode } from '../node.ts'
import { CRDT_GOSSIP_MAX_BYTES, CRDT_SYNC, crdtTopic } from '../protocols.ts'
import { Reader, Writer } from '../wire.ts'
import { REMOTE_ORIGIN, SwarmDoc } from './swarm-doc.ts'
import { PeerBuckets, type PeerRateLimits } from './limits.ts'
import { GENESIS, compareGenerations, formatGeneration, readGeneration, writeGeneration, type Generation } from './generation.ts'
import type { Clock } from '../../util/clock.ts'

/** Frame types on the crdt-sync stream. */
export const SYNC_STEP1 = 0
export const SYNC_STEP2 = 1
/** Message types on the gossip topic: an update of the genesis generation (0.0), awareness, an update naming its generation. */
export const GOSSIP_UPDATE = 0
export const GOSSIP_AWARENESS = 1
export const GOSSIP_GEN_UPDATE = 2
/** A Yjs v1 update that changes nothing: the SyncStep2 of a side whose generation is older than the other's. */
const EMPTY_UPDATE = Y.encodeStateAsUpdate(new Y.Doc())

/** Longest swarm name on the wire, in bytes (SWARM_NAME_PATTERN allows 63). */
const MAX_SWARM_BYTES = 64
/** Anti-entropy: sync with one random peer this often, in ms, repairing any lost gossip. */
export const ANTI_ENTROPY_INTERVAL_MS = 5_000
/**
 * Re-announce our presence this often, in ms. y-protocols renews it only every 15 s, and a peer
 * that joins in between (and is not directly connected to us) would not see us until then.
 */
const PRESENCE_HEARTBEAT_MS = 3_000
/**
 * Every peer deletes expired signed entries this often, in ms (not only the relay at
 * compaction): a departed peer's entry leaves every doc within a minute of expiring, so the doc a
 * tab holds and gossips tracks the live swarm. Concurrent deletes of one entry by many peers merge.
 */
export const PRUNE_INTERVAL_MS = 60_000

export interface SyncFrame {
  type: number
  swarm: string
  /** The sender's doc generation. @default GENESIS when encoding */
  generation?: Generation
  payload: Uint8Array
}

/** frame = type:u8 swarm:string generation payload:bytes; generation = n:varuint tag:varuint */
export function encodeSyncFrame (f: SyncFrame): Uint8Array {
  return writeGeneration(new Writer().u8(f.type).string(f.swarm), f.generation ?? GENESIS).bytes(f.payload).finish()
}

export function decodeSyncFrame (buf: Uint8Array): SyncFrame & { generation: Generation } {
  const r = new Reader(buf, CRDT_SYNC.id)
  const type = r.u8('frame type')
  if (type !== SYNC_STEP1 && type !== SYNC_STEP2) throw new UnsupportedMessageError(CRDT_SYNC.id, `frame type ${type}`)
  const swarm = r.string(MAX_SWARM_BYTES, 'swarm')
  const generation = readGeneration(r)
  const payload = r.bytes(CRDT_SYNC.maxMessageBytes, 'payload')
  r.end()
  return { type, swarm, generation, payload }
}

/** gossip update = 0x02 generation update (0x00 update: an update of the genesis generation). */
function encodeGossipUpdate (g: Generation, update: Uint8Array): Uint8Array {
  return writeGeneration(new Writer().u8(GOSSIP_GEN_UPDATE), g).raw(update).finish()
}

export interface CrdtSyncEvents {
  /** A sync exchange with a peer finished. */
  'synced': CustomEvent<string>
  /** Bad input from a peer was refused; detail: log line. */
  'rejected': CustomEvent<string>
}

export interface CrdtSyncInit {
  /** Anti-entropy period in ms; 0 disables. @default ANTI_ENTROPY_INTERVAL_MS */
  antiEntropyIntervalMs?: number
  /** Log sink. @default console.warn */
  log?: (line: string) => void
  /** Awareness (presence) state for this peer; `peer` is always set to our id. */
  presence?: Record<string, unknown>
  /**
   * Runs after a peer's SyncStep2 is applied and before the stream is closed; the close is the
   * acknowledgement. The relay makes it durable here (fsync), so a finished sync means stored.
   */
  beforeAck?: () => Promise<void>
  /** Per-peer rate limits on CRDT messages and bytes (limits.ts). @default DEFAULT_PEER_RATE_LIMITS */
  limits?: Partial<PeerRateLimits>
  /** Clock of the rate limits' buckets. @default realClock */
  clock?: Clock
  /** How often this peer deletes expired signed entries, in ms; 0 disables. @default PRUNE_INTERVAL_MS */
  pruneIntervalMs?: number
}

/** Sync provider for one swarm doc on one node. */
export class CrdtSync extends TypedEventEmitter<CrdtSyncEvents> {
  readonly awareness: awarenessProtocol.Awareness
  readonly topic: string
  private topologyId?: string
  private timer?: ReturnType<typeof setInterval>
  private presenceTimer?: ReturnType<typeof setInterval>
  private pruneTimer?: ReturnType<typeof setInterval>
  private readonly log: (line: string) => void
  private running = false
  /** Counters for metrics. */
  readonly stats = { syncs: 0, gossipIn: 0, gossipOut: 0, rejected: 0, rateLimited: 0, pruned: 0, reseeded: 0, staleGeneration: 0 }
  /** Per-peer token buckets: gossip charged to its originator, sync frames to the remote peer. */
  readonly buckets: PeerBuckets

  constructor (readonly node: WebSwarmNode, readonly sdoc: SwarmDoc, private readonly init: CrdtSyncInit = {}) {
    super()
    this.topic = crdtTopic(sdoc.swarm)
    this.awareness = new awarenessProtocol.Awareness(sdoc.doc)
    this.log = init.log ?? ((l) => { console.warn(l) })
    this.buckets = new PeerBuckets(init.limits, init.clock)
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    await this.node.handle(CRDT_SYNC.id, (stream, conn) => { void this.onStream(stream, conn) }, {
      maxInboundStreams: CRDT_SYNC.maxInboundStreams,
      maxOutboundStreams: CRDT_SYNC.maxOutboundStreams,
      runOnLimitedConnection: CRDT_SYNC.runOnLimitedConnection
    })
    this.topologyId = await this.node.register(CRDT_SYNC.id, {
      onConnect: (peer, conn) => {
        // The dialling side starts, so each new link syncs once.
        // exchange() logs and resets a failed sync; a stream that cannot open means the link
        // dropped, and anti-entropy (every 5 s) syncs with whoever is connected then.
        if (conn.direction === 'outbound') void this.syncWith(peer).catch(() => {})
      }
    })
    const pubsub = this.node.services.pubsub
    pubsub.topicValidators.set(this.topic, this.validateGossip)
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.sdoc.doc.on('update', this.onLocalUpdate)
    this.offGeneration = this.sdoc.onGeneration(this.onGeneration)
    this.awareness.on('update', this.onAwarenessUpdate)
    this.awareness.setLocalState({ ...this.init.presence, peer: this.node.peerId.toString() })
    const every = this.init.antiEntropyIntervalMs ?? ANTI_ENTROPY_INTERVAL_MS
    if (every > 0) this.timer = setInterval(() => { void this.antiEntropy() }, every)
    this.presenceTimer = setInterval(() => { this.announcePresence() }, PRESENCE_HEARTBEAT_MS)
    const pruneEvery = this.init.pruneIntervalMs ?? PRUNE_INTERVAL_MS
    if (pruneEvery > 0) this.pruneTimer = setInterval(() => { this.prune() }, pruneEvery)
  }

  /** Deletes expired signed entries from this peer's doc (gossiped like any local update). Returns how many. */
  prune (now?: number): number {
    const n = this.sdoc.pruneExpired(now)
    this.stats.pruned += n
    return n
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.timer)
    clearInterval(this.presenceTimer)
    clearInterval(this.pruneTimer)
    this.sdoc.doc.off('update', this.onLocalUpdate)
    this.offGeneration?.()
    this.awareness.off('update', this.onAwarenessUpdate)
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.awareness.clientID], 'stop')
    this.awareness.destroy()
    const pubsub = this.node.services.pubsub
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.topicValidators.delete(this.topic)
    if (this.node.status === 'started') {
      pubsub.unsubscribe(this.topic)
      if (this.topologyId !== undefined) this.node.unregister(this.topologyId)
      await this.node.unhandle(CRDT_SYNC.id)
    }
  }

  /** Sets fields of this peer's presence (awareness) state. */
  setPresence (fields: Record<string, unknown>): void {
    this.awareness.setLocalState({ ...this.awareness.getLocalState(), ...fields, peer: this.node.peerId.toString() })
  }

  /** Peer ids with a live presence state (awareness), including this one. */
  presentPeers (): string[] {
    const out: string[] = []
    for (const s of this.awareness.getStates().values()) if (typeof s.peer === 'string') out.push(s.peer)
    return out
  }

  private offGeneration?: () => void
  /** A sync started by syncSoon() is under way (one at a time). */
  private syncing = false
  /** The peer to sync with again once it ends (syncSoon called meanwhile). */
  private syncAgain?: PeerId

  /** The doc moved to another generation: listen to the new Y.Doc's updates instead. */
  private readonly onGeneration = (g: Generation, old: Y.Doc): void => {
    old.off('update', this.onLocalUpdate)
    this.sdoc.doc.on('update', this.onLocalUpdate)
    this.log(`crdt: swarm ${this.sdoc.swarm} now at doc generation ${formatGeneration(g)}`)
  }

  /** Transaction origins never gossiped (e.g. a persistence provider replaying stored state). */
  readonly silentOrigins = new Set<unknown>()

  private readonly onLocalUpdate = (update: Uint8Array, origin: unknown): void => {
    // Network updates are forwarded by gossipsub itself; persistence loads are synced, not gossiped.
    if (origin === REMOTE_ORIGIN || this.silentOrigins.has(origin)) return
    this.publish(encodeGossipUpdate(this.sdoc.generation, update))
  }

  /**
   * A peer (re)joined our topic: re-announce our presence, which it missed (y-protocols would
   * only renew it after 15 s). One announcement per tick, however many peers joined.
   */
  private presencePending = false
  private readonly onSubscriptionChange = (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (this.presencePending || !evt.detail.subscriptions.some(s => s.topic === this.topic && s.subscribe)) return
    this.presencePending = true
    setTimeout(() => {
      this.presencePending = false
      this.announcePresence()
    }, 0)
  }

  private announcePresence (): void {
    if (this.running && this.awareness.getLocalState() !== null) {
      this.publishTyped(GOSSIP_AWARENESS, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.awareness.clientID]))
    }
  }

  private readonly onAwarenessUpdate = ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }, origin: unknown): void => {
    if (origin === REMOTE_ORIGIN) return
    const changed = [...added, ...updated, ...removed].filter(c => c === this.awareness.clientID)
    if (changed.length === 0) return
    this.publishTyped(GOSSIP_AWARENESS, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed))
  }

  private publishTyped (type: number, payload: Uint8Array): void {
    const data = new Uint8Array(payload.length + 1)
    data[0] = type
    data.set(payload, 1)
    this.publish(data)
  }

  private publish (data: Uint8Array): void {
    if (!this.running || this.node.status !== 'started') return
    if (data.length > CRDT_GOSSIP_MAX_BYTES) {
      this.log(`crdt: update of ${data.length} B exceeds the ${CRDT_GOSSIP_MAX_BYTES} B gossip cap; peers get it at the next sync`)
      return
    }
    this.stats.gossipOut++
    this.node.services.pubsub.publish(this.topic, data).catch((e: Error) => {
      this.log(`crdt: publish failed: ${e.message}`)
    })
  }

  /** Gossipsub validator: apply valid updates, reject forged/malformed ones (not forwarded). */
  private readonly validateGossip = async (from: PeerId, msg: Message): Promise<TopicValidatorResult> => {
    const data = msg.data
    try {
      if (data.length > CRDT_GOSSIP_MAX_BYTES) throw new LimitExceededError(this.topic, `gossip message of ${data.length} B exceeds ${CRDT_GOSSIP_MAX_BYTES} B`)
      if (data.length < 1) throw new MalformedMessageError(this.topic, 'empty gossip message')
      // Charged to the originator (a signed message's author), not to the neighbour forwarding
      // it; over its rate the message is dropped without penalising the forwarder (Ignore), and
      // anti-entropy delivers an honest peer's state once it is within its rate again.
      const origin = msg.type === 'signed' ? msg.from.toString() : from.toString()
      if (!this.buckets.take(origin, data.length)) {
        this.stats.rateLimited++
        return TopicValidatorResult.Ignore
      }
      this.stats.gossipIn++
      const payload = data.subarray(1)
      switch (data[0]) {
        case GOSSIP_UPDATE:
          await this.sdoc.applyRemoteIn(GENESIS, payload)
          return TopicValidatorResult.Accept
        case GOSSIP_GEN_UPDATE: {
          const r = new Reader(payload, this.topic)
          const g = readGeneration(r)
          await this.sdoc.applyRemoteIn(g, r.rest())
          return TopicValidatorResult.Accept
        }
        case GOSSIP_AWARENESS: {
          const signer = msg.type === 'signed' ? msg.from.toString() : undefined
          checkAwarenessClaims(this.topic, payload, signer)
          awarenessProtocol.applyAwarenessUpdate(this.awareness, payload, REMOTE_ORIGIN)
          return TopicValidatorResult.Accept
        }
        default:
          throw new UnsupportedMessageError(this.topic, `gossip message type ${data[0]}`)
      }
    } catch (e) {
      if (e instanceof GenerationMismatchError) {
        // Not an attack: the author lags (it re-seeds at its next sync), or we do (sync with the
        // forwarder now: gossipsub forwards only what it accepted, so it holds the newer generation).
        this.log(`crdt: gossip from ${from.toString()}: ${e.message}`)
        if (e.newer) this.syncSoon(from)
        else this.stats.staleGeneration++
        return TopicValidatorResult.Ignore
      }
      this.reject(`crdt: rejected gossip from ${from.toString()}: ${(e as Error).name}: ${(e as Error).message}`)
      return TopicValidatorResult.Reject
    }
  }

  /**
   * Syncs with `peer` now (a newer generation heard, own entries to hand over); one at a time. A
   * call while one is under way runs once more after it: the gossip that asked for it came after
   * the state the running sync fetched, and was ignored as of a newer generation.
   */
  private syncSoon (peer: PeerId): void {
    if (!this.running) return
    if (this.syncing) {
      this.syncAgain = peer
      return
    }
    this.syncing = true
    // exchange() logs a failure; anti-entropy tries again within seconds.
    void this.syncWith(peer).catch(() => {}).finally(() => {
      this.syncing = false
      const next = this.syncAgain
      this.syncAgain = undefined
      if (next !== undefined) this.syncSoon(next)
    })
  }

  private reject (line: string): void {
    this.stats.rejected++
    this.log(line)
    this.dispatchEvent(new CustomEvent('rejected', { detail: line }))
  }

  /** An unlimited open connection to `peer`, if any (sync never runs over a limited relay link). */
  private connectionTo (peer: PeerId): Connection | undefined {
    return this.node.getConnections(peer).find(c => c.status === 'open' && c.limits === undefined)
  }

  /** Runs one SyncStep1/SyncStep2 exchange with `peer`; resolves when both docs have each other's state. */
  async syncWith (peer: PeerId): Promise<void> {
    const conn = this.connectionTo(peer)
    if (conn === undefined) throw new UnsupportedMessageError(CRDT_SYNC.id, `no unlimited connection to ${peer.toString()}`)
    const signal = AbortSignal.timeout(CRDT_SYNC.timeoutMs)
    const stream = await conn.newStream(CRDT_SYNC.id, { signal, runOnLimitedConnection: CRDT_SYNC.runOnLimitedConnection })
    await this.exchange(stream, peer, signal)
  }

  private async onStream (stream: Stream, conn: Connection): Promise<void> {
    // exchange() has logged the failure and reset the stream; the handler has no one to tell.
    await this.exchange(stream, conn.remotePeer, AbortSignal.timeout(CRDT_SYNC.timeoutMs)).catch(() => {})
  }

  private async exchange (stream: Stream, remotePeer: PeerId, signal: AbortSignal): Promise<void> {
    const remote = remotePeer.toString()
    let carried = 0
    const swarm = this.sdoc.swarm
    const lp = lpStream(stream, { maxDataLength: CRDT_SYNC.maxMessageBytes })
    try {
      await lp.write(encodeSyncFrame({ type: SYNC_STEP1, swarm, generation: this.sdoc.generation, payload: Y.encodeStateVector(this.sdoc.doc) }), { signal })
      let gotStep1 = false
      let gotStep2 = false
      for (let i = 0; i < CRDT_SYNC.maxMessagesPerStream && !(gotStep1 && gotStep2); i++) {
        const frame = decodeSyncFrame((await lp.read({ signal })).subarray())
        if (!this.buckets.take(remote, frame.payload.byteLength)) {
          this.stats.rateLimited++
          throw new LimitExceededError(CRDT_SYNC.id, `${remote} is over its CRDT rate (${this.buckets.limits.messagesPerSecond} messages, ${this.buckets.limits.bytesPerSecond} B per second)`)
        }
        if (frame.swarm !== swarm) throw new UnsupportedMessageError(CRDT_SYNC.id, `swarm ${frame.swarm}, this node syncs ${swarm}`)
        this.sdoc.checkGeneration(frame.generation)
        const order = compareGenerations(frame.generation, this.sdoc.generation)
        if (frame.type === SYNC_STEP1) {
          if (gotStep1) throw new MalformedMessageError(CRDT_SYNC.id, 'second SyncStep1')
          gotStep1 = true
          let diff: Uint8Array
          if (order < 0) {
            diff = Y.encodeStateAsUpdate(this.sdoc.doc) // it lags: our whole state, to re-seed from
          } else if (order > 0) {
            diff = EMPTY_UPDATE // we lag: its SyncStep2 (its whole state) re-seeds us
          } else {
            try {
              diff = Y.encodeStateAsUpdate(this.sdoc.doc, frame.payload)
            } catch (e) {
              throw new MalformedMessageError(CRDT_SYNC.id, `bad state vector: ${(e as Error).message}`)
            }
          }
          await lp.write(encodeSyncFrame({ type: SYNC_STEP2, swarm, generation: this.sdoc.generation, payload: diff }), { signal })
        } else {
          if (gotStep2) throw new MalformedMessageError(CRDT_SYNC.id, 'second SyncStep2')
          gotStep2 = true
          if (order > 0) {
            const from = formatGeneration(this.sdoc.generation)
            carried = await this.sdoc.adopt(frame.generation, frame.payload)
            this.stats.reseeded++
            this.log(`crdt-sync: re-seeded from ${remote}: doc generation ${from} → ${formatGeneration(frame.generation)}`)
          } else if (order < 0) {
            // Its update is of a generation we left; it re-seeds from the SyncStep2 we sent.
            this.sdoc.refusedGeneration++
            this.stats.staleGeneration++
            this.log(`crdt-sync: ${new GenerationMismatchError(CRDT_SYNC.id, formatGeneration(frame.generation), formatGeneration(this.sdoc.generation), false).message} from ${remote}; not applied`)
          } else {
            await this.sdoc.applyRemoteIn(frame.generation, frame.payload)
          }
        }
      }
      if (!(gotStep1 && gotStep2)) throw new LimitExceededError(CRDT_SYNC.id, `exchange not complete within ${CRDT_SYNC.maxMessagesPerStream} messages`)
      await this.init.beforeAck?.()
      await stream.close({ signal })
      // Both ends close after applying what they received: the remote close is its acknowledgement.
      if (stream.status !== 'closed') await closed(stream, signal)
      this.stats.syncs++
      this.dispatchEvent(new CustomEvent('synced', { detail: remote }))
      // Our own entries re-inserted after a re-seed go out by gossip, which a link that just
      // opened may not carry yet: hand them to this peer now rather than at the next anti-entropy.
      // (On the next turn: a sync started by syncSoon() is still settling here.)
      if (carried > 0) setTimeout(() => { this.syncSoon(remotePeer) }, 0)
    } catch (e) {
      const err = signal.aborted ? new ProtocolTimeoutError(CRDT_SYNC.id, CRDT_SYNC.timeoutMs) : e as Error
      this.reject(`crdt-sync: reset stream with ${remote}: ${err.name}: ${err.message}`)
      stream.abort(err)
      throw err
    }
  }

  /** Syncs with one random connected peer that speaks crdt-sync (repairs lost gossip). */
  private async antiEntropy (): Promise<void> {
    if (!this.running) return
    const peers: PeerId[] = []
    for (const c of this.node.getConnections()) {
      if (c.limits !== undefined || c.status !== 'open') continue
      // NotFoundError: nothing known of the peer yet (identify pending), so not a sync partner this round.
      const p = await this.node.peerStore.get(c.remotePeer).catch(() => undefined)
      if (p?.protocols.includes(CRDT_SYNC.id) === true) peers.push(c.remotePeer)
    }
    if (peers.length === 0) return
    const peer = peers[Math.floor(Math.random() * peers.length)]
    // Logged by exchange(); the next round picks a peer again.
    await this.syncWith(peer).catch(() => {})
  }
}

/** Resolves when `stream` is fully closed; rejects if it is reset/aborted or `signal` fires. */
async function closed (stream: Stream, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onClose = (evt: Event): void => {
      signal.removeEventListener('abort', onAbort)
      const err = (evt as Event & { error?: Error }).error
      if (err !== undefined) reject(err)
      else resolve()
    }
    const onAbort = (): void => {
      stream.removeEventListener('close', onClose)
      reject(new Error('timed out waiting for the remote to acknowledge'))
    }
    stream.addEventListener('close', onClose, { once: true })
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Most awareness states one gossip message may carry. A peer announces only its own. */
const MAX_AWARENESS_STATES = 4

/**
 * Checks an awareness update before applying it: it must decode, carry few states, and every
 * non-null state must name the gossip signer as its `peer` (a peer announces only itself).
 */
function checkAwarenessClaims (topic: string, update: Uint8Array, signer: string | undefined): void {
  const r = new Reader(update, topic)
  const n = r.varuint('awareness count')
  if (n > MAX_AWARENESS_STATES) throw new LimitExceededError(topic, `${n} awareness states in one message`)
  for (let i = 0; i < n; i++) {
    r.varuint('clientID')
    r.varuint('clock')
    const json = r.string(CRDT_GOSSIP_MAX_BYTES, 'awareness state')
    let state: unknown
    try {
      state = JSON.parse(json)
    } catch {
      throw new MalformedMessageError(topic, 'awareness state is not JSON')
    }
    if (state === null) continue
    const peer = (state as { peer?: unknown }).peer
    if (signer === undefined || peer !== signer) throw new MalformedMessageError(topic, `awareness state claims peer ${String(peer)} but was signed by ${String(signer)}`)
  }
  r.end()
}
