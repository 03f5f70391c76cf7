/**
 * Spot-check verification of a session's servers. Each hop keeps the inputs it was sent and the
 * outputs it returned (hop-rpc.ts `record`). After a step, each hop is checked with probability
 * `rate` (seeded; 1 in strict mode): a second opinion — a chain of other servers over the same
 * blocks, opened at the hop's first check by replaying its inputs from the session start (the
 * failover replay, so its KV cache equals the hop's), and fed only the new positions at later
 * checks — recomputes every position since the last check, and the rows are compared with the
 * calibrated tolerance (verify-compare.ts). A server therefore cannot lie on an unchecked step
 * and get away with it: the next check of its hop covers that step too.
 *
 * On a mismatch at position p, a third opinion decides (another chain avoiding both, replaying
 * positions [0, p], or the client's own blocks when it holds them): the hop's server is the liar
 * when it disagrees with the third; then it is banned (LIAR_BAN_MS, ban-list.ts), the accusation
 * goes to `onEvidence` (signed into the swarm doc by swarm/evidence.ts), and the session is
 * rebuilt from position p (session.ts), whose caller re-sends its inputs from there — outputs
 * before p were checked. A second opinion that disagrees with the third is the liar instead
 * (banned when it is one server); without a third opinion nobody is accused.
 *
 * Checks never fail the generation: a verifier that errs is banned like any failed server and
 * the check is counted as skipped.
 */
import { hasErrorCode } from '../../util/errors.ts'
import { compareCommitment, commitTolerance, MAX_COMMIT_K, type Commitment } from '../commitment.ts'
import { MAX_STEP_TOKENS, RECORD_REFRESH_MS, VERIFY_RATE, VERIFY_STRIKES } from '../constants.ts'
import { NoRouteError, SwarmArgumentError } from '../errors.ts'
import type { Accusation } from '../evidence.ts'
import type { Exhibit } from '../evidence-check.ts'
import type { SpanBackend } from '../server/backend.ts'
import { Rng } from '../../util/rng.ts'
import type { Failover } from './failover.ts'
import { isClientBug, record, type Hop, type HopRpc } from './hop-rpc.ts'
import { forwardLocal } from './recompute.ts'
import { compareRows, countMismatches, digestF32, rowDeviation, VERIFY_TOLERANCE } from './verify-compare.ts'

export interface VerifyOptions {
  /** Probability that a hop is checked after a step; 1 checks every hop after every step (strict). @default VERIFY_RATE */
  rate?: number
  /**
   * Instead of sampling: check a hop once it has `window` positions nobody checked, all of them
   * in one batched step of the second opinion (prefill-like, far cheaper per position than a
   * decode step). With the final check (InferenceSession.settle) every position is compared, so
   * a server that lies on any step is found however rarely it lies. @default off (sampling at `rate`)
   */
  window?: number
  /** Seed of the sampling, so a run's checks are reproducible. @default 1 */
  seed?: number
  /** Largest relative L2 distance of an honest position. @default VERIFY_TOLERANCE */
  tolerance?: number
  /**
   * Outvoted mismatches (each rewound, so the completion stays right) before a server is banned
   * and accused. One is not enough by default: honest servers can disagree beyond the tolerance
   * at a near-tied MoE expert choice (bench:verify measured 1 such position in 10,017, f32 against
   * an f16 KV cache on tiny-mixtral). @default VERIFY_STRIKES
   */
  strikes?: number
  /**
   * At every check of a hop after its first, ask the second opinion's last server for a
   * commitment to its rows — the `commit` largest-magnitude channels per position, quantized
   * (swarm/commitment.ts) — instead of the rows themselves, and compare the route server's rows
   * at those channels. A mismatch is re-checked on full rows (a fresh second opinion) before
   * anyone is judged. Integer in [1, MAX_COMMIT_K]. @default off (full rows)
   */
  commit?: number
  /** Blocks this client holds itself: a third opinion computed here, for hops within them. @default none */
  local?: SpanBackend
  /** Each accusation and the rows behind it, for the swarm doc (swarm/evidence.ts EvidenceBoard.accuse). @default nothing */
  onEvidence?: (a: Accusation, exhibit: Exhibit) => void | Promise<void>
}

