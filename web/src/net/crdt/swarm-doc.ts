/**
 * One Yjs document per swarm, with guarded signed maps: `peers`, and `evidence` (SIGNED_MAPS,
 * entries.ts) — every check below applies to each of them.
 *
 * Remote updates go through applyRemote(), which first applies them to a scratch copy of the doc
 * and checks every `peers` entry they touch: a changed entry must carry a valid signature from the
 * key's owner and a higher seq than the entry it replaces; a removed entry must have expired.
 * An update that fails is not applied at all (no partial state), and the caller gets a typed error.
 * Updates whose dependencies have not arrived yet are held (bounded) and retried after each
 * successful apply instead of entering the doc half-integrated.
 */
import type { PrivateKey } from '@libp2p/interface'
import * as Y from 'yjs'
import { ForgedEntryError, GenerationMismatchError, LimitExceededError, MalformedMessageError, NetConfigError } from '../errors.ts'
import { CRDT_SYNC } from '../protocols.ts'
import { DEFAULT_POW_BITS, powEpoch, stampProblem } from '../pow.ts'
import { mintOffThread } from '../pow-offthread.ts'
import { PEERS_MAP, PEER_ENTRY_TTL_MS, SIGNED_MAPS, signEntry, verifyEntry, type PeerEntry, type RawEntry } from './entries.ts'
import { MAX_ITEM_BYTES, oversizedItem } from './limits.ts'
import { GENERATION_EPOCH_MS, GENESIS, checkGeneration, compareGenerations, formatGeneration, generationEpoch, sameGeneration, type Generation, type RotationPolicy } from './generation.ts'

/** Updates waiting for missing dependencies; beyond this the oldest is dropped (sync repairs it). */
const MAX_PENDING_UPDATES = 64
/**
 * Largest encoded size the doc may reach through remote updates that write outside the signed
 * maps, bytes: the same as a newcomer's first-sync byte burst (limits.ts), since a joining peer
 * downloads the whole doc. Live state is ≈ 1 KiB per peer (BENCHMARKS.md § Scale), so honest
 * swarms stay far below it; fresh keys cost nothing, so per-author buckets alone cannot bound it.
 */
const MAX_DOC_BYTES = 16 * 1024 * 1024
type DecodedUpdate = ReturnType<typeof Y.decodeUpdate>

/** The update's structs and deletions, or undefined when it does not decode. */
function decodeOrUndefined (update: Uint8Array): DecodedUpdate | undefined {
  try {
    return Y.decodeUpdate(update)
  } catch {
    return undefined
  }
}

/** Tolerated clock skew when deciding whether an entry has expired, in ms. */
const EXPIRY_SKEW_MS = 30_000

/** Transaction origin of updates that came from the network (never re-published). */
export const REMOTE_ORIGIN = Symbol('webswarm-remote')

/** Transaction origin of writes that mirror the current generation's doc into an earlier one. */
const MIRROR_ORIGIN = Symbol('webswarm-generation-mirror')
/**
 * Earlier generations' docs kept in step with the current one (newest first), so that code still
 * holding one of their maps (a run board, a UI listener) reads and writes the live state; older
 * ones stop following. Each costs one copy of the changed keys per transaction.
 */
const MIRRORED_GENERATIONS = 4

/** Result of applyRemote. */
export type ApplyResult = 'applied' | 'pending' | 'noop'

/** Flood limits of one doc (limits.ts, ../pow.ts). Every peer of a swarm must use the same powBits. */
export interface SwarmDocLimits {
  /**
   * Proof-of-work difficulty of a `peers` entry (the identity's stamp, ../pow.ts, scope = the
   * swarm name): changed entries without a valid stamp are refused on merge, and setSelf mints
   * one (once per UTC day). 0: no stamps. @default DEFAULT_POW_BITS
   */
  powBits?: number
  /** Largest value one remote update may insert, bytes. @default MAX_ITEM_BYTES */
  maxItemBytes?: number
  /** Wall clock of stamps' days and entries' expiry. @default Date.now */
  now?: () => number
  /**
   * Encoded doc size above which remote updates that write outside the signed maps are refused
   * (stamped `peers` entries and deletions still apply, so pruning and honest identities go on).
   * @default MAX_DOC_BYTES
   */
  maxDocBytes?: number
  /** The doc generation `doc` holds (a relay's stored one, crdt/generation.ts). @default GENESIS */
  generation?: Generation
  /**
   * Earlier generations' docs kept in step with the current one, for code that still holds their
   * maps; 0 where nothing does (the relay, the simulator). @default MIRRORED_GENERATIONS
   */
  mirroredGenerations?: number
}

/** Called when the doc moves to another generation: `doc` is now a fresh Y.Doc; `old` is the one before. */
export type GenerationListener = (g: Generation, old: Y.Doc) => void

