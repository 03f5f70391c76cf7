/**
 * Fault-tolerant all-reduce of q8 pseudo-gradients (PROTOCOL.md § allreduce; README.md).
 *
 * One round, seen by a member:
 *  1. READY → the round's coordinator (the smallest live peer id the directory expects). The
 *     coordinator answers, once every expected peer is ready or its ready window closed, with
 *     START(attempt, members): the round's membership, the same list for every member.
 *  2. Reduce-scatter + all-gather in one exchange per part: each member sends its q8 slice of a
 *     part to the part's owner (REDUCE); the owner, once it holds every member's slice, reduces
 *     them in member order (reduce.ts, bad-input rules included) and answers every member with
 *     the same q8 mean (RESULT). Parts are pipelined, `windowParts` in flight.
 *  3. Every member dequantizes the same result bytes → bit-identical means; it reports DONE.
 *
 * Faults: an owner missing a contribution past `partTimeoutMs` answers FAIL naming the missing
 * members; a member whose request to an owner fails asks the other members for that part (the
 * owner may have answered some before dying: FETCH), so either every survivor completes the
 * attempt with the same bytes or none does. A failed attempt is retried with the survivors (the
 * coordinator drops the suspects); an unreachable coordinator is replaced by the next smallest id.
 * A peer that asks to retry a round the coordinator saw completed gets BEHIND and resyncs; so
 * does one asking about a round the directory (the run board) records, at once, even when it
 * was waiting alone as the coordinator of its own view (a late joiner with the smallest id).
 * Nothing is applied from a failed attempt, so no update is counted twice.
 *
 * AllReducePeer plays every role on one protocol handler: the member's side lives here, the
 * coordinator's in coordinator.ts (RoundCoordinator), a part owner's in part-owner.ts (PartOwner).
 */
import { q8Bytes } from '../../gpu/cpu/quant.ts'
import { realClock, type Clock } from '../../util/clock.ts'
import type { RpcTransport, TensorMessage } from '../transport/index.ts'
import { messageBytes } from '../../net/stream/codec.ts'
import {
  ALLREDUCE_PROTOCOL, DEFAULT_COORDINATOR_TIMEOUT_MS, DEFAULT_PART_ELEMENTS, DEFAULT_PART_TIMEOUT_MS, DEFAULT_Q8_BLOCK,
  DEFAULT_READY_WINDOW_MS, DEFAULT_WINDOW_PARTS, MAX_ATTEMPTS, MAX_MEMBERS, MAX_PAYLOAD_BYTES
} from './constants.ts'
import { AllReduceProtocolError, AttemptFailedError, BehindError, NoCoordinatorError, RoundFailedError, TrainArgumentError } from './errors.ts'
import { planParts, type PartPlan } from './plan.ts'
import { NO_QUORUM, RoundCoordinator } from './coordinator.ts'
import { PartOwner } from './part-owner.ts'
import { q8Codec, type PartCodec } from './codec.ts'
import type { Aggregation } from './robust.ts'
import type { ContributionCheck } from './contribution-check.ts'
import { MsgType, decodeMsg, encodeMsg, type AllReduceMsg, type FetchMsg, type ReduceMsg, type ResultMsg, type SnapshotMsg } from './wire.ts'

/** Who takes part in a run, as this peer currently knows it (the CRDT run record, or a test's list). */
export interface RoundDirectory {
  /**
   * Peers expected to be ready for `round`; the coordinator waits for these, and only these can
   * coordinate it (a peer not among them, e.g. the losing founder of a forked run, asks them).
   */
  expected: (round: number) => string[]
  /**
   * Whether the run already records `round` as completed (the board's sync record). A member
   * then skips it and a coordinator answers its READYs BEHIND at once: the peer was left out
   * and resyncs, instead of waiting out a ready window alone. @default never
   */
  completed?: (round: number) => boolean
  /** Calls `onChange` whenever `expected` / `completed` may have changed; returns the unsubscribe. @default none */
  watch?: (onChange: () => void) => () => void
}