/** Counts over a client's sessions: for logs, tests and bench:verify. */
export interface VerifyStats {
  /** Hop checks run. */
  checks: number
  /** Positions a second opinion recomputed (its whole compute, replays included). */
  positionsRecomputed: number
  /** Positions compared. */
  positionsCompared: number
  /** Largest deviation among positions that agreed: how close honest servers came to the threshold. */
  maxAgreeingDeviation: number
  mismatches: number
  /** Outvoted mismatches of servers not (yet) banned: each was rewound. */
  strikes: number
  /** Outvoted again at a position of the same session where it was outvoted before: not counted as strikes (Verifier.outvotedAt). */
  repeats: number
  /** The deviation of every outvoted row (strikes and bans), in order: how far above the tolerance lies and honest slips land. */
  outvotedDeviations: number[]
  /** Peers banned as liars, in order. */
  liars: string[]
  /** Mismatches no third opinion could settle. */
  undecided: number
  /** Checks skipped: no other server holds the blocks, or the verifier failed. */
  skipped: number
  /** Bytes of the second opinions' answers compared (full rows: 4C per position; commitments: 4k + 4). */
  answerBytes: number
  /** Checks compared against a commitment. */
  commitChecks: number
}

/** The resolved policy and counters a client's sessions share. */
export class VerifyPolicy {
  readonly rate: number
  readonly window?: number
  readonly commit?: number
  readonly tolerance: number
  readonly strikes: number
  /** Outvoted mismatches per server, over the client's sessions. */
  readonly struck = new Map<string, number>()
  readonly local?: SpanBackend
  readonly onEvidence?: (a: Accusation, exhibit: Exhibit) => void | Promise<void>
  readonly rng: Rng
  readonly stats: VerifyStats = { checks: 0, positionsRecomputed: 0, positionsCompared: 0, maxAgreeingDeviation: 0, mismatches: 0, strikes: 0, repeats: 0, outvotedDeviations: [], liars: [], undecided: 0, skipped: 0, answerBytes: 0, commitChecks: 0 }

  constructor (opts: VerifyOptions = {}) {
    this.rate = opts.rate ?? VERIFY_RATE
    this.tolerance = opts.tolerance ?? VERIFY_TOLERANCE
    this.strikes = opts.strikes ?? VERIFY_STRIKES
    if (!Number.isInteger(this.strikes) || this.strikes < 1) throw new SwarmArgumentError(`verify strikes must be an integer ≥ 1, got ${opts.strikes}`)
    if (!(this.rate >= 0 && this.rate <= 1)) throw new SwarmArgumentError(`verify rate must be in [0, 1], got ${opts.rate}`)
    if (opts.window !== undefined && !(Number.isInteger(opts.window) && opts.window >= 1 && opts.window <= MAX_STEP_TOKENS)) throw new SwarmArgumentError(`verify window must be an integer in [1, ${MAX_STEP_TOKENS}] positions, got ${opts.window}`)
    this.window = opts.window
    if (opts.commit !== undefined && !(Number.isInteger(opts.commit) && opts.commit >= 1 && opts.commit <= MAX_COMMIT_K)) throw new SwarmArgumentError(`verify commit must be an integer in [1, ${MAX_COMMIT_K}] channels, got ${opts.commit}`)
    this.commit = opts.commit
    if (!(this.tolerance > 0)) throw new SwarmArgumentError(`verify tolerance must be > 0, got ${opts.tolerance}`)
    this.local = opts.local
    this.onEvidence = opts.onEvidence
    this.rng = new Rng(opts.seed ?? 1)
  }
}

/** A route hop's server caught lying: its first wrong position. */
/**
 * An outvoted hop: the session rebuilds from `position`. `avoid`: the same server was outvoted at
 * the same position of this session before (the rebuild met the same disagreement again), so the
 * rebuild routes around it rather than count one disagreement twice.
 */
export interface Caught { position: number, liar: string, avoid?: boolean }

/** A hop's second opinion: a chain over its blocks that has been fed positions [0, fed). */
interface Shadow { chain: Hop[], fed: number }

export class Verifier {
  private readonly shadows = new Map<Hop, Shadow>()
  /**
   * Positions of this session at which each server was outvoted with that row alone apart from
   * its second opinion. A rebuild replays them, and an honest server whose rounding lands past
   * the tolerance at one position (an MoE expert choice near a tie, f16 KV against f32: bench
   * verify-honest.json) disagrees there again, deterministically: that is one disagreement, not a
   * second strike (which would ban it), and the rebuild routes around it instead. A server that
   * lies on every step is apart on every row it answered, so each check of it is a strike.
   */
  private readonly outvotedAt = new Map<string, Set<number>>()

  constructor (private readonly rpc: HopRpc, private readonly failover: Failover, readonly policy: VerifyPolicy) {}