export class SwarmDoc {
  /** The current generation's Y.Doc; replaced at rotate()/adopt(), so hold the SwarmDoc, not this. */
  get doc (): Y.Doc { return this.ydoc }
  private ydoc: Y.Doc
  /** The doc generation held now (crdt/generation.ts). */
  generation: Generation
  /** When this replica started or joined its generation (for the rotation period), ms. */
  private generationSince: number
  private readonly generationListeners = new Set<GenerationListener>()
  /** Earlier generations' docs mirrored (MIRRORED_GENERATIONS). */
  private readonly mirrors: Y.Doc[] = []
  private readonly pending: Uint8Array[] = []
  /** Our last sequence number per signed map. */
  private readonly ownSeqs = new Map<string, number>()
  /** Count of remote updates rejected (forged/malformed/over a limit), for metrics and tests. */
  rejected = 0
  /** Of those: updates refused for a `peers` entry without a valid proof-of-work stamp, and for an oversized value. */
  refusedPow = 0
  refusedSize = 0
  /** Of those: updates refused because the doc is at its size cap (maxDocBytes). */
  refusedDocSize = 0
  /** Updates or sync frames refused for naming another generation (GenerationMismatchError). */
  refusedGeneration = 0
  /** Generations this replica started (rotate) and re-seeded from (adopt). */
  rotations = 0
  adoptions = 0
  /** Remote updates that needed the full check on a scratch copy of the doc (O(doc) each), for tests and profiling. */
  fullChecks = 0
  readonly powBits: number
  private readonly maxItemBytes: number
  private readonly maxDocBytes: number
  /** The doc's encoded size when last measured, and bytes of updates applied since (an upper bound, as deletions shrink it). */
  private measuredBytes = 0
  private appliedSince = Infinity
  private readonly now: () => number
  private readonly limits: SwarmDocLimits
  /** This peer's stamp and the UTC day it was minted for. */
  private stamp: { epoch: number, text: Promise<string> } | undefined
  /** Entries already verified, by key + signature: peers() is read on every UI render. */
  private readonly verified = new Map<string, PeerEntry>()

  constructor (readonly swarm: string, readonly selfId: string, private readonly privateKey?: PrivateKey, doc?: Y.Doc, limits: SwarmDocLimits = {}) {
    this.ydoc = doc ?? new Y.Doc()
    this.limits = limits
    this.powBits = limits.powBits ?? DEFAULT_POW_BITS
    this.maxItemBytes = limits.maxItemBytes ?? MAX_ITEM_BYTES
    this.now = limits.now ?? Date.now
    this.maxDocBytes = limits.maxDocBytes ?? MAX_DOC_BYTES
    stampProblem('', swarm, selfId, this.powBits, 0) // validates powBits (throws NetConfigError)
    if (!(this.maxItemBytes > 0)) throw new NetConfigError(`maxItemBytes must be positive, got ${this.maxItemBytes}`)
    if (!(this.maxDocBytes > 0)) throw new NetConfigError(`maxDocBytes must be positive, got ${this.maxDocBytes}`)
    const mirrored = limits.mirroredGenerations ?? MIRRORED_GENERATIONS
    if (!(Number.isInteger(mirrored) && mirrored >= 0)) throw new NetConfigError(`mirroredGenerations must be an integer ≥ 0, got ${mirrored}`)
    this.generation = limits.generation ?? GENESIS
    this.generationSince = this.generation.n > 0 ? Math.min(this.now(), this.generation.n * GENERATION_EPOCH_MS) : this.now()
    this.ydoc.on('update', this.countApplied)
    this.ydoc.on('afterTransaction', this.toMirrors)
  }

  private readonly countApplied = (u: Uint8Array): void => { this.appliedSince += u.byteLength }

  /** This peer's identity stamp for today (minted once per UTC day; ~2^powBits hashes). */
  async ownStamp (): Promise<string> {
    const epoch = powEpoch(this.now())
    if (this.stamp?.epoch !== epoch) {
      // On a page, in a Web Worker (pow-offthread.ts): 2^16 hashes by default, ~0.5 s of the page thread otherwise.
      const text = mintOffThread(this.swarm, this.selfId, this.powBits, this.now(), {})
      this.stamp = { epoch, text }
      text.catch(() => { if (this.stamp?.text === text) this.stamp = undefined })
    }
    return await this.stamp.text
  }

  /** The raw peers map. Write through setSelf(); direct writes are rejected by every other peer. */
  get peersMap (): Y.Map<RawEntry> {
    return this.doc.getMap<RawEntry>(PEERS_MAP)
  }