export interface AllReduceOptions {
  /** Run id: messages of other runs are refused. */
  run: string
  directory: RoundDirectory
  /** q8 block of contributions and results (with the q8 codec). @default 64 */
  block?: number
  /**
   * The run's pseudo-gradient codec (codec.ts): what REDUCE and RESULT payloads hold. Every
   * member of a run uses the run's (its declaration names it); a part in another codec fails the
   * owner's check and is refused with the reason.
   * @default q8 of `block`
   */
  codec?: PartCodec
  /** Elements per part (pipelining unit). @default 262,144 */
  partElements?: number
  /** Parts in flight per member. @default 4 */
  windowParts?: number
  /** An owner fails a part whose contributions did not all arrive within this, ms. @default 15,000 */
  partTimeoutMs?: number
  /** The coordinator's wait for the expected peers after the first READY, ms. @default 30,000 */
  readyWindowMs?: number
  /** A member's wait for the coordinator's START, ms (must exceed readyWindowMs). @default 60,000 */
  coordinatorTimeoutMs?: number
  /** Attempts of one round before giving up. @default 8 */
  maxAttempts?: number
  /** One line per notable event (failures, refusals). @default nothing */
  log?: (line: string) => void
  /**
   * Times the ready window, part timeouts and a FETCH's wait (tests pass a ManualClock; request
   * timeouts are the transport's own). @default realClock
   */
  clock?: Clock
  /** How owners combine the accepted contributions of a part (robust.ts; the run's declaration). @default the mean */
  aggregation?: Aggregation
}

/** θ_global ‖ outer momentum a peer serves to late joiners (late-join.ts). */
export interface SnapshotState {
  /** Last round applied (-1: the initial state). */
  round: number
  /** f32 LE bytes of θ_global then momentum. */
  data: Uint8Array
  hash: string
  momentumHash: string
  /** Small JSON the joiner needs besides the tensors (e.g. the fragment schedule position). */
  meta: string
}

export interface ReduceOutcome {
  /** (n) the mean of the members' contributions, identical on every member. */
  mean: Float32Array
  /**
   * With the q8 codec, the mean's q8 bytes (every part's RESULT payload in place): `mean` is their
   * dequantization. Absent with top-k (a part's result size depends on its accepted count).
   */
  qMean?: Uint8Array
  /** The round's members (sorted). */
  members: string[]
  /** Attempt key (`coordinator:round:attempt`) and attempt number. */
  key: string
  attempt: number
  /** Peers whose contribution some owner refused, or clipped by the norm rule. */
  rejected: string[]
  clipped: string[]
}

/**
 * Where reduce() writes its outcome, when the caller reuses buffers across rounds (MPI's receive
 * buffer): a fresh 32 MB mean per round costs page faults and GC on the hot path. The outcome's
 * `mean` / `qMean` are then these arrays, valid until the caller passes them again.
 */
export interface ReduceBuffers {
  /** (n) f32: receives the mean. */
  mean?: Float32Array
  /** (q8Bytes(n, block)): receives the mean's q8 bytes. */
  qMean?: Uint8Array
}

interface MemberPart {
  result?: ResultMsg
  settled: boolean
  /** Our request to the owner failed and we are asking the others: we cannot answer FETCH with more than NONE. */
  repairing: boolean
  waiters: Array<() => void>
}

interface MemberAttempt {
  round: number
  parts: Map<number, MemberPart>
}

/** READY failures before a member gives up on a coordinator (the first may be a failed WebRTC set-up). */
const COORDINATOR_STRIKES = 2
/** READY requests per attempt at most (strikes, refusals, quorum waits). */
const COORDINATOR_TRIES_PER_ATTEMPT = 3

/** Rounds of coordinator / owner / member state kept behind the newest (FETCH repairs need the last one). */
const KEEP_ROUNDS = 2

