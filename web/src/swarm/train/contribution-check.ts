/**
 * Gauntlet-style contribution check (README.md § Contribution check): before a part owner reduces
 * a part, it measures what each member's contribution does to the loss of θ_global on a small
 * window of training text that nobody chose — drawn from a seed of the run, the round and the
 * part — and checks it against the older contributions it has seen for that part. Members that
 * hurt the model, free-ride or replay an old update are excluded from the part's reduction (the
 * RESULT names them as rejected, the sync event and the run board record them).
 *
 * Only the owner decides, and every member receives the owner's result bytes, so the check's own
 * floating point (an evaluation on this peer's backend) never makes replicas differ.
 *
 * The rules, for a part of m candidates that passed the byte checks (reduce.ts):
 *  1. **zero** — the contribution is exactly zero while the part's lower-median norm is not:
 *     a free-rider that sends nothing (an honest Δ moves every element through weight decay and
 *     AdamW, and a part where every member's Δ is zero excludes nobody).
 *  2. **replay** — its cosine similarity with a contribution this owner saw for the same part in
 *     an earlier round (anyone's, its own included) is ≥ `replayCosine` (0.999): an old update
 *     sent again instead of new work. Honest successive pseudo-gradients can be close — early in
 *     training a part such as the output layer moves the same way round after round: up to 0.983
 *     between one worker's rounds in the tests' runs — but never that close (fresh data, error
 *     feedback and q8 rounding make each window's Δ new). A replay disguised with enough noise to
 *     pass is left to the loss rule, which judges what the old update does to today's θ_global.
 *     Not a replay when it is as close to another member's update of this round: in parts that
 *     move the same way every round for everyone (embedding rows of bytes the data never holds,
 *     moved by weight decay alone, cosine 0.9999 between rounds in the session test) an old
 *     update is indistinguishable from, and as good as, a new one.
 *  3. **loss** — gain_c = L(θ) − L(θ − Δ_c) on the window (Δ_c applied to this part only: the
 *     contributor's local weights there). With ≥ `minCandidates` candidates and a lower-median
 *     gain g > 0 (the window says that honest work helps), a contributor whose gain is ≤
 *     `minGainFraction` × g is excluded: it makes the loss worse (sign flips, scaled noise) or
 *     does next to nothing for it (scaled-down or random updates). When the median gain is ≤ 0
 *     the window carries no signal about this part (e.g. embedding rows of bytes it does not
 *     contain) and nobody is excluded by loss.
 */
import { TrainArgumentError } from './errors.ts'

/** One part's candidates, as the owner holds them after the byte checks. */
export interface PartCandidates {
  /** The all-reduce round (seeds the window). */
  round: number
  /** Elements of the whole reduced vector (the fragment). */
  n: number
  /** Elements [start, end) of that vector this part covers. */
  start: number
  end: number
  /** Candidates in member order, and their dequantized contributions (end − start each). */
  peers: string[]
  deltas: Float32Array[]
}

/** What a part owner asks before reducing: peer → why it is excluded (absent: it counts). */
export interface ContributionCheck {
  check: (p: PartCandidates) => Promise<Map<string, string>>
  /** Frees what the check holds (an evaluation model). */
  dispose?: () => void
}

/**
 * Evaluates the loss of θ_global, and of θ_global with one part replaced by θ_global − Δ_c, on the
 * window of (round, part) (loss-probe.ts holds the model side). Every evaluation of one call uses
 * the same window.
 */
export interface LossProbe {
  losses: (round: number, n: number, start: number, deltas: readonly Float32Array[]) => Promise<{ before: number, after: number[] }>
  dispose?: () => void
}

export interface GauntletOptions {
  /** Cosine with an earlier round's contribution at or above which a contribution is a replay. @default 0.999 */
  replayCosine?: number
  /** Rounds of contributions kept per part for the replay rule. @default 2 */
  keepRounds?: number
  /** A gain ≤ this fraction of the lower-median gain excludes. @default 0.1 */
  minGainFraction?: number
  /** Candidates needed before the loss rule applies (fewer: no honest majority to compare with). @default 3 */
  minCandidates?: number
}

/** Counters of what the check excluded, by rule (the metric the page and CLI show). */
export interface CheckCounts { checked: number, zero: number, replay: number, loss: number }

interface Seen { round: number, peer: string, x: Float32Array, norm: number }

export class GauntletCheck implements ContributionCheck {
  readonly counts: CheckCounts = { checked: 0, zero: 0, replay: 0, loss: 0 }
  /** The last check's gains by peer (tests and logs: how far honest members are from the line). */
  lastGains = new Map<string, number>()
  private readonly replayCosine: number
  private readonly keepRounds: number
  private readonly minGainFraction: number
  private readonly minCandidates: number
  /** Per part (`n:start:end`), contributions of the last keepRounds rounds. */
  private readonly seen = new Map<string, Seen[]>()