  /** A signed root map (SIGNED_MAPS): write through setSigned(); direct writes are rejected by every other peer. */
  signedMap (name: string): Y.Map<RawEntry> {
    if (!SIGNED_MAPS.includes(name)) throw new NetConfigError(`${name} is not a signed map (${SIGNED_MAPS.join(', ')})`)
    return this.doc.getMap<RawEntry>(name)
  }

  /** Any other shared root map (models, training runs); unrestricted. */
  map<T = unknown> (name: string): Y.Map<T> {
    if (SIGNED_MAPS.includes(name)) throw new NetConfigError(`use setSigned()/signedEntries() (setSelf()/peers() for ${PEERS_MAP}) for the signed ${name} map`)
    return this.doc.getMap<T>(name)
  }

  /** verifyEntry with a cache of successes (a signature verifies the same way every time). */
  private async verify (key: string, value: unknown, map = PEERS_MAP): Promise<PeerEntry> {
    const raw = value as Partial<RawEntry> | null
    const cacheKey = typeof raw?.sig === 'string' && typeof raw.payload === 'string' ? `${map}\n${key}\n${raw.sig}\n${raw.payload}` : undefined
    const hit = cacheKey === undefined ? undefined : this.verified.get(cacheKey)
    if (hit !== undefined) return hit
    const e = await verifyEntry(this.swarm, key, value, map)
    if (cacheKey !== undefined) {
      // Superseded entries linger in the cache; drop it all once it outgrows the maps by 4x.
      const held = SIGNED_MAPS.reduce((a, m) => a + this.doc.getMap(m).size, 0)
      if (this.verified.size > 4 * Math.max(64, held)) this.verified.clear()
      this.verified.set(cacheKey, e)
    }
    return e
  }

  /** Verified, unexpired entries of the peers map. Invalid ones (possible only from local writes) are skipped. */
  async peers (now = this.now()): Promise<Map<string, PeerEntry>> {
    return await this.signedEntries(PEERS_MAP, now)
  }

  /** Verified, unexpired entries of a signed map. Invalid ones (possible only from local writes) are skipped. */
  async signedEntries (map: string, now = this.now()): Promise<Map<string, PeerEntry>> {
    const out = new Map<string, PeerEntry>()
    for (const [key, value] of this.signedMap(map).entries()) {
      // An entry that fails verification is not an entry (documented above): skipped, not fatal.
      const e = await this.verify(key, value, map).catch(() => undefined)
      if (e !== undefined && e.expiresAt > now) out.set(key, e)
    }
    return out
  }

  /** Writes (signs) this peer's own entry. */
  async setSelf (data: Record<string, unknown>, ttlMs = PEER_ENTRY_TTL_MS): Promise<PeerEntry> {
    return await this.setSigned(PEERS_MAP, data, ttlMs)
  }

  /** Writes (signs) this peer's own entry of a signed map. */
  async setSigned (map: string, data: Record<string, unknown>, ttlMs = PEER_ENTRY_TTL_MS): Promise<PeerEntry> {
    if (this.privateKey === undefined) throw new NetConfigError('SwarmDoc has no private key: it cannot write its own entry')
    const m = this.signedMap(map)
    let seq = this.ownSeqs.get(map) ?? 0
    const prev = m.get(this.selfId)
    if (prev !== undefined) {
      // An unverifiable old entry of ours holds no sequence number to continue from.
      const e = await this.verify(this.selfId, prev, map).catch(() => undefined)
      if (e !== undefined) seq = Math.max(seq, e.seq)
    }
    const entry: PeerEntry = { peer: this.selfId, seq: seq + 1, expiresAt: this.now() + ttlMs, data }
    if (map === PEERS_MAP && this.powBits > 0) entry.pow = await this.ownStamp()
    this.ownSeqs.set(map, entry.seq)
    const raw = await signEntry(this.privateKey, this.swarm, entry, map)
    m.set(this.selfId, raw)
    return entry
  }

  /**
   * Validates and applies a remote update. Throws ForgedEntryError / MalformedMessageError
   * without changing the doc; returns 'pending' if it waits for missing dependencies.
   */
  async applyRemote (update: Uint8Array, origin: unknown = REMOTE_ORIGIN): Promise<ApplyResult> {
    const result = await this.tryApply(update, origin)
    if (result === 'pending') {
      this.pending.push(update)
      if (this.pending.length > MAX_PENDING_UPDATES) this.pending.shift()
      return result
    }
    if (result === 'applied') await this.retryPending(origin)
    return result
  }

  private async retryPending (origin: unknown): Promise<void> {
    let progress = true
    while (progress && this.pending.length > 0) {
      progress = false
      for (let i = 0; i < this.pending.length; i++) {
        const r = await this.tryApply(this.pending[i], origin).catch(() => 'rejected' as const)
        if (r !== 'pending') {
          this.pending.splice(i, 1)
          progress = true
          break
        }
      }
    }
  }