  private get C (): number { return this.rpc.client.hiddenSize }

  /**
   * After a step of the session with route `hops`: checks the hops that are due (sampled, or a
   * full window behind), or every hop with unchecked positions when `final`. Returns the position
   * to rebuild the session from when a hop's server was outvoted, else undefined.
   */
  async afterStep (hops: readonly Hop[], final = false): Promise<Caught | undefined> {
    // Shadows of hops a failover replaced hold server sessions nobody will check again.
    for (const [hop, s] of this.shadows) {
      if (!hops.includes(hop)) {
        this.rpc.close(s.chain)
        this.shadows.delete(hop)
      }
    }
    let first: Caught | undefined
    for (const hop of [...hops]) {
      if (!final && !this.due(hop)) continue
      const c = await this.check(hop)
      if (c !== undefined && (first === undefined || c.position < first.position)) first = c
    }
    return first
  }

  /** Whether `hop` is checked after this step: a full window unchecked, or the sampling says so. */
  private due (hop: Hop): boolean {
    const { window, rate, rng } = this.policy
    if (window !== undefined) return positions(hop.history, this.C) - (this.shadows.get(hop)?.fed ?? 0) >= window
    return rate >= 1 || rng.next() < rate
  }

  /** Closes every second opinion's server sessions (the session closes or is rebuilt). */
  reset (): void {
    for (const s of this.shadows.values()) this.rpc.close(s.chain)
    this.shadows.clear()
  }

  /** Checks `hop`'s outputs since its last check; the first wrong position when its server lied. */
  private async check (hop: Hop): Promise<Caught | undefined> {
    const { stats, tolerance } = this.policy
    const client = this.rpc.client
    const C = this.C
    const total = positions(hop.history, C)
    let shadow = this.shadows.get(hop)
    const from = shadow?.fed ?? 0
    if (from >= total) return undefined
    stats.checks++
    const commitments: Commitment[] = []
    let committing = false
    try {
      if (shadow === undefined) {
        // Replays the hop's inputs from the session start: its cache then matches the hop's. Not on
        // a server outvoted on one row in this session either (where another can): it would
        // replay its slip. One that lied on several rows may be asked again, and struck again.
        const r = await this.secondOpinion(hop)
        shadow = { chain: r.fresh, fed: total }
        this.shadows.set(hop, shadow)
      } else {
        const x = rows(hop.history, C, from, total)
        const k = this.policy.commit
        for (let t = 0; t < total - from; t += MAX_STEP_TOKENS) {
          const n = Math.min(MAX_STEP_TOKENS, total - from - t)
          let y = x.subarray(t * C, (t + n) * C)
          for (const [i, h] of shadow.chain.entries()) {
            if (k !== undefined && i === shadow.chain.length - 1) {
              // Its rows stay on the server: only their commitment comes back (compared below).
              committing = true
              const c = await this.rpc.stepCommit(h, y, n, from + t, k)
              committing = false
              h.history.push(y.slice())
              commitments.push(c)
              break
            }
            const out = await this.rpc.step(h, y, n, from + t)
            record(h, y, out)
            y = out
          }
        }
        shadow.fed = total
      }
    } catch (e) {
      if (isClientBug(e) && !(committing && hasErrorCode(e, 'net.malformed-message'))) throw e
      // No other server holds these blocks, or the verifier failed (HopRpc banned it), or it does
      // not know STEP_COMMIT (ERROR malformed): skip.
      if (shadow !== undefined) {
        this.rpc.close(shadow.chain)
        this.shadows.delete(hop)
      }
      stats.skipped++
      client.log(`verify: blocks [${hop.start}, ${hop.end}) of ${hop.peer} not checked (${(e as Error).message})`)
      return undefined
    }
    stats.positionsRecomputed += total - from
    stats.positionsCompared += total - from
    const mine = rows(hop.outputs, C, from, total)
    if (commitments.length > 0) {
      stats.commitChecks++
      let at = 0
      for (const c of commitments) {
        stats.answerBytes += c.bytes.byteLength
        const n = c.rows
        const { mismatch, max } = compareCommitment(mine.subarray(at * C, (at + n) * C), C, c, commitTolerance(tolerance, c.k))
        at += n
        if (mismatch !== undefined) {
          // The commitment cannot say who is wrong: check these positions again on full rows.
          client.log(`verify: ${hop.peer} disagrees with a commitment on blocks [${hop.start}, ${hop.end}) (deviation ${mismatch.deviation.toExponential(2)}); checking on full rows`)
          this.rpc.close(shadow.chain)
          this.shadows.delete(hop)
          return await this.check(hop)
        }
        stats.maxAgreeingDeviation = Math.max(stats.maxAgreeingDeviation, max)
      }
      return undefined
    }
    const theirs = rows(shadow.chain[shadow.chain.length - 1].outputs, C, from, total)
    stats.answerBytes += theirs.byteLength // a first check's replay included: its rows come back whole
    const { mismatch, max } = compareRows(mine, theirs, C, tolerance)
    if (mismatch === undefined) {
      stats.maxAgreeingDeviation = Math.max(stats.maxAgreeingDeviation, max)
      return undefined
    }
    stats.mismatches++
    const p = from + mismatch.row
    // One row apart (a rounding slip near a tie) or several (a server that lies)? See outvotedAt.
    const single = countMismatches(mine, theirs, C, tolerance) === 1
    client.log(`verify: ${hop.peer} and ${shadow.chain.map(h => h.peer).join(' → ')} disagree on blocks [${hop.start}, ${hop.end}) at position ${p} (deviation ${mismatch.deviation.toExponential(2)}${single ? ', that row alone' : ''}); asking a third opinion`)
    return await this.judge(hop, shadow, p, single)
  }