export class AllReducePeer {
  readonly run: string
  readonly block: number
  readonly codec: PartCodec
  readonly partElements: number
  readonly windowParts: number
  readonly partTimeoutMs: number
  readonly readyWindowMs: number
  readonly coordinatorTimeoutMs: number
  readonly maxAttempts: number
  private readonly log: (line: string) => void
  private readonly clock: Clock
  /** Bytes of allreduce messages this peer sent / received over the transport (local calls excluded). */
  bytesSent = 0
  bytesReceived = 0
  /** Where late joiners fetch state from (set by the worker). */
  snapshotProvider: (() => SnapshotState | undefined) | undefined
  /** What this peer's part owner checks contributions with before reducing (contribution-check.ts; set by the session). */
  contributionCheck: ContributionCheck | undefined

  /** This peer's coordinator role (rounds it is the smallest live expected id of). */
  private readonly coordinator: RoundCoordinator
  /** This peer's part-owner role (the parts the plan gives it). */
  private readonly owner: PartOwner
  private readonly memberAttempts = new Map<string, MemberAttempt>()
  /** Peers that failed to answer us recently: skipped as coordinators until they speak again. */
  private readonly dead = new Set<string>()
  private completedRound = -1
  private stopped = false
  private readonly unwatch: (() => void) | undefined

  constructor (readonly transport: RpcTransport, private readonly opts: AllReduceOptions) {
    this.run = opts.run
    this.block = opts.block ?? DEFAULT_Q8_BLOCK
    this.codec = opts.codec ?? q8Codec(this.block)
    if (this.codec.kind === 'q8' && this.codec.align !== this.block) throw new TrainArgumentError(`the q8 codec's block ${this.codec.align} differs from block ${this.block}`)
    // The robust rules (robust.ts) run on q8 parts only; a sparse mean of the union is a mean.
    if (this.codec.kind !== 'q8' && opts.aggregation !== undefined && opts.aggregation.kind !== 'mean') throw new TrainArgumentError(`aggregation ${opts.aggregation.kind} needs the q8 codec, the run uses ${this.codec.id}`)
    this.partElements = opts.partElements ?? DEFAULT_PART_ELEMENTS
    this.windowParts = opts.windowParts ?? DEFAULT_WINDOW_PARTS
    this.partTimeoutMs = opts.partTimeoutMs ?? DEFAULT_PART_TIMEOUT_MS
    this.readyWindowMs = opts.readyWindowMs ?? DEFAULT_READY_WINDOW_MS
    this.coordinatorTimeoutMs = opts.coordinatorTimeoutMs ?? DEFAULT_COORDINATOR_TIMEOUT_MS
    this.maxAttempts = opts.maxAttempts ?? MAX_ATTEMPTS
    this.log = opts.log ?? (() => {})
    this.clock = opts.clock ?? realClock
    if (!(this.coordinatorTimeoutMs > this.readyWindowMs)) throw new TrainArgumentError(`coordinatorTimeoutMs (${this.coordinatorTimeoutMs}) must exceed readyWindowMs (${this.readyWindowMs})`)
    if (!(this.windowParts >= 1)) throw new TrainArgumentError(`windowParts must be ≥ 1, got ${this.windowParts}`)
    planParts(this.codec.align, ['x'], this.codec.align, this.partElements) // validates block / part size
    const most = Math.max(this.codec.bytes(this.partElements), this.codec.resultBytes(this.partElements, MAX_MEMBERS))
    if (most > MAX_PAYLOAD_BYTES) throw new TrainArgumentError(`partElements ${this.partElements}: a part in ${this.codec.id} (up to ${most} bytes) exceeds the ${MAX_PAYLOAD_BYTES}-byte message payload`)
    this.coordinator = new RoundCoordinator({ self: transport.self, run: this.run, directory: opts.directory, readyWindowMs: this.readyWindowMs, dead: this.dead, log: this.log, clock: this.clock })
    this.owner = new PartOwner({ self: transport.self, block: this.block, codec: this.codec, partElements: this.partElements, partTimeoutMs: this.partTimeoutMs, log: this.log, clock: this.clock, aggregation: opts.aggregation, check: () => this.contributionCheck })
    this.unwatch = opts.directory.watch?.(() => { if (!this.stopped) this.coordinator.onDirectoryChange() })
    transport.handle(ALLREDUCE_PROTOCOL, async (from, body) => {
      this.bytesReceived += messageBytes(body)
      const reply = await this.dispatch(from, body)
      this.bytesSent += messageBytes(reply)
      return reply
    })
  }

