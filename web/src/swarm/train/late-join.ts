/**
 * Late joiners (and workers that fell behind) fetch θ_global ‖ outer momentum of the newest sync
 * the board records (`fetchLatestState`):
 *  1. as content-addressed shards (state-shards.ts): the record's manifest root, from the sync's
 *     members at once, every chunk checked against the root and θ_global against the record's hash;
 *  2. if the record names no root, the transport serves no shards (the in-memory test network),
 *     or the shard fetch fails or is refused: from one member at a time over the `allreduce`
 *     protocol's SNAPSHOT/STATE messages, in slices (`fetchSnapshot`), checking both sha256
 *     hashes against the serving peer's claim and θ_global's against the board's record.
 */
import type { AllReducePeer, SnapshotState } from './allreduce.ts'
import { SNAPSHOT_SLICE_BYTES, SNAPSHOT_TIMEOUT_MS } from './constants.ts'
import { AllReduceProtocolError, StateHashMismatchError } from './errors.ts'
import { PeerTimeoutError, PeerUnreachableError } from '../errors.ts'
import { hashBytes } from './outer.ts'
import type { RunBoard, SyncRecord } from './run-board.ts'
import { fetchStateShards, type StateShards } from './state-shards.ts'
import { MsgType } from './wire.ts'
import { realClock, type Clock } from '../../util/clock.ts'
import { WebSwarmError } from '../../util/errors.ts'

/**
 * Shard fetches per join: the newest record's, then newer ones that appeared meanwhile (fast syncs
 * can outrun a first fetch that also had to open WebRTC connections), within a time budget (ms).
 */
const SHARD_TRIES = 8
const SHARD_BUDGET_MS = 60_000
/**
 * After a fetch no provider could serve (members had dropped that sync's state: this joiner's
 * board lagged the trainers by more than KEEP_STATES syncs), how long to wait for a newer record
 * before falling back to SNAPSHOT, ms. A lagging board catches up within a CRDT sync or two.
 */
const NEWER_RECORD_WAIT_MS = 15_000
/** errorCode of net/shard's NoProvidersError (the injected StateShards throws it; train code does not import net). */
const NO_PROVIDERS = 'shard.no-providers'

export interface LatestStateInit {
  /** `watch`, where given, lets a joiner wait for a newer record after a fetch nobody could serve. */
  board: Pick<RunBoard, 'latest' | 'recordAt' | 'members' | 'syncRecords'> & Partial<Pick<RunBoard, 'watch'>>
  self: string
  /** Bytes of θ ‖ momentum (8 × parameters). */
  totalBytes: number
  /** Shard storage and exchange (libp2p); without it only SNAPSHOT is used. */
  shards?: StateShards
  /** SNAPSHOT from `peers` (in order), of a sync ≥ minRound: `fetchSnapshot` over the all-reduce. */
  snapshot: (peers: string[], minRound: number) => Promise<SnapshotState>
  log?: (line: string) => void
  /** Times the wait for a newer record. @default realClock */
  clock?: Clock
}

export interface LatestState {
  state: SnapshotState
  via: 'shards' | 'snapshot'
  /** Shards: chunks per provider. SNAPSHOT: empty. */
  fetchedFrom: Map<string, number>
}

/** θ_global ‖ momentum of the newest valid sync record (shards first, SNAPSHOT as the fallback). */
export async function fetchLatestState (init: LatestStateInit): Promise<LatestState> {
  const { board, self, log } = init
  for (const { key, reason } of board.syncRecords().ignored) log?.(`train: ignoring board entry ${key}: ${reason}`)
  // Providers: the record's members first (they computed the state), then the run's other
  // members; only live ones (a closed tab's entry goes stale, membership.ts), never self.
  const holdersOf = (rec?: SyncRecord): string[] => {
    const live = board.members()
    return [...new Set([...(rec?.members ?? []).filter(p => live.has(p)), ...[...live.keys()].sort()])].filter(p => p !== self)
  }
  const tried = new Set<string>()
  // A failed fetch is retried only on a newer record: members keep a few states, and when syncs
  // come fast the one a joiner started on may be dropped before it is done.
  const deadline = Date.now() + SHARD_BUDGET_MS
  const clock = init.clock ?? realClock
  const untried = (): boolean => { const r = board.latest().rec; return r?.root !== undefined && !tried.has(r.root) }
  for (let i = 0; i < SHARD_TRIES && init.shards !== undefined && Date.now() < deadline; i++) {
    const { seq, rec } = board.latest()
    if (rec?.root === undefined || tried.has(rec.root)) break
    tried.add(rec.root)
    try {
      const { fetchedFrom, ...state } = await fetchStateShards(init.shards, seq, { hash: rec.hash, root: rec.root }, holdersOf(rec), init.totalBytes, log)
      return { state, via: 'shards', fetchedFrom }
    } catch (e) {
      log?.(`train: refused state shards of sync ${seq} (${(e as Error).name}: ${(e as Error).message})`)
      // Nobody holds that sync any more: the trainers are ahead of this board; their newer record is on its way.
      const gone = e instanceof WebSwarmError && e.errorCode === NO_PROVIDERS
      if (gone && !untried() && board.watch !== undefined) await newerRecord(board.watch, untried, clock, Math.min(NEWER_RECORD_WAIT_MS, deadline - Date.now()))
    }
  }
  const { seq, rec } = board.latest()
  if (tried.size > 0) log?.(`train: fetching the state over SNAPSHOT from members instead of shards (sync ≥ ${seq})`)
  const state = await init.snapshot(holdersOf(rec), seq)
  const recorded = board.recordAt(state.round)
  if (recorded !== undefined && recorded.hash !== state.hash) throw new StateHashMismatchError(`peer served θ_global ${state.hash.slice(0, 12)}… for sync ${state.round}, the board records ${recorded.hash.slice(0, 12)}…`)
  return { state, via: 'snapshot', fetchedFrom: new Map() }
}