  /** A fresh chain over `hop`'s blocks fed its whole history, avoiding its server and, where it can, those outvoted on one row in this session. */
  private async secondOpinion (hop: Hop): Promise<Awaited<ReturnType<Failover['replacement']>>> {
    const outvoted = [...this.outvotedAt.keys()].filter(p => p !== hop.peer)
    if (outvoted.length > 0) {
      try {
        return await this.failover.replacement(hop, undefined, new Set([hop.peer, ...outvoted]), RECORD_REFRESH_MS)
      } catch (e) {
        if (!(e instanceof NoRouteError)) throw e
      }
    }
    return await this.failover.replacement(hop, undefined, hop.peer, RECORD_REFRESH_MS)
  }

  /** Settles a disagreement at position `p` between `hop` and its second opinion. */
  private async judge (hop: Hop, shadow: Shadow, p: number, single: boolean): Promise<Caught | undefined> {
    const { stats, tolerance } = this.policy
    const client = this.rpc.client
    const C = this.C
    const a = rows(hop.outputs, C, p, p + 1)
    const b = rows(shadow.chain[shadow.chain.length - 1].outputs, C, p, p + 1)
    const third = await this.thirdOpinion(hop, shadow, p)
    // Whatever the verdict, this second opinion is done: a rebuilt or cleared hop gets a fresh one.
    this.rpc.close(shadow.chain)
    this.shadows.delete(hop)
    if (third === undefined) {
      stats.undecided++
      client.log(`verify: no third opinion on blocks [${hop.start}, ${hop.end}); nobody accused`)
      return undefined
    }
    const devA = rowDeviation(a, third.y)
    const devB = rowDeviation(b, third.y)
    if (devA > tolerance) {
      // Outvoted: the session is rebuilt on the majority's outputs either way.
      if (this.again(hop.peer, p, devA, single)) return { position: p, liar: hop.peer, avoid: true }
      await this.strike(hop.peer, hop, p, a, third.y, devA)
      return { position: p, liar: hop.peer }
    }
    if (devB > tolerance && shadow.chain.length === 1) {
      if (!this.again(shadow.chain[0].peer, p, devB, single)) await this.strike(shadow.chain[0].peer, shadow.chain[0], p, b, third.y, devB)
      return undefined
    }
    // A multi-server second opinion that is wrong cannot be pinned on one of its servers here,
    // and two opinions within the tolerance of a third are a rounding question, not a lie.
    stats.undecided++
    client.log(`verify: third opinion (${third.by}) agrees with ${hop.peer} (${devA.toExponential(2)}), not with its second opinion (${devB.toExponential(2)}); nobody accused`)
    return undefined
  }