  /** Number of updates waiting for dependencies. */
  get pendingCount (): number {
    return this.pending.length
  }

  private async tryApply (update: Uint8Array, origin: unknown): Promise<ApplyResult> {
    const big = oversizedItem(update, this.maxItemBytes)
    if (big !== undefined) {
      this.rejected++
      this.refusedSize++
      throw new LimitExceededError(CRDT_SYNC.id, `update inserts a value of ${big.size} B into ${big.where}, over the ${this.maxItemBytes} B limit`)
    }
    // Decoded once for the cheap checks below; an undecodable update falls through to the full
    // check, which names the error. One that visibly lacks dependencies waits without the O(doc)
    // scratch copy: a flooder's undeliverable updates are retried after every applied update.
    const decoded = decodeOrUndefined(update)
    if (this.lacksDependencies(decoded)) return 'pending'
    if (this.overDocCap(update, decoded)) {
      this.rejected++
      this.refusedDocSize++
      throw new LimitExceededError(CRDT_SYNC.id, `swarm doc is ${this.measuredBytes} B; a ${update.byteLength} B update outside the signed maps would pass its ${this.maxDocBytes} B cap`)
    }
    // Fast path: an update that provably cannot touch `peers` and has all its dependencies is
    // applied directly (no scratch copy: O(update) instead of O(doc)).
    if (this.provablyOutsidePeers(decoded)) {
      Y.applyUpdate(this.doc, update, origin)
      return 'applied'
    }
    this.fullChecks++
    const scratch = new Y.Doc()
    try {
      Y.applyUpdate(scratch, Y.encodeStateAsUpdate(this.doc))
      const svBefore = Y.encodeStateVector(scratch)
      Y.applyUpdate(scratch, update)
      if (scratch.store.pendingStructs !== null || scratch.store.pendingDs !== null) return 'pending'
      if (equalBytes(svBefore, Y.encodeStateVector(scratch)) && !deletesSomething(update)) return 'noop'
    } catch (e) {
      this.rejected++
      throw new MalformedMessageError(CRDT_SYNC.id, `update does not decode: ${(e as Error).message}`)
    }
    try {
      for (const map of SIGNED_MAPS) await this.checkSigned(map, this.doc.getMap<RawEntry>(map), scratch.getMap<RawEntry>(map))
    } catch (e) {
      this.rejected++
      throw e
    }
    Y.applyUpdate(this.doc, update, origin)
    return 'applied'
  }

  /**
   * True when `update` would take the doc past maxDocBytes and writes outside the signed maps.
   * The exact size (O(doc) to encode) is measured only when the running upper bound crosses the
   * cap and something was applied since the last measurement, so a flood at the cap costs O(update).
   */
  private overDocCap (update: Uint8Array, decoded: DecodedUpdate | undefined): boolean {
    if (this.measuredBytes + this.appliedSince + update.byteLength <= this.maxDocBytes) return false
    if (decoded === undefined || this.writesOnlySignedMaps(decoded)) return false
    if (this.appliedSince > 0) {
      this.measuredBytes = Y.encodeStateAsUpdate(this.doc).byteLength
      this.appliedSince = 0
    }
    return this.measuredBytes + update.byteLength > this.maxDocBytes
  }

  /**
   * True when every item `update` inserts lands in a signed map (by its parent's name, or next to
   * an entry of one we hold) — or it inserts nothing (deletions only). Undecidable → false.
   */
  private writesOnlySignedMaps (decoded: DecodedUpdate | undefined): boolean {
    if (decoded === undefined) return false
    const store = this.doc.store
    const signed = new Set<unknown>(SIGNED_MAPS.map(m => this.doc.getMap(m)))
    const heldParent = (id: Y.ID | null): unknown => {
      if (id === null || id.clock >= Y.getState(store, id.client)) return undefined
      const s = Y.getItem(store, id) as Y.Item | Y.GC
      return s instanceof Y.Item ? s.parent : undefined
    }
    for (const struct of decoded.structs) {
      if (!(struct instanceof Y.Item)) continue
      if (typeof struct.parent === 'string') {
        if (!SIGNED_MAPS.includes(struct.parent)) return false
      } else if (struct.parent !== null || !signed.has(heldParent(struct.origin ?? struct.rightOrigin))) {
        return false
      }
    }
    return true
  }