  get self (): string { return this.transport.self }

  /** Stops serving; pending long-polls are answered FAIL. */
  stop (): void {
    this.stopped = true
    this.unwatch?.()
    this.transport.unhandle(ALLREDUCE_PROTOCOL)
    this.coordinator.stop()
    this.owner.stop()
    this.memberAttempts.clear()
  }

  // ------------------------------------------------------------ member

  /**
   * All-reduce mean of this peer's q8 contribution `q` (n elements in blocks of `block`) with the
   * round's other members, written into `into`'s buffers when given. `norm`: the L2 norm of q's
   * dequantization (ErrorFeedback.compress has it; computed here when absent), sent with every
   * part for the owners' norm rule. Throws BehindError (the
   * round completed without us: resync), RoundFailedError or NoCoordinatorError.
   */
  async reduce (round: number, q: Uint8Array, n: number, into: ReduceBuffers = {}, norm?: number): Promise<ReduceOutcome> {
    if (this.stopped) throw new TrainArgumentError('reduce on a stopped AllReducePeer')
    if (q.byteLength !== this.codec.bytes(n)) throw new TrainArgumentError(`reduce: ${q.byteLength} bytes is not ${this.codec.id} of ${n} elements`)
    if (into.mean !== undefined && into.mean.length !== n) throw new TrainArgumentError(`reduce: the mean buffer holds ${into.mean.length} elements, not ${n}`)
    if (into.qMean !== undefined && (this.codec.kind !== 'q8' || into.qMean.byteLength !== q.byteLength)) throw new TrainArgumentError(`reduce: the qMean buffer holds ${into.qMean.byteLength} bytes, not ${q.byteLength}`)
    if (norm !== undefined && !(Number.isFinite(norm) && norm >= 0)) throw new TrainArgumentError(`reduce: norm must be finite and ≥ 0, got ${norm}`)
    // The whole contribution's norm, sent with every part: owners compare peers by it (reduce.ts).
    const claim = norm ?? this.codec.norm(q, n)
    let failedAttempt = -1
    let suspects: string[] = []
    const strikes = new Map<string, number>()
    let attempts = 0
    for (let i = 0; i < COORDINATOR_TRIES_PER_ATTEMPT * this.maxAttempts && attempts < this.maxAttempts; i++) {
      // Already recorded: the round went on without us (we joined or healed a fork as it ran).
      if (this.opts.directory.completed?.(round) === true) throw new BehindError(round, round)
      const coord = this.coordinatorFor(round)
      if (coord === undefined) throw new NoCoordinatorError(`round ${round}: every expected peer is unreachable`)
      let reply: AllReduceMsg
      try {
        reply = await this.rpc(coord, { type: MsgType.READY, run: this.run, round, failedAttempt, suspects }, this.coordinatorTimeoutMs, false)
      } catch (e) {
        // Connection set-up fails now and then (WebRTC under load): one more try before moving
        // on, since a member that moves to another coordinator splits the round.
        const k = (strikes.get(coord) ?? 0) + 1
        strikes.set(coord, k)
        this.log(`round ${round}: coordinator ${coord} did not answer READY (${(e as Error).message})${k >= COORDINATOR_STRIKES ? '; trying the next' : '; retrying'}`)
        if (k >= COORDINATOR_STRIKES) this.dead.add(coord)
        continue
      }
      if (reply.type === MsgType.BEHIND) throw new BehindError(round, reply.completed)
      if (reply.type === MsgType.FAIL) {
        this.log(`round ${round}: coordinator ${coord} refused: ${reply.reason}`)
        if (!reply.reason.startsWith(NO_QUORUM)) this.dead.add(coord)
        continue
      }
      attempts++
      if (reply.type !== MsgType.START || reply.round !== round || !reply.members.includes(this.self)) throw new AllReduceProtocolError(`coordinator ${coord} answered READY with message type ${reply.type}`)
      try {
        const out = await this.runAttempt(round, reply.key, reply.attempt, reply.members, q, n, claim, into)
        void this.sendDone(coord, round, reply.key)
        this.completedRound = Math.max(this.completedRound, round)
        this.prune(round)
        return out
      } catch (e) {
        if (!(e instanceof AttemptFailedError)) throw e
        this.log(`round ${round} attempt ${reply.key} failed: ${e.message}`)
        failedAttempt = reply.attempt
        // Suspects are reported, not excluded: a cut link makes live peers look dead from one
        // side. The coordinator waits for the last members again and leaves out only those that
        // do not come back within its ready window (or that it cannot reach itself).
        suspects = [...e.suspects].filter(s => s !== this.self).sort()
      }
    }
    throw new RoundFailedError(`round ${round} did not complete in ${this.maxAttempts} attempts`)
  }

