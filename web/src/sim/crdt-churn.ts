/**
 * Churn through the real swarm doc (net/crdt SwarmDoc: signed entries, proof-of-work stamps,
 * verified merges, expiry sweep): peers join, refresh their signed entry at half its lifetime,
 * and leave without a goodbye; a few full replicas ("observers", as tabs) merge the hub's state
 * through applyRemote, run the same expiry sweep every peer runs (CrdtSync.prune), and send
 * their deletions back. The hub is the relay's doc. Time is a virtual clock handed to every doc,
 * so a simulated hour takes as long as its signatures do.
 *
 * Measured per round: the bytes of the hub's full state (what `crdt-sync` sends a tab that joins
 * with an empty state vector), per live peer, and how many entries of departed peers are still
 * held anywhere.
 *
 * With `generations`, the hub starts a new doc generation when its RotationPolicy says so
 * (net/crdt/generation.ts, as the relay does): observers re-seed through SwarmDoc.adopt (every
 * entry verified); writers, which in this sim hold only what they write, re-seed by loading the
 * hub's new state unchecked (a tab would check it: that cost is the join sync's).
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as Y from 'yjs'
import { PEER_ENTRY_TTL_MS } from '../net/crdt/entries.ts'
import { SwarmDoc } from '../net/crdt/swarm-doc.ts'
import { rotationPolicy, type RotationPolicy } from '../net/crdt/generation.ts'
import { SimConfigError } from './errors.ts'
import { NetModel } from './model.ts'

/** What a peer's entry carries in the sim: the fields the page and the roles write. */
const ENTRY_DATA = { gflops: 12.5, roles: ['blocks:0-3'], model: 'tiny-llama', version: '0.1.0', device: 'SwiftShader' }

export interface CrdtChurnInit {
  /** Seed of keys, Yjs client ids and churn picks. @default 1 */
  seed?: number
  /** Live peers held throughout. */
  livePeers: number
  /** Fraction of live peers replaced per round. @default 0.1 */
  churnPerRound?: number
  /** Virtual time per round, ms (peers refresh once a round). @default PEER_ENTRY_TTL_MS / 2 */
  roundMs?: number
  /** Full replicas that sweep expired entries. @default 2 */
  observers?: number
  /** Proof-of-work bits of `peers` entries (the stamp's text is as long at any difficulty). @default 4 */
  powBits?: number
  /**
   * How writes reach the hub: 'round' merges a round's writes into one update (Y.mergeUpdates)
   * that the hub checks once; 'each' applies every write by itself. The hub ends in the same state
   * either way (a CRDT; a test checks the bytes match), but each checked update costs the hub a
   * scratch copy of its whole doc (SwarmDoc.tryApply), so 'each' is O(N²) a round: 300 peers took
   * 2 minutes, 5,000 would take hours. @default 'round'
   */
  hubMerge?: 'round' | 'each'
  /** The hub starts doc generations under this policy (merged over DEFAULT_ROTATION_POLICY); false: never (Yjs history kept). @default false */
  generations?: Partial<RotationPolicy> | false
}

export interface CrdtRound {
  round: number
  live: number
  everJoined: number
  /** Entries in the hub's peers map (live + departed not yet expired). */
  hubEntries: number
  /** Entries of departed peers whose expiry (plus skew) has passed but that a replica still holds. */
  staleHeld: number
  /** Full state of the hub, bytes (Y.encodeStateAsUpdate). */
  hubBytes: number
  bytesPerLivePeer: number
  /** Doc generations the hub has started so far. */
  rotations: number
}

interface Writer { doc: SwarmDoc, key: PrivateKey, leftAt?: number }

export class CrdtChurnSim {
  readonly hub: SwarmDoc
  private readonly observers: SwarmDoc[] = []
  private readonly writers = new Map<string, Writer>()
  private readonly departed = new Map<string, number>()
  private readonly model: NetModel
  private readonly powBits: number
  readonly churnPerRound: number
  readonly roundMs: number
  private readonly hubMerge: 'round' | 'each'
  private readonly policy: RotationPolicy | undefined
  /** Writes not yet merged into the hub ('round' mode). */
  private unsent: Uint8Array[] = []
  private joined = 0
  private round = 0
  /** The virtual clock every doc reads. */
  now = Date.UTC(2026, 0, 1)

  constructor (readonly init: CrdtChurnInit) {
    if (!Number.isInteger(init.livePeers) || init.livePeers < 1) throw new SimConfigError(`livePeers must be a positive integer, got ${init.livePeers}`)
    this.model = new NetModel({ seed: init.seed ?? 1 })
    this.powBits = init.powBits ?? 4
    this.churnPerRound = init.churnPerRound ?? 0.1
    this.roundMs = init.roundMs ?? PEER_ENTRY_TTL_MS / 2
    this.hubMerge = init.hubMerge ?? 'round'
    this.policy = init.generations === undefined || init.generations === false ? undefined : rotationPolicy(init.generations)
    if (!(this.churnPerRound >= 0 && this.churnPerRound <= 1)) throw new SimConfigError(`churnPerRound ${this.churnPerRound} must be in [0, 1]`)
    this.hub = this.doc('hub')
    for (let i = 0; i < (init.observers ?? 2); i++) this.observers.push(this.doc(`observer-${i}`))
  }