  /**
   * True when `update` certainly cannot apply yet: a struct starts after a gap in its client's
   * history, or points (origin, right origin, parent item) at an id this doc does not hold and the
   * update does not bring. False when undecidable (or undecodable): the full check then decides.
   */
  private lacksDependencies (decoded: DecodedUpdate | undefined): boolean {
    if (decoded === undefined) return false
    const store = this.doc.store
    // Pass 1: per client, the clock up to which the doc or the update holds; a gap is a miss.
    const reach = new Map<number, number>()
    for (const struct of decoded.structs) {
      if (struct instanceof Y.Skip) continue // a range the update leaves out: the next struct shows the gap if we lack it
      const client = struct.id.client
      const expected = reach.get(client) ?? Y.getState(store, client)
      if (struct.id.clock > expected) return true
      reach.set(client, Math.max(expected, struct.id.clock + struct.length))
    }
    // Pass 2: what the items point at (possibly items of this same update, in any order).
    const holds = (id: Y.ID | null): boolean => id === null || id.clock < (reach.get(id.client) ?? Y.getState(store, id.client))
    for (const struct of decoded.structs) {
      if (!(struct instanceof Y.Item)) continue
      if (!holds(struct.origin) || !holds(struct.rightOrigin)) return true
      if (struct.parent !== null && typeof struct.parent !== 'string' && !holds(struct.parent as Y.ID)) return true
    }
    return false
  }

  /**
   * True only when every struct of `update` continues its client's history without a gap, and
   * is located (by its parent name, or by an origin we already hold) outside the signed maps, and
   * every deletion targets items we hold outside them. Anything undecidable → false (slow path).
   */
  private provablyOutsidePeers (decoded: DecodedUpdate | undefined): boolean {
    if (decoded === undefined) return false
    const store = this.doc.store
    const signed = new Set<Y.AbstractType<unknown>>(SIGNED_MAPS.map(m => this.doc.getMap(m) as Y.AbstractType<unknown>))
    const rootOfType = (type: Y.AbstractType<unknown> | null): Y.AbstractType<unknown> | null => {
      let t = type
      while (t !== null && t._item !== null) t = t._item.parent as Y.AbstractType<unknown> | null
      return t
    }
    const held = (id: Y.ID | null): Y.Item | undefined => {
      if (id === null || id.clock >= Y.getState(store, id.client)) return undefined
      const s = Y.getItem(store, id) as Y.Item | Y.GC
      return s instanceof Y.Item ? s : undefined
    }
    const nextClock = new Map<number, number>()
    for (const struct of decoded.structs) {
      const client = struct.id.client
      const expected = nextClock.get(client) ?? Y.getState(store, client)
      if (struct.id.clock > expected) return false // a gap: dependencies missing
      nextClock.set(client, Math.max(expected, struct.id.clock + struct.length))
      if (!(struct instanceof Y.Item)) continue
      let root: Y.AbstractType<unknown> | null
      if (typeof struct.parent === 'string') {
        if (SIGNED_MAPS.includes(struct.parent)) return false
        continue
      } else if (struct.parent !== null) {
        // `parent` is the id of the item that holds a nested type.
        const holder = held(struct.parent as Y.ID)
        if (holder === undefined || !(holder.content instanceof Y.ContentType)) return false
        root = rootOfType(holder.content.type as Y.AbstractType<unknown>)
      } else {
        // No parent on the wire: it is the parent of the item it was inserted next to.
        const sibling = held(struct.origin ?? struct.rightOrigin)
        if (sibling === undefined) return false
        root = rootOfType(sibling.parent as Y.AbstractType<unknown> | null)
      }
      if (root === null || signed.has(root)) return false
    }
    for (const [client, ranges] of decoded.ds.clients) {
      const structs = store.clients.get(client)
      for (const { clock, len } of ranges) {
        if (structs === undefined || clock + len > Y.getState(store, client)) return false
        for (let i = Y.findIndexSS(structs, clock); i < structs.length && structs[i].id.clock < clock + len; i++) {
          const s = structs[i]
          if (s instanceof Y.Item) {
            const root = rootOfType(s.parent as Y.AbstractType<unknown> | null)
            if (root !== null && signed.has(root)) return false
          }
        }
      }
    }
    return true
  }

  private async checkSigned (map: string, before: Y.Map<RawEntry>, after: Y.Map<RawEntry>): Promise<void> {
    const now = this.now()
    for (const [key, value] of after.entries()) {
      const old = before.get(key)
      if (old !== undefined && sameRaw(old, value)) continue
      const next = await this.verify(key, value, map)
      if (map === PEERS_MAP && this.powBits > 0) this.checkStamp(key, next)
      if (old !== undefined) {
        // An invalid entry being replaced has no sequence number a replay could reuse.
        const prev = await this.verify(key, old, map).catch(() => undefined)
        if (prev !== undefined && next.seq <= prev.seq) throw new ForgedEntryError(key, `replayed entry: seq ${next.seq} does not advance ${prev.seq}`)
      }
    }
    for (const [key, old] of before.entries()) {
      if (after.has(key)) continue
      // Anyone may delete an entry that does not verify: only valid, unexpired ones are protected.
      // A peers entry without a valid stamp is invalid too (entries written before stamps existed).
      const prev = await this.verify(key, old, map).catch(() => undefined)
      const stamped = prev !== undefined && (map !== PEERS_MAP || this.powBits === 0 || this.stampProblemOf(key, prev) === undefined)
      if (stamped && prev.expiresAt > now - EXPIRY_SKEW_MS) throw new ForgedEntryError(key, `deleted an unexpired ${map} entry`)
    }
  }