  /**
   * Smallest id among the peers expected for `round` that has not failed us. Self is a candidate
   * only when expected too: a peer outside the round's membership (the losing founder of a fork,
   * whose entry the board ignores) that took itself as coordinator would wait alone while the
   * expected peers run the round elsewhere.
   */
  private coordinatorFor (round: number): string | undefined {
    return this.opts.directory.expected(round).filter(p => !this.dead.has(p)).sort()[0]
  }

  private async runAttempt (round: number, key: string, attempt: number, members: string[], q: Uint8Array, n: number, norm: number, into: ReduceBuffers): Promise<ReduceOutcome> {
    if (members.length > MAX_MEMBERS) throw new AllReduceProtocolError(`${members.length} members exceed ${MAX_MEMBERS}`)
    const plan = planParts(n, members, this.codec.align, this.partElements)
    const att: MemberAttempt = { round, parts: new Map(plan.map(p => [p.id, { settled: false, repairing: false, waiters: [] }])) }
    this.memberAttempts.set(key, att)
    const suspects = new Set<string>()
    const rejected = new Set<string>()
    const clipped = new Set<string>()
    let failed = 0
    let next = 0
    // Each part is dequantized as its result lands, overlapping the parts still in flight; the
    // result bytes are gathered into the whole vector's q8 (`qMean`: the mean is their dequantization).
    const mean = into.mean ?? new Float32Array(n)
    const qMean = this.codec.kind === 'q8' ? (into.qMean ?? new Uint8Array(q8Bytes(n, this.block))) : undefined
    const settle = (id: number, result: ResultMsg | undefined): void => {
      const mp = att.parts.get(id)!
      mp.result = result
      mp.settled = true
      for (const w of mp.waiters.splice(0)) w()
      if (result === undefined) { failed++; return }
      for (const r of result.rejected) rejected.add(r)
      for (const c of result.clipped) clipped.add(c)
      const p = plan[id]
      this.codec.decodeResultInto(result.payload, p.end - p.start, result.accepted, mean, p.start)
      qMean?.set(result.payload, (p.start / this.block) * (4 + this.block))
    }
    const doPart = async (p: PartPlan): Promise<void> => {
      const len = p.end - p.start
      const msg: ReduceMsg = { type: MsgType.REDUCE, run: this.run, round, key, members, part: p.id, n, partElements: this.partElements, norm, payload: this.codec.slice(q, p.start, p.end) }
      let reply: AllReduceMsg | undefined
      try {
        reply = await this.rpc(p.owner, msg, 2 * this.partTimeoutMs)
      } catch (e) {
        this.log(`round ${round} part ${p.id}: owner ${p.owner} failed (${(e as Error).message}); asking the other members`)
        suspects.add(p.owner)
      }
      if (reply?.type === MsgType.RESULT && this.validResult(reply, p.id, len)) { settle(p.id, reply); return }
      if (reply?.type === MsgType.FAIL) { // the owner is alive and says the part has no result
        if (failed === 0) this.log(`round ${round} part ${p.id}: owner ${p.owner} answered FAIL: ${reply.reason}`) // the first is the cause; the rest follow from it
        for (const s of reply.suspects) suspects.add(s)
        settle(p.id, undefined)
        return
      }
      if (reply !== undefined) suspects.add(p.owner) // a malformed answer: the owner is faulty
      const mp = att.parts.get(p.id)!
      mp.repairing = true
      for (const w of mp.waiters.splice(0)) w() // members asking us: we hold nothing (no circular wait)
      settle(p.id, await this.repair(key, p, len, members))
    }
    const lane = async (): Promise<void> => {
      while (next < plan.length && failed === 0) await doPart(plan[next++])
    }
    await Promise.all(Array.from({ length: Math.min(this.windowParts, plan.length) }, lane))
    if (failed > 0 || next < plan.length) {
      for (const p of plan) if (!att.parts.get(p.id)!.settled) settle(p.id, undefined)
      throw new AttemptFailedError(`${failed} of ${plan.length} parts have no result`, [...suspects])
    }
    return { mean, qMean, members, key, attempt, rejected: [...rejected].sort(), clipped: [...clipped].sort() }
  }