  constructor (private readonly probe: LossProbe, o: GauntletOptions = {}) {
    this.replayCosine = o.replayCosine ?? 0.999
    this.keepRounds = o.keepRounds ?? 2
    this.minGainFraction = o.minGainFraction ?? 0.1
    this.minCandidates = o.minCandidates ?? 3
    if (!(this.replayCosine > 0 && this.replayCosine <= 1)) throw new TrainArgumentError(`replayCosine must be in (0, 1], got ${this.replayCosine}`)
    if (!(Number.isInteger(this.keepRounds) && this.keepRounds >= 0)) throw new TrainArgumentError(`keepRounds must be an integer ≥ 0, got ${this.keepRounds}`)
    if (!(this.minGainFraction >= 0 && this.minGainFraction < 1)) throw new TrainArgumentError(`minGainFraction must be in [0, 1), got ${this.minGainFraction}`)
    if (!(Number.isInteger(this.minCandidates) && this.minCandidates >= 2)) throw new TrainArgumentError(`minCandidates must be an integer ≥ 2, got ${this.minCandidates}`)
  }

  dispose (): void {
    this.seen.clear()
    this.probe.dispose?.()
  }

  async check (p: PartCandidates): Promise<Map<string, string>> {
    const len = p.end - p.start
    if (p.peers.length !== p.deltas.length) throw new TrainArgumentError(`check: ${p.peers.length} peers but ${p.deltas.length} contributions`)
    for (const d of p.deltas) if (d.length !== len) throw new TrainArgumentError(`check: a contribution holds ${d.length} elements, the part ${len}`)
    const out = new Map<string, string>()
    this.counts.checked += p.peers.length
    const norms = p.deltas.map(norm2)
    const medNorm = lowerMedian(norms)
    p.peers.forEach((peer, c) => {
      if (norms[c] === 0 && medNorm > 0) { out.set(peer, 'zero update (free-riding)'); this.counts.zero++ }
    })
    const key = `${p.n}:${p.start}:${p.end}`
    const history = (this.seen.get(key) ?? []).filter(s => s.round < p.round && s.round >= p.round - this.keepRounds)
    p.peers.forEach((peer, c) => {
      if (out.has(peer) || norms[c] === 0) return
      for (const s of history) {
        if (s.norm === 0) continue
        const cos = dot(p.deltas[c], s.x) / (norms[c] * s.norm)
        if (cos < this.replayCosine) continue
        // As close to another member's update of this round: the part moves the same way every
        // round for everyone (e.g. rows only weight decay touches), and an old update is then
        // as good as a new one — not a replay to exclude.
        const likeNow = p.peers.some((q, d) => d !== c && norms[d] > 0 && dot(p.deltas[c], p.deltas[d]) / (norms[c] * norms[d]) >= this.replayCosine)
        if (likeNow) return
        out.set(peer, `replays round ${s.round}'s update of ${s.peer} (cosine ${cos.toFixed(4)})`)
        this.counts.replay++
        return
      }
    })
    if (this.keepRounds > 0) {
      this.seen.set(key, [...history, ...p.peers.map((peer, c) => ({ round: p.round, peer, x: p.deltas[c].slice(), norm: norms[c] }))])
      for (const [k, v] of this.seen) if (v.every(s => s.round < p.round - this.keepRounds)) this.seen.delete(k)
    }
    const rest = p.peers.map((_, c) => c).filter(c => !out.has(p.peers[c]))
    this.lastGains = new Map()
    if (rest.length < this.minCandidates) return out
    const { before, after } = await this.probe.losses(p.round, p.n, p.start, rest.map(c => p.deltas[c]))
    const gains = after.map(a => before - a)
    rest.forEach((c, i) => this.lastGains.set(p.peers[c], gains[i]))
    const med = lowerMedian(gains)
    if (!(med > 0)) return out
    rest.forEach((c, i) => {
      if (!(gains[i] > this.minGainFraction * med)) {
        out.set(p.peers[c], `loss gain ${gains[i].toExponential(3)} on the round's window ≤ ${this.minGainFraction} × the median ${med.toExponential(3)}`)
        this.counts.loss++
      }
    })
    return out
  }
}

function norm2 (x: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i] * x[i]
  return Math.sqrt(s)
}

function dot (a: Float32Array, b: Float32Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * b[i]
  return s
}

/** The lower median: with 3 values the middle one, with 4 the second (one outlier never sets it). */
function lowerMedian (xs: readonly number[]): number {
  if (xs.length === 0) return 0
  const sorted = xs.slice().sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]
}