  /**
   * A `peers` entry's stamp, judged at the entry's write time (expiresAt − the entry lifetime), not
   * at merge time: an entry that lingers in docs after its day (expired, not yet pruned) must not
   * make a newcomer's whole sync fail. The write time may be a day off either way (a custom TTL,
   * midnight); an entry dated further ahead than one lifetime is refused, so nobody can pin a
   * stamp's day by post-dating an entry.
   */
  private checkStamp (key: string, e: PeerEntry): void {
    const why = this.stampProblemOf(key, e)
    if (why !== undefined) {
      this.refusedPow++
      throw new ForgedEntryError(key, `identity without proof of work: ${why}`)
    }
  }

  /** What is wrong with a `peers` entry's stamp (see checkStamp), or undefined when it holds. */
  private stampProblemOf (key: string, e: PeerEntry): string | undefined {
    const now = this.now()
    const written = e.expiresAt - PEER_ENTRY_TTL_MS
    if (written > now + EXPIRY_SKEW_MS) return `entry expires ${Math.round((e.expiresAt - now) / 1000)} s ahead, more than the ${PEER_ENTRY_TTL_MS / 1000} s lifetime`
    const why = stampProblem(e.pow, this.swarm, key, this.powBits, written)
    if (why !== undefined && stampProblem(e.pow, this.swarm, key, this.powBits, written + 86_400_000) === undefined) return undefined
    return why
  }

  /**
   * Deletes every expired entry of every signed map, and `peers` entries without a valid stamp
   * (anyone may; every peer runs it, the relay at load and compaction: a relay's stored doc from
   * before stamps would otherwise fail every newcomer's first sync until those entries expired).
   * Returns how many.
   */
  pruneExpired (now = this.now()): number {
    const expired: Array<[Y.Map<RawEntry>, string]> = []
    for (const name of SIGNED_MAPS) {
      const m = this.doc.getMap<RawEntry>(name)
      for (const [key, value] of m.entries()) {
        try {
          const e = JSON.parse(value.payload) as PeerEntry
          if (e.expiresAt < now - EXPIRY_SKEW_MS) expired.push([m, key])
          else if (name === PEERS_MAP && this.powBits > 0 && this.stampProblemOf(key, e) !== undefined) expired.push([m, key])
        } catch { expired.push([m, key]) }
      }
    }
    if (expired.length > 0) this.doc.transact(() => { for (const [m, k] of expired) m.delete(k) })
    return expired.length
  }

  /** Calls `fn` whenever the doc moves to another generation (re-bind anything that holds `doc`); returns the unsubscribe. */
  onGeneration (fn: GenerationListener): () => void {
    this.generationListeners.add(fn)
    return () => { this.generationListeners.delete(fn) }
  }

  /**
   * A fresh Y.Doc (client id `tag`) holding only what is live in this one: every verified,
   * unexpired signed entry as its owner signed it (the raw value, never re-signed; `peers`
   * entries also need a valid stamp), and the other root maps' current values. Keys are written in
   * sorted order, so equal content gives equal bytes. Only root maps are carried (the swarm's roots
   * are all maps); a nested Yjs value is carried as its JSON.
   */
  async buildSeed (tag: number, now = this.now()): Promise<Y.Doc> {
    const seed = new Y.Doc()
    seed.clientID = tag
    const copies: Array<[string, string, unknown]> = []
    for (const name of [...this.ydoc.share.keys()].sort()) {
      if (SIGNED_MAPS.includes(name)) {
        const live = await this.signedEntries(name, now)
        const m = this.ydoc.getMap<RawEntry>(name)
        for (const key of [...live.keys()].sort()) {
          if (name === PEERS_MAP && this.powBits > 0 && this.stampProblemOf(key, live.get(key)!) !== undefined) continue
          copies.push([name, key, m.get(key)])
        }
        continue
      }
      let m: Y.Map<unknown>
      try {
        m = this.ydoc.getMap<unknown>(name)
      } catch {
        continue // a root defined as another type (none in this codebase): not carried
      }
      for (const key of [...m.keys()].sort()) {
        const v = m.get(key)
        copies.push([name, key, v instanceof Y.AbstractType ? v.toJSON() : v])
      }
    }
    seed.transact(() => { for (const [name, key, v] of copies) seed.getMap(name).set(key, v) })
    return seed
  }