  /** Row `p` of blocks [hop.start, hop.end) on hop's inputs [0, p], from servers other than both opinions', or locally. */
  private async thirdOpinion (hop: Hop, shadow: Shadow, p: number): Promise<{ y: Float32Array, by: string } | undefined> {
    const C = this.C
    const inputs = rows(hop.history, C, 0, p + 1)
    const local = this.policy.local
    if (local !== undefined && local.start <= hop.start && hop.end <= local.end) {
      const y = await forwardLocal(local, hop.start, hop.end, inputs, C)
      this.policy.stats.positionsRecomputed += p + 1
      return { y, by: 'local blocks' }
    }
    const avoid = new Set([hop.peer, ...shadow.chain.map(h => h.peer)])
    try {
      const r = await this.failover.replacement({ start: hop.start, end: hop.end, history: [inputs] }, undefined, avoid, RECORD_REFRESH_MS)
      this.rpc.close(r.fresh)
      this.policy.stats.positionsRecomputed += p + 1
      return { y: rows(r.fresh[r.fresh.length - 1].outputs, C, p, p + 1), by: r.route.map(s => s.peer).join(' → ') }
    } catch (e) {
      if (isClientBug(e)) throw e
      this.rpc.client.log(`verify: no third opinion on blocks [${hop.start}, ${hop.end}): ${(e as Error).message}`)
      if (!(e instanceof NoRouteError)) this.policy.stats.skipped++
      return undefined
    }
  }

  /**
   * Whether `peer` was outvoted at position `p` of this session before, in a check where that row
   * alone disagreed (`single`), as it does now (outvotedAt); records it otherwise. A check where
   * several rows disagree is a strike however often it comes.
   */
  private again (peer: string, p: number, deviation: number, single: boolean): boolean {
    if (!single) return false
    const seen = this.outvotedAt.get(peer) ?? new Set<number>()
    this.outvotedAt.set(peer, seen)
    if (!seen.has(p)) {
      seen.add(p)
      return false
    }
    this.policy.stats.repeats++
    this.rpc.client.log(`verify: ${peer} outvoted again at position ${p} (deviation ${deviation.toExponential(2)}), as before this session's rebuild: not a new strike; the session routes around it`)
    return true
  }

  /** Counts an outvoted mismatch of `peer`; at `strikes` of them, accuses it. */
  private async strike (peer: string, hop: Hop, p: number, wrong: Float32Array, honest: Float32Array, deviation: number): Promise<void> {
    const n = (this.policy.struck.get(peer) ?? 0) + 1
    this.policy.struck.set(peer, n)
    this.policy.stats.outvotedDeviations.push(deviation)
    if (n >= this.policy.strikes) {
      await this.accuse(peer, hop, p, wrong, honest, deviation)
      return
    }
    this.policy.stats.strikes++
    this.rpc.client.log(`verify: ${peer} outvoted on blocks [${hop.start}, ${hop.end}) at position ${p} (deviation ${deviation.toExponential(2)}); strike ${n} of ${this.policy.strikes}, not banned yet`)
  }

  /** Bans `peer` as a liar and hands the accusation on. */
  private async accuse (peer: string, hop: Hop, p: number, wrong: Float32Array, honest: Float32Array, deviation: number): Promise<void> {
    const client = this.rpc.client
    const { stats } = this.policy
    client.bans.banLiar(peer)
    stats.liars.push(peer)
    client.log(`verify: ${peer} returned wrong outputs for blocks [${hop.start}, ${hop.end}) at position ${p} (deviation ${deviation.toExponential(2)} from two other opinions); banned as a liar`)
    const inputs = rows(hop.history, this.C, 0, p + 1)
    const accusation: Accusation = {
      model: client.model,
      blocks: [hop.start, hop.end],
      position: p,
      inputsHash: await digestF32(inputs),
      accusedDigest: await digestF32(wrong),
      honestDigest: await digestF32(honest),
      deviation: Number.isFinite(deviation) ? deviation : 2,
      accused: peer,
      at: client.now()
    }
    try {
      await this.policy.onEvidence?.(accusation, { inputs, accused: wrong, honest })
    } catch (e) {
      // Publishing is best effort (no swarm doc, no key): the ban above already protects this client.
      client.log(`verify: evidence against ${peer} not published (${(e as Error).message})`)
    }
  }
}

/** Positions in a hop's chunks of (T_i, C). */
function positions (chunks: readonly Float32Array[], C: number): number {
  return chunks.reduce((a, c) => a + c.length / C, 0)
}

/** Rows [from, to) of chunks of (T_i, C) that together hold positions [0, …), as one (to − from, C). */
export function rows (chunks: readonly Float32Array[], C: number, from: number, to: number): Float32Array {
  const out = new Float32Array((to - from) * C)
  let at = 0
  for (const c of chunks) {
    const n = c.length / C
    const lo = Math.max(from, at)
    const hi = Math.min(to, at + n)
    if (lo < hi) out.set(c.subarray((lo - at) * C, (hi - at) * C), (lo - from) * C)
    at += n
    if (at >= to) break
  }
  return out
}