  private validResult (r: ResultMsg, id: number, len: number): boolean {
    if (r.part !== id || r.n !== len) return false
    const why = this.codec.checkResult(r.payload, len, r.accepted)
    if (why !== undefined) this.log(`part ${id}: malformed RESULT: ${why}`)
    return why === undefined
  }

  /** Asks every other member for a part whose owner failed us; the first valid RESULT wins. */
  private async repair (key: string, p: PartPlan, len: number, members: string[]): Promise<ResultMsg | undefined> {
    const others = members.filter(m => m !== this.self && m !== p.owner)
    const answers = others.map(async (m) => {
      try {
        const r = await this.rpc(m, { type: MsgType.FETCH, run: this.run, key, part: p.id }, 3 * this.partTimeoutMs)
        if (r.type === MsgType.RESULT && this.validResult(r, p.id, len)) return r
      } catch {
        // An unreachable or refusing member is one holder fewer: the others may still answer.
      }
      return undefined
    })
    return await new Promise<ResultMsg | undefined>((resolve) => {
      let left = answers.length
      if (left === 0) { resolve(undefined); return }
      for (const a of answers) {
        void a.then((r) => {
          left--
          if (r !== undefined) resolve(r)
          else if (left === 0) resolve(undefined)
        })
      }
    })
  }

  /**
   * Reports completion, so that the coordinator answers later READYs for this round BEHIND. (It
   * used to carry a sha256 of the mean's q8 that nothing read: a pass over the whole vector on
   * every member inside the round; each member records its θ_global hash on the run board.)
   */
  private async sendDone (coord: string, round: number, key: string): Promise<void> {
    try {
      await this.rpc(coord, { type: MsgType.DONE, run: this.run, round, key }, this.partTimeoutMs)
    } catch (e) {
      this.log(`round ${round}: DONE to ${coord} failed: ${(e as Error).message}`)
    }
  }

  private prune (round: number): void {
    for (const [k, a] of this.memberAttempts) if (a.round < round - KEEP_ROUNDS) this.memberAttempts.delete(k)
    this.coordinator.prune(round, KEEP_ROUNDS)
    this.owner.prune(round, KEEP_ROUNDS)
  }