  /**
   * Whether this replica should start a new generation now (crdt/generation.ts RotationPolicy):
   * never twice in one generation epoch; otherwise once the doc's history (its bytes beyond a seed
   * of the live values) is at least `minHistoryBytes` and either passes `historyShare` of the doc
   * or the generation is `everyMs` old. O(doc): the relay asks once a minute.
   */
  async rotationDue (policy: RotationPolicy, now = this.now()): Promise<boolean> {
    if (generationEpoch(now) <= this.generation.n) return false
    const docBytes = Y.encodeStateAsUpdate(this.ydoc).byteLength
    const history = docBytes - Y.encodeStateAsUpdate(await this.buildSeed(1, now)).byteLength
    if (history < policy.minHistoryBytes) return false
    return history > policy.historyShare * docBytes || now - this.generationSince >= policy.everyMs
  }

  /**
   * Starts a new generation: `doc` becomes buildSeed()'s fresh doc, numbered by the current
   * epoch. Throws NetConfigError when this doc's generation started in the current epoch already.
   */
  async rotate (now = this.now(), tag = randomTag()): Promise<Generation> {
    const n = generationEpoch(now)
    if (n <= this.generation.n) throw new NetConfigError(`doc generation ${formatGeneration(this.generation)} started in epoch ${this.generation.n}; the next may start from epoch ${this.generation.n + 1} (now ${n})`)
    if (!(Number.isInteger(tag) && tag > 0 && tag <= 0xffff_ffff)) throw new NetConfigError(`generation tag must be a u32 other than 0, got ${tag}`)
    const seed = await this.buildSeed(tag, now)
    this.rotations++
    this.swap(seed, { n, tag }, now)
    return this.generation
  }

  /**
   * Re-seeds from a newer generation: `update` (the other side's whole state) is checked like any
   * remote update, on a fresh doc — every signed entry verified, every stamp — and becomes `doc`;
   * then this peer's own live entries that the seed lacks (or holds older) are re-inserted as
   * signed, so no live entry of ours is lost. Returns how many were re-inserted. Throws
   * GenerationMismatchError for a generation not newer than ours, MalformedMessageError for a seed
   * that is not a whole state, and the checks' own errors (ForgedEntryError…), leaving the doc
   * unchanged.
   */
  async adopt (g: Generation, update: Uint8Array): Promise<number> {
    const now = this.now()
    this.checkGeneration(g, now)
    if (compareGenerations(g, this.generation) <= 0) {
      this.refusedGeneration++
      throw new GenerationMismatchError(CRDT_SYNC.id, formatGeneration(g), formatGeneration(this.generation), false)
    }
    const fresh = new Y.Doc()
    // Our client id goes on (awareness keys presence by it) unless the seed's writer has it.
    fresh.clientID = this.ydoc.clientID === g.tag ? randomTag(g.tag) : this.ydoc.clientID
    const check = new SwarmDoc(this.swarm, this.selfId, undefined, fresh, { ...this.limits, generation: g })
    const r = await check.applyRemote(update).catch((e: Error) => { this.rejected++; throw e })
    fresh.off('update', check.countApplied)
    fresh.off('afterTransaction', check.toMirrors)
    if (r === 'pending') {
      this.rejected++
      throw new MalformedMessageError(CRDT_SYNC.id, `seed of generation ${formatGeneration(g)} lacks dependencies: not a whole state`)
    }
    const own: Array<[string, RawEntry, PeerEntry]> = []
    for (const map of SIGNED_MAPS) {
      const raw = this.ydoc.getMap<RawEntry>(map).get(this.selfId)
      // An own entry that does not verify (a local bug) is not carried: nobody would accept it.
      const e = raw === undefined ? undefined : await this.verify(this.selfId, raw, map).catch(() => undefined)
      if (raw !== undefined && e !== undefined && e.expiresAt > now) own.push([map, raw, e])
    }
    this.adoptions++
    this.swap(fresh, g, now)
    let carried = 0
    for (const [map, raw, e] of own) {
      const m = this.ydoc.getMap<RawEntry>(map)
      const cur = m.get(this.selfId)
      // The seed's copy was verified by the check above; undefined only when it holds none.
      const held = cur === undefined ? undefined : await this.verify(this.selfId, cur, map).catch(() => undefined)
      if (held === undefined || held.seq < e.seq) {
        m.set(this.selfId, raw)
        carried++
      }
    }
    return carried
  }