  private doc (selfId: string, key?: PrivateKey, seed?: Uint8Array): SwarmDoc {
    const y = new Y.Doc()
    // Seeded client ids: Yjs picks random ones, and their varint length shows in the byte counts.
    y.clientID = 1 + this.model.rng.int(0x3fffffff)
    if (seed !== undefined) Y.applyUpdate(y, seed)
    return new SwarmDoc('sim', selfId, key, y, { powBits: this.powBits, now: () => this.now, generation: this.hub?.generation, mirroredGenerations: 0 })
  }

  get live (): number {
    return this.writers.size
  }

  /** Adds `n` peers: each signs its entry in its own doc and the update reaches the hub. */
  async join (n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const key = await generateKeyPairFromSeed('Ed25519', this.model.keySeed(this.joined++))
      const id = peerIdFromPrivateKey(key).toString()
      const w: Writer = { doc: this.doc(id, key), key }
      this.writers.set(id, w)
      await this.write(w)
    }
    await this.flush()
  }

  /** Signs a fresh entry; the update goes to the hub now ('each') or with the round's others. */
  private async write (w: Writer): Promise<void> {
    const sv = Y.encodeStateVector(w.doc.doc)
    await w.doc.setSelf(ENTRY_DATA)
    const update = Y.encodeStateAsUpdate(w.doc.doc, sv)
    if (this.hubMerge === 'each') await this.hub.applyRemote(update)
    else this.unsent.push(update)
  }

  /** Merges the pending writes into the hub as one update, through the hub's checks. */
  private async flush (): Promise<void> {
    if (this.unsent.length === 0) return
    const update = Y.mergeUpdates(this.unsent)
    this.unsent = []
    await this.hub.applyRemote(update)
  }

  /** Two-way state-vector sync between the hub and a replica, both through applyRemote. */
  private async sync (replica: SwarmDoc): Promise<void> {
    await replica.applyRemote(Y.encodeStateAsUpdate(this.hub.doc, Y.encodeStateVector(replica.doc)))
    await this.hub.applyRemote(Y.encodeStateAsUpdate(replica.doc, Y.encodeStateVector(this.hub.doc)))
  }

  /** One round: time passes, `churnPerRound` of the peers leave and as many join, everyone live refreshes, replicas sweep. */
  async step (): Promise<CrdtRound> {
    this.now += this.roundMs
    this.round++
    const ids = [...this.writers.keys()]
    for (const i of this.model.pick(ids.length, Math.round(ids.length * this.churnPerRound))) {
      const w = this.writers.get(ids[i])!
      this.writers.delete(ids[i])
      w.doc.doc.destroy()
      this.departed.set(ids[i], this.now)
    }
    await this.join(ids.length - this.writers.size)
    for (const w of this.writers.values()) await this.write(w)
    await this.flush()
    for (const o of this.observers) {
      await this.sync(o)
      o.pruneExpired()
      await this.sync(o)
    }
    if (this.policy !== undefined && await this.hub.rotationDue(this.policy)) await this.rotate()
    return await this.measure()
  }

  /** The hub starts a new generation; every replica re-seeds from it. */
  private async rotate (): Promise<void> {
    await this.hub.rotate(this.now, 1 + this.model.rng.int(0x3fffffff))
    const state = Y.encodeStateAsUpdate(this.hub.doc)
    for (const o of this.observers) await o.adopt(this.hub.generation, state)
    for (const [id, w] of this.writers) {
      w.doc.doc.destroy()
      w.doc = this.doc(id, w.key, state)
    }
  }

  /** Figures of the current state. */
  async measure (): Promise<CrdtRound> {
    const hubBytes = Y.encodeStateAsUpdate(this.hub.doc).length
    let staleHeld = 0
    for (const d of [this.hub, ...this.observers]) {
      for (const [id] of d.peersMap.entries()) {
        const left = this.departed.get(id)
        // Its last entry expired at most TTL after it left; the sweep allows EXPIRY skew + a round.
        if (left !== undefined && this.now - left > PEER_ENTRY_TTL_MS + 30_000 + this.roundMs) staleHeld++
      }
    }
    return {
      round: this.round,
      live: this.live,
      everJoined: this.joined,
      hubEntries: this.hub.peersMap.size,
      staleHeld,
      hubBytes,
      bytesPerLivePeer: hubBytes / Math.max(1, this.live),
      rotations: this.hub.rotations
    }
  }

  /** A joining tab: a fresh doc merges the hub's whole state (SyncStep2 for an empty state vector). */
  async joinSync (): Promise<{ bytes: number, ms: number, entries: number }> {
    const update = Y.encodeStateAsUpdate(this.hub.doc)
    const tab = this.doc('joiner')
    const t0 = performance.now()
    await tab.applyRemote(update)
    const entries = (await tab.peers()).size
    return { bytes: update.length, ms: performance.now() - t0, entries }
  }
}