  // ------------------------------------------------------------ transport

  /** One request to `peer` (a local call when it is this peer); a failure marks the peer dead unless `markDead` is false. */
  async rpc (peer: string, msg: AllReduceMsg, timeoutMs: number, markDead = true): Promise<AllReduceMsg> {
    if (peer === this.self) return await this.dispatchMsg(this.self, msg) // our own part: no codec, no copies
    const body = encodeMsg(msg)
    this.bytesSent += messageBytes(body)
    let reply: TensorMessage
    try {
      reply = await this.transport.request(peer, ALLREDUCE_PROTOCOL, body, { timeoutMs })
    } catch (e) {
      if (markDead) this.dead.add(peer) // seen failing by us: not waited for, not picked as coordinator, until it speaks again
      throw e
    }
    this.bytesReceived += messageBytes(reply)
    this.dead.delete(peer)
    return decodeMsg(reply)
  }

  private async dispatch (from: string, body: TensorMessage): Promise<TensorMessage> {
    if (from !== this.self) this.dead.delete(from)
    let m: AllReduceMsg
    try {
      m = decodeMsg(body)
    } catch (e) {
      this.log(`allreduce: bad message from ${from}: ${(e as Error).message}`)
      return encodeMsg({ type: MsgType.FAIL, reason: `malformed: ${(e as Error).message}`, suspects: [] })
    }
    const reply = await this.dispatchMsg(from, m)
    return this.owner.encoded(reply) ?? encodeMsg(reply)
  }

  /** A decoded request → its reply (messages to ourselves come here directly). */
  private async dispatchMsg (from: string, m: AllReduceMsg): Promise<AllReduceMsg> {
    if (this.stopped) return { type: MsgType.FAIL, reason: 'stopped', suspects: [this.self] }
    if ('run' in m && m.run !== this.run) return { type: MsgType.FAIL, reason: `this peer trains run ${this.run}, not ${m.run}`, suspects: [] }
    switch (m.type) {
      case MsgType.READY: return await this.coordinator.onReady(from, m)
      case MsgType.DONE: return this.coordinator.onDone(m)
      case MsgType.REDUCE: return await this.owner.onReduce(from, m)
      case MsgType.FETCH: return await this.onFetch(m)
      case MsgType.SNAPSHOT: return this.onSnapshot(m)
      default: return { type: MsgType.FAIL, reason: `message type ${m.type} is a reply, not a request`, suspects: [] }
    }
  }

  // ------------------------------------------------------------ repair and snapshots

  private async onFetch (m: FetchMsg): Promise<AllReduceMsg> {
    const mp = this.memberAttempts.get(m.key)?.parts.get(m.part)
    if (mp === undefined) return { type: MsgType.NONE }
    if (!mp.settled && !mp.repairing) { // our request to the owner may still bring the result
      await new Promise<void>((resolve) => {
        const t = this.clock.setTimeout(resolve, 3 * this.partTimeoutMs)
        mp.waiters.push(() => { this.clock.clearTimeout(t); resolve() })
      })
    }
    return mp.settled ? (mp.result ?? { type: MsgType.NONE }) : { type: MsgType.NONE }
  }

  private onSnapshot (m: SnapshotMsg): AllReduceMsg {
    const s = this.snapshotProvider?.()
    if (s === undefined) return { type: MsgType.FAIL, reason: 'this peer holds no committed state yet', suspects: [] }
    if (m.offset > s.data.byteLength) return { type: MsgType.FAIL, reason: `offset ${m.offset} beyond the state's ${s.data.byteLength} bytes`, suspects: [] }
    return {
      type: MsgType.STATE, run: this.run, round: s.round, hash: s.hash, momentumHash: s.momentumHash, total: s.data.byteLength,
      offset: m.offset, meta: s.meta, payload: s.data.slice(m.offset, Math.min(s.data.byteLength, m.offset + m.length))
    }
  }
}