  /**
   * applyRemote() for an update of generation `g`: refused with GenerationMismatchError (and
   * counted) unless `g` is this doc's generation — an update of one generation cannot apply to
   * another's doc.
   */
  async applyRemoteIn (g: Generation, update: Uint8Array, origin: unknown = REMOTE_ORIGIN): Promise<ApplyResult> {
    this.checkGeneration(g, this.now())
    if (!sameGeneration(g, this.generation)) {
      this.refusedGeneration++
      throw new GenerationMismatchError(CRDT_SYNC.id, formatGeneration(g), formatGeneration(this.generation), compareGenerations(g, this.generation) > 0)
    }
    return await this.applyRemote(update, origin)
  }

  /** Throws (and counts) when `g` is malformed or from the future (generation.ts checkGeneration). */
  checkGeneration (g: Generation, now = this.now()): void {
    try {
      checkGeneration(CRDT_SYNC.id, g, now)
    } catch (e) {
      this.refusedGeneration++
      this.rejected++
      throw e
    }
  }

  /** A change of the current doc's root maps, copied into every mirrored earlier doc (but the one it came from). */
  private readonly toMirrors = (tr: Y.Transaction): void => {
    if (this.mirrors.length === 0) return
    const changes = rootMapChanges(tr)
    if (changes.length === 0) return
    const source = (tr.origin as { mirroredFrom?: Y.Doc } | null)?.mirroredFrom
    for (const m of this.mirrors) if (m !== source) copyKeys(tr.doc, m, changes, MIRROR_ORIGIN)
  }

  /** A local write to a mirrored earlier doc's free-form maps goes on into the current doc (and is gossiped from there). */
  private readonly fromMirror = (tr: Y.Transaction): void => {
    if (tr.origin === MIRROR_ORIGIN) return
    // Signed maps are written through setSigned() into the current doc; a direct write would not verify anyway.
    const changes = rootMapChanges(tr).filter(([name]) => !SIGNED_MAPS.includes(name))
    if (changes.length > 0) copyKeys(tr.doc, this.ydoc, changes, { mirroredFrom: tr.doc })
  }

  private swap (fresh: Y.Doc, g: Generation, now: number): void {
    const old = this.ydoc
    old.off('update', this.countApplied)
    old.off('afterTransaction', this.toMirrors)
    old.on('afterTransaction', this.fromMirror)
    this.mirrors.unshift(old)
    for (const d of this.mirrors.splice(this.limits.mirroredGenerations ?? MIRRORED_GENERATIONS)) d.off('afterTransaction', this.fromMirror)
    this.ydoc = fresh
    fresh.on('update', this.countApplied)
    fresh.on('afterTransaction', this.toMirrors)
    this.generation = g
    this.generationSince = now
    this.pending.length = 0 // updates of the old generation
    this.measuredBytes = 0
    this.appliedSince = Infinity
    for (const fn of this.generationListeners) fn(g, old)
  }
}

/** A random seed tag (a Yjs client id, never 0: 0 is the genesis tag). */
function randomTag (avoid = 0): number {
  const u = new Uint32Array(1)
  do crypto.getRandomValues(u); while (u[0] === 0 || u[0] === avoid)
  return u[0]
}

/** The root maps' keys a transaction changed, as [map name, key]. */
function rootMapChanges (tr: Y.Transaction): Array<[string, string]> {
  const out: Array<[string, string]> = []
  if (tr.changed.size === 0) return out
  for (const [name, type] of tr.doc.share) {
    const keys = tr.changed.get(type)
    if (keys !== undefined) for (const k of keys) if (k !== null) out.push([name, k])
  }
  return out
}

/** Copies `changes` (root map keys: value or absence) from one doc into another, skipping equal values. */
function copyKeys (from: Y.Doc, to: Y.Doc, changes: Array<[string, string]>, origin: unknown): void {
  to.transact(() => {
    for (const [name, key] of changes) {
      let src: Y.Map<unknown>, dst: Y.Map<unknown>
      try {
        src = from.getMap(name)
        dst = to.getMap(name)
      } catch {
        continue // a root of another type (none in this codebase): not mirrored
      }
      const v = src.get(key)
      const value = v instanceof Y.AbstractType ? v.toJSON() : v
      if (value === undefined) {
        if (dst.has(key)) dst.delete(key)
      } else if (JSON.stringify(dst.get(key)) !== JSON.stringify(value)) {
        dst.set(key, value)
      }
    }
  }, origin)
}

function sameRaw (a: RawEntry, b: unknown): boolean {
  const r = b as RawEntry | null
  return r !== null && typeof r === 'object' && a.sig === r.sig && a.payload === r.payload && a.v === r.v
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

/** Whether a (v1) update carries a non-empty delete set. */
function deletesSomething (update: Uint8Array): boolean {
  const { ds } = Y.decodeUpdate(update)
  return ds.clients.size > 0
}
