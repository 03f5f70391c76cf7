/**
 * A part owner's side of the all-reduce (PROTOCOL.md § allreduce; allreduce.ts has the whole
 * round): it collects every member's REDUCE slice of a part it owns, reduces them in member order
 * (reduce.ts, bad-input rules included) and answers every member the same RESULT, or FAIL naming
 * the members whose slice did not come within the part timeout.
 */
import { q8Bytes } from '../../gpu/cpu/quant.ts'
import type { Clock, TimerHandle } from '../../util/clock.ts'
import { planParts, type PartPlan } from './plan.ts'
import { reducePartInto } from './reduce.ts'
import type { Aggregation } from './robust.ts'
import type { ContributionCheck } from './contribution-check.ts'
import type { PartCodec } from './codec.ts'
import { MsgType, allocMsg, type AllReduceMsg, type FailMsg, type ReduceMsg, type ResultMsg } from './wire.ts'
import type { TensorMessage } from '../transport/index.ts'

/** Part plans an owner keeps (one per attempt and vector length; a few rounds' worth). */
const PLAN_CACHE = 16

export interface PartOwnerOptions {
  /** This peer's id: it reduces the parts the plan gives it. */
  self: string
  /** q8 block of contributions and results. */
  block: number
  /**
   * The run's codec (codec.ts): top-k parts are reduced by it, q8 parts by reducePartInto here. A
   * sender using another codec fails its check (size or format) and is refused by name.
   */
  codec: PartCodec
  /** Elements per part: a sender cutting parts otherwise is refused. */
  partElements: number
  /** A part whose contributions did not all arrive within this fails, ms. */
  partTimeoutMs: number
  log: (line: string) => void
  /** Times the part timeout. */
  clock: Clock
  /** How the accepted contributions are combined (robust.ts). @default the mean */
  aggregation?: Aggregation
  /** The contribution check to run before reducing (read per part: the worker sets it after construction). @default none */
  check?: () => ContributionCheck | undefined
}

interface OwnerPart {
  members: string[]
  round: number
  n: number
  /** Elements [start, start + len) of the vector. */
  start: number
  len: number
  /** null: refused before reduction (wrong run, mismatched plan). */
  contributions: Map<string, Uint8Array | null>
  /** Each sender's claimed norm of its whole contribution (REDUCE's `norm`). */
  norms: Map<string, number>
  waiters: Array<(m: AllReduceMsg) => void>
  timer?: TimerHandle
  /** Set once every contribution is in and the reduction (with its check) started: it runs once. */
  finishing?: boolean
  done?: ResultMsg | FailMsg
}

/** The parts one AllReducePeer owns, keyed `attempt key#part`: contributions, reduction, RESULT / FAIL. */
export class PartOwner {
  private readonly parts = new Map<string, OwnerPart>()
  /** Replies already encoded (an owner's RESULT is built in its message body): sent as they are. */
  private readonly bodies = new WeakMap<AllReduceMsg, TensorMessage>()
  /** Part plans of recent attempts as an owner sees them (every REDUCE of an attempt needs the same plan). */
  private readonly plans = new Map<string, PartPlan[]>()
  /** An owner's reduction lands here before its RESULT is built (reused: owners reduce every round). */
  private scratch = new Uint8Array(0)

  constructor (private readonly opts: PartOwnerOptions) {}

  /** Answers every pending REDUCE FAIL and forgets all parts. */
  stop (): void {
    for (const op of this.parts.values()) {
      this.opts.clock.clearTimeout(op.timer)
      op.done ??= { type: MsgType.FAIL, reason: 'owner stopped', suspects: [this.opts.self] }
      for (const w of op.waiters.splice(0)) w(op.done)
    }
    this.parts.clear()
  }

  /** Forgets the settled parts of rounds more than `keep` behind `round`. */
  prune (round: number, keep: number): void {
    for (const [k, op] of this.parts) {
      const r = Number(k.split(':')[1])
      if (op.done !== undefined && r < round - keep) this.parts.delete(k)
    }
  }

  /** The encoded body of `reply` when this owner built it (a RESULT), else undefined. */
  encoded (reply: AllReduceMsg): TensorMessage | undefined {
    return this.bodies.get(reply)
  }

