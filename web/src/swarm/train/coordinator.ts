/**
 * The round coordinator's side of the all-reduce (PROTOCOL.md § allreduce; allreduce.ts has the
 * whole round). The smallest live expected peer collects the round's READYs as long-polls and
 * answers them all at once: START(attempt, members) when every expected peer is waiting or its
 * ready window closed with a quorum, FAIL below the quorum, BEHIND once the round completed
 * (a member's DONE, or the run board's record).
 */
import type { Clock, TimerHandle } from '../../util/clock.ts'
import type { RoundDirectory } from './allreduce.ts'
import { MAX_MEMBERS } from './constants.ts'
import { MsgType, type AllReduceMsg, type DoneMsg, type ReadyMsg } from './wire.ts'

/** Reason prefix of the coordinator's refusal when too few peers are ready: retry, it is not dead. */
export const NO_QUORUM = 'no quorum'

export interface CoordinatorOptions {
  /** This peer's id: the attempt keys' prefix, and always counted among the expected peers. */
  self: string
  run: string
  directory: RoundDirectory
  /** The wait for the expected peers after the first READY, ms. */
  readyWindowMs: number
  /** Peers that failed to answer this peer recently (the AllReducePeer's set, read live): not waited for. */
  dead: ReadonlySet<string>
  log: (line: string) => void
  /** Times the ready window. */
  clock: Clock
}

interface CoordRound {
  nextAttempt: number
  waiting: Map<string, (m: AllReduceMsg) => void>
  timer?: TimerHandle
  lastMembers?: string[]
  completed?: string
}

/** Per-round coordinator state of one AllReducePeer: READY long-polls, ready window, quorum, START / BEHIND. */
export class RoundCoordinator {
  private readonly rounds = new Map<number, CoordRound>()

  constructor (private readonly opts: CoordinatorOptions) {}

  /** Answers every pending READY FAIL and forgets all rounds. */
  stop (): void {
    for (const cr of this.rounds.values()) {
      this.opts.clock.clearTimeout(cr.timer)
      for (const w of cr.waiting.values()) w({ type: MsgType.FAIL, reason: 'coordinator stopped', suspects: [this.opts.self] })
    }
    this.rounds.clear()
  }

  /** Forgets rounds more than `keep` behind `round`. */
  prune (round: number, keep: number): void {
    for (const [r] of this.rounds) if (r < round - keep) this.rounds.delete(r)
  }

  private coordRound (round: number): CoordRound {
    let cr = this.rounds.get(round)
    if (cr === undefined) {
      cr = { nextAttempt: 0, waiting: new Map() }
      this.rounds.set(round, cr)
    }
    return cr
  }

  async onReady (from: string, m: ReadyMsg): Promise<AllReduceMsg> {
    const cr = this.coordRound(m.round)
    if (cr.completed === undefined && this.opts.directory.completed?.(m.round) === true) cr.completed = 'recorded'
    if (cr.completed !== undefined || m.round < this.latestCompletedSeen()) return { type: MsgType.BEHIND, run: this.opts.run, round: m.round, completed: Math.max(m.round, this.latestCompletedSeen()) }
    if (m.suspects.length > 0) this.opts.log(`coordinator: ${from} retries round ${m.round} after attempt ${m.failedAttempt}, suspecting ${m.suspects.join(', ')}`)
    if (m.failedAttempt >= cr.nextAttempt) cr.nextAttempt = m.failedAttempt + 1
    return await new Promise<AllReduceMsg>((resolve) => {
      cr.waiting.get(from)?.({ type: MsgType.FAIL, reason: 'superseded by a newer READY', suspects: [] })
      cr.waiting.set(from, resolve)
      if (cr.timer === undefined) cr.timer = this.opts.clock.setTimeout(() => { this.startAttempt(m.round) }, this.opts.readyWindowMs)
      this.maybeStart(m.round)
    })
  }

  /**
   * The board changed: a round we coordinate and that peers wait on may have been recorded by
   * others (they ran it under another coordinator: we joined, or they saw us, too late). Its
   * waiters are left out; BEHIND now sends them to the late-join path instead of a ready window.
   */
  onDirectoryChange (): void {
    for (const [round, cr] of this.rounds) {
      if (cr.completed !== undefined || cr.waiting.size === 0 || this.opts.directory.completed?.(round) !== true) continue
      this.opts.log(`coordinator: round ${round} is recorded without the ${cr.waiting.size} peer(s) waiting here: BEHIND`)
      this.finishRound(round, 'recorded')
    }
  }

  private latestCompletedSeen (): number {
    let r = -1
    for (const [round, cr] of this.rounds) if (cr.completed !== undefined && round > r) r = round
    return r
  }

  /** The peers we wait for in `round`: the last attempt's members, or the directory's, less those seen failing. */
  private expected (round: number, cr: CoordRound): string[] {
    return (cr.lastMembers ?? this.opts.directory.expected(round)).filter(p => p === this.opts.self || !this.opts.dead.has(p))
  }

  /** Starts the attempt as soon as every peer we expect is waiting. */
  private maybeStart (round: number): void {
    const cr = this.coordRound(round)
    if (this.expected(round, cr).every(p => cr.waiting.has(p))) this.startAttempt(round)
  }

  private startAttempt (round: number): void {
    const cr = this.coordRound(round)
    if (cr.timer !== undefined) { this.opts.clock.clearTimeout(cr.timer); cr.timer = undefined }
    if (cr.waiting.size === 0) return
    // Quorum: a majority of the peers we expect and have not seen fail. A coordinator cut off
    // from the others must not run the round alone while they run it elsewhere (split brain).
    const expected = new Set(this.expected(round, cr))
    for (const p of cr.waiting.keys()) expected.add(p)
    const quorum = Math.floor(expected.size / 2) + 1
    if (cr.waiting.size < quorum) {
      this.opts.log(`coordinator: round ${round}: ${cr.waiting.size} of ${expected.size} expected peers ready, below the quorum ${quorum}`)
      for (const w of cr.waiting.values()) w({ type: MsgType.FAIL, reason: `${NO_QUORUM}: ${cr.waiting.size} of ${expected.size} expected peers ready`, suspects: [] })
      cr.waiting.clear()
      return
    }
    const members = [...cr.waiting.keys()].sort().slice(0, MAX_MEMBERS)
    const attempt = cr.nextAttempt++
    const key = `${this.opts.self}:${round}:${attempt}`
    cr.lastMembers = members
    this.opts.log(`coordinator: round ${round} attempt ${attempt} starts with ${members.length} members`)
    for (const [peer, w] of cr.waiting) {
      if (members.includes(peer)) w({ type: MsgType.START, run: this.opts.run, round, attempt, key, members })
      else w({ type: MsgType.FAIL, reason: `more than ${MAX_MEMBERS} members`, suspects: [] })
    }
    cr.waiting.clear()
  }

  onDone (m: DoneMsg): AllReduceMsg {
    this.finishRound(m.round, m.key)
    return { type: MsgType.ACK }
  }

  /** Marks `round` completed (by attempt `key`, or 'recorded' on the board); whoever still waits is BEHIND. */
  private finishRound (round: number, key: string): void {
    const cr = this.coordRound(round)
    if (cr.completed !== undefined) return
    cr.completed = key
    if (cr.timer !== undefined) { this.opts.clock.clearTimeout(cr.timer); cr.timer = undefined }
    for (const w of cr.waiting.values()) w({ type: MsgType.BEHIND, run: this.opts.run, round, completed: round })
    cr.waiting.clear()
  }
}