/** Resolves when `ready()` holds after a change of the board, or after `ms`. */
async function newerRecord (watch: RunBoard['watch'], ready: () => boolean, clock: Clock, ms: number): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => { clock.clearTimeout(timer); unwatch(); resolve() }
    const unwatch = watch(() => { if (ready()) done() })
    const timer = clock.setTimeout(done, Math.max(0, ms))
  })
}

export interface FetchSnapshotOptions {
  /** θ_global hash the swarm recorded; a peer serving another state is skipped. */
  expectHash?: string
  /** Only accept a state at least this recent (sync number). @default -1 */
  minRound?: number
  /** Bytes per request. @default 1 MiB */
  sliceBytes?: number
  /** Per request, ms. @default 30,000 */
  timeoutMs?: number
  /** Expected size (8 × parameters): a peer announcing another size is skipped. */
  totalBytes?: number
}

/** Restarts of one peer's transfer when its state moves on mid-fetch (a sync landed). */
const MAX_RESTARTS = 3
/**
 * Fresh tries of one peer after its transport broke (a stream closed mid-read, a connection that
 * went away) or a request of it timed out: a joiner whose run has one member has nobody else to
 * ask (e2e runs of the page failed their join on one such EOF, and at load 8 on one 30 s timeout
 * of a member busy training).
 */
const MAX_UNREACHABLE_RETRIES = 1

/** Fetches and verifies a state from the first of `peers` that serves a good one. */
export async function fetchSnapshot (ar: AllReducePeer, peers: readonly string[], opts: FetchSnapshotOptions = {}): Promise<SnapshotState> {
  const errors: string[] = []
  for (const peer of peers) {
    if (peer === ar.self) continue
    let retries = 0
    for (let restart = 0; restart < MAX_RESTARTS; restart++) {
      try {
        return await fetchFrom(ar, peer, opts)
      } catch (e) {
        if (e instanceof StateMovedError) continue
        if ((e instanceof PeerUnreachableError || e instanceof PeerTimeoutError) && retries++ < MAX_UNREACHABLE_RETRIES) { restart--; continue }
        errors.push(`${peer}: ${(e as Error).message}`)
        break
      }
    }
  }
  throw new StateHashMismatchError(`no peer served a verifiable state (${errors.join('; ') || 'no peers'})`)
}

/** The state a snapshot fetch was reading moved on (a newer round committed) mid-fetch. */
class StateMovedError extends WebSwarmError {
  override name = 'StateMovedError'
  readonly errorCode = 'train.state-moved'
  readonly callerFault = false
}

async function fetchFrom (ar: AllReducePeer, peer: string, opts: FetchSnapshotOptions): Promise<SnapshotState> {
  const slice = opts.sliceBytes ?? SNAPSHOT_SLICE_BYTES
  const timeoutMs = opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS
  let data: Uint8Array | undefined
  let first: { round: number, hash: string, momentumHash: string, meta: string } | undefined
  let offset = 0
  for (;;) {
    const r = await ar.rpc(peer, { type: MsgType.SNAPSHOT, run: ar.run, offset, length: slice }, timeoutMs)
    if (r.type === MsgType.FAIL) throw new AllReduceProtocolError(`refused: ${r.reason}`)
    if (r.type !== MsgType.STATE) throw new AllReduceProtocolError(`answered SNAPSHOT with message type ${r.type}`)
    if (first === undefined) {
      if (r.round < (opts.minRound ?? -1)) throw new StateHashMismatchError(`state of round ${r.round} is older than ${opts.minRound}`)
      if (opts.expectHash !== undefined && r.hash !== opts.expectHash) throw new StateHashMismatchError(`serves θ_global ${r.hash.slice(0, 12)}…, the swarm recorded ${opts.expectHash.slice(0, 12)}…`)
      if (opts.totalBytes !== undefined && r.total !== opts.totalBytes) throw new StateHashMismatchError(`state of ${r.total} bytes, expected ${opts.totalBytes}`)
      if (r.total % 8 !== 0) throw new AllReduceProtocolError(`state of ${r.total} bytes is not θ ‖ momentum in f32`)
      first = { round: r.round, hash: r.hash, momentumHash: r.momentumHash, meta: r.meta }
      data = new Uint8Array(r.total)
    } else if (r.round !== first.round || r.hash !== first.hash) {
      throw new StateMovedError('state changed mid-fetch')
    }
    if (r.offset !== offset || r.payload.byteLength === 0 || offset + r.payload.byteLength > data!.byteLength) throw new AllReduceProtocolError(`slice at ${r.offset} of ${r.payload.byteLength} bytes does not continue at ${offset}`)
    data!.set(r.payload, offset)
    offset += r.payload.byteLength
    if (offset === data!.byteLength) break
  }
  const half = data!.byteLength / 2
  const theta = await hashBytes(data!.subarray(0, half))
  const mom = await hashBytes(data!.subarray(half))
  if (theta !== first.hash || mom !== first.momentumHash) throw new StateHashMismatchError(`bytes hash to ${theta.slice(0, 12)}…/${mom.slice(0, 12)}…, the peer claimed ${first.hash.slice(0, 12)}…/${first.momentumHash.slice(0, 12)}…`)
  return { ...first, data: data! }
}