  async onReduce (from: string, m: ReduceMsg): Promise<AllReduceMsg> {
    if (!m.members.includes(from)) return { type: MsgType.FAIL, reason: `sender ${from} is not a member of attempt ${m.key}`, suspects: [] }
    if (m.partElements !== this.opts.partElements) return { type: MsgType.FAIL, reason: `sender ${from} cuts parts of ${m.partElements} elements, this peer of ${this.opts.partElements}: the run's peers must share one part size`, suspects: [] }
    const plan = this.planFor(m.key, m.n, m.members)
    const p = plan[m.part]
    if (p === undefined || p.owner !== this.opts.self) return { type: MsgType.FAIL, reason: `this peer does not own part ${m.part} of attempt ${m.key}`, suspects: [] }
    const id = `${m.key}#${m.part}`
    let op = this.parts.get(id)
    if (op === undefined) {
      op = { members: m.members, round: m.round, n: m.n, start: p.start, len: p.end - p.start, contributions: new Map(), norms: new Map(), waiters: [] }
      this.parts.set(id, op)
    }
    if (op.done !== undefined) return op.done
    const sameAttempt = op.n === m.n && op.members.join('\n') === m.members.join('\n')
    if (!op.contributions.has(from)) { op.contributions.set(from, sameAttempt ? m.payload : null); op.norms.set(from, m.norm) }
    const part = op
    return await new Promise<AllReduceMsg>((resolve) => {
      part.waiters.push(resolve)
      if (part.finishing === true) return // the waiter gets the result being computed
      if (part.contributions.size === part.members.length) void this.finishPart(part, m.part)
      else if (part.timer === undefined) part.timer = this.opts.clock.setTimeout(() => { this.failPart(part) }, this.opts.partTimeoutMs)
    })
  }

  /** The part plan of attempt `key` for (n, members), cached: planning per REDUCE would redo it for every part. */
  private planFor (key: string, n: number, members: string[]): PartPlan[] {
    const id = `${key}#${n}#${members.join(' ')}`
    let plan = this.plans.get(id)
    if (plan === undefined) {
      plan = planParts(n, members, this.opts.codec.align, this.opts.partElements)
      if (this.plans.size >= PLAN_CACHE) this.plans.delete(this.plans.keys().next().value!)
      this.plans.set(id, plan)
    }
    return plan
  }

  private async finishPart (op: OwnerPart, part: number): Promise<void> {
    op.finishing = true
    this.opts.clock.clearTimeout(op.timer)
    op.timer = undefined
    const excluded = await this.checkPart(op, part)
    if (op.done !== undefined) return // stopped while checking
    // Reduced into a scratch first: who was refused or clipped (the RESULT's header) is known
    // only after the pass; then one copy into the body, encoded once whatever the number of
    // members it goes to (the owner's own lane reads the payload view).
    const contribs = op.members.map(peer => ({ peer, q: op.contributions.get(peer) ?? undefined, norm: op.norms.get(peer), excluded: excluded.get(peer) }))
    const sparse = this.opts.codec.kind === 'q8' ? undefined : this.opts.codec.reduce(contribs, op.len, op.n)
    const bytes = sparse?.bytes.byteLength ?? q8Bytes(op.len, this.opts.block)
    if (this.scratch.byteLength < bytes) this.scratch = new Uint8Array(bytes)
    const q = sparse?.bytes ?? this.scratch.subarray(0, bytes)
    const report = sparse?.report ?? reducePartInto(contribs, op.len, this.opts.block, q, undefined, op.n, this.opts.aggregation)
    for (const x of report.rejected) this.opts.log(`part ${part}: refused ${x.peer}: ${x.reason}`)
    for (const x of report.clipped) this.opts.log(`part ${part}: clipped ${x.peer}: norm ${x.norm.toExponential(3)} → ${x.cap.toExponential(3)}`)
    const head: ResultMsg = {
      type: MsgType.RESULT, part, n: op.len, accepted: report.accepted.length,
      rejected: report.rejected.map(x => x.peer), clipped: report.clipped.map(x => x.peer), payload: new Uint8Array(0)
    }
    const { body, payload } = allocMsg(head, bytes)
    payload.set(q)
    op.done = { ...head, payload }
    this.bodies.set(op.done, body)
    op.contributions.clear(); op.norms.clear()
    for (const w of op.waiters.splice(0)) w(op.done)
  }

  /**
   * The contribution check's verdicts on the part's well-formed contributions (peer → reason).
   * A check that throws excludes nobody (logged): it is a safeguard, never a reason to fail the round.
   */
  private async checkPart (op: OwnerPart, part: number): Promise<Map<string, string>> {
    const check = this.opts.check?.()
    if (check === undefined) return new Map()
    const peers: string[] = []
    const deltas: Float32Array[] = []
    for (const peer of op.members) {
      const q = op.contributions.get(peer)
      if (q == null || this.opts.codec.check(q, op.len) !== undefined) continue
      const x = new Float32Array(op.len)
      this.opts.codec.decodeInto(q, op.len, x)
      peers.push(peer); deltas.push(x)
    }
    try {
      const out = await check.check({ round: op.round, n: op.n, start: op.start, end: op.start + op.len, peers, deltas })
      for (const [peer, why] of out) this.opts.log(`part ${part}: excluded ${peer}: ${why}`)
      return out
    } catch (e) {
      this.opts.log(`part ${part}: contribution check failed, nobody excluded: ${(e as Error).message}`)
      return new Map()
    }
  }

  private failPart (op: OwnerPart): void {
    const missing = op.members.filter(p => !op.contributions.has(p))
    op.done = { type: MsgType.FAIL, reason: `no contribution from ${missing.join(', ')} within ${this.opts.partTimeoutMs} ms`, suspects: missing }
    op.contributions.clear(); op.norms.clear()
    for (const w of op.waiters.splice(0)) w(op.done)
  }
}
