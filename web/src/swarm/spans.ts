/**
 * Which blocks a server should hold (Petals `block_selection.py`): join on the contiguous window
 * whose blocks are the least served, and move later only when that raises the swarm's weakest
 * block enough — never leaving a block uncovered.
 */
import { Rng } from '../util/rng.ts'
import { BALANCE_QUALITY, THROUGHPUT_EPS } from './constants.ts'
import { SwarmArgumentError } from './errors.ts'

/** A server's span and its per-block throughput (tokens/s). */
export interface Span {
  peer: string
  start: number
  end: number
  throughput: number
}

/** Sum of announced throughput per block: (numBlocks,). */
export function blockThroughputs (spans: readonly Span[], numBlocks: number): Float64Array {
  const t = new Float64Array(numBlocks)
  for (const s of spans) {
    for (let b = Math.max(0, s.start); b < Math.min(numBlocks, s.end); b++) t[b] += s.throughput
  }
  return t
}

/**
 * Start of the best window of `length` blocks: Petals compares windows by their sorted
 * throughputs lexicographically, so the window holding the least-served block wins, ties broken
 * by the next least-served block, then by the lowest start. With equal minima this is the window
 * with the lowest total throughput among them.
 */
export function chooseBestStart (throughputs: ArrayLike<number>, length: number): number {
  const n = throughputs.length
  if (!Number.isInteger(length) || length < 1 || length > n) throw new SwarmArgumentError(`span length ${length} must be in [1, ${n}]`)
  let best = 0
  let bestKey: number[] | undefined
  for (let i = 0; i + length <= n; i++) {
    const key = Array.from({ length }, (_, j) => throughputs[i + j]).sort((a, b) => a - b)
    if (bestKey === undefined || lexLess(key, bestKey)) {
      best = i
      bestKey = key
    }
  }
  return best
}

function lexLess (a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i]
  }
  return false
}

/** The span a joining server of `length` blocks should take, given the others' spans. */
export function chooseSpan (others: readonly Span[], numBlocks: number, length: number): { start: number, end: number } {
  const start = chooseBestStart(blockThroughputs(others, numBlocks), Math.min(length, numBlocks))
  return { start, end: start + Math.min(length, numBlocks) }
}

export interface RebalanceDecision {
  /** Whether `self` should move. */
  move: boolean
  /** Where `self` would go (its current start when it should stay). */
  start: number
  /** Swarm's minimum per-block throughput now, and after every server settled (tokens/s). */
  minBefore: number
  minAfter: number
  /** minBefore / minAfter (1 = already balanced). */
  quality: number
  /** Why, for logs. */
  reason: string
}

export interface RebalanceOptions {
  /** Move only if minBefore / minAfter < this. @default BALANCE_QUALITY (0.75, Petals) */
  balanceQuality?: number
  /** Seed of the order in which the simulation lets other servers re-settle. @default 0 */
  seed?: number
}

/**
 * Petals' `should_choose_other_blocks`: take `self` off its span, put it on the best window,
 * let every server re-settle greedily until none moves, and move only if the swarm's minimum
 * per-block throughput rises so much that before / after < balanceQuality. Refuses any move
 * that would leave a covered block uncovered.
 */
export function shouldRebalance (self: string, spans: readonly Span[], numBlocks: number, opts: RebalanceOptions = {}): RebalanceDecision {
  const quality = opts.balanceQuality ?? BALANCE_QUALITY
  const rng = new Rng(opts.seed ?? 0)
  const work = spans.map(s => ({ ...s }))
  const local = work.find(s => s.peer === self)
  if (local === undefined) throw new SwarmArgumentError(`server ${self} has no announced span`)
  const length = local.end - local.start
  const t = blockThroughputs(work, numBlocks)
  const minBefore = min(t)
  const stay = (reason: string, minAfter = minBefore): RebalanceDecision =>
    ({ move: false, start: local.start, minBefore, minAfter, quality: minAfter > 0 ? minBefore / minAfter : 1, reason })

  add(t, local, -(1 + THROUGHPUT_EPS))
  if (minBefore > THROUGHPUT_EPS && min(t) <= 0) return stay('moving would leave a block uncovered')
  const newStart = chooseBestStart(t, length)
  if (newStart === local.start) return stay('already on the best span')
  add(t, local, THROUGHPUT_EPS)
  local.start = newStart
  local.end = newStart + length
  add(t, local, 1)

  // Let everyone (self included) re-settle, in a seeded random order, until nobody moves.
  for (let moved = true, rounds = 0; moved && rounds < 100 * work.length; rounds++) {
    moved = false
    const order = shuffle(work.map((_, i) => i), rng)
    for (const i of order) {
      const s = work[i]
      add(t, s, -(1 + THROUGHPUT_EPS))
      const start = chooseBestStart(t, s.end - s.start)
      add(t, s, THROUGHPUT_EPS)
      if (start !== s.start) {
        s.end = start + (s.end - s.start)
        s.start = start
        moved = true
      }
      add(t, s, 1)
    }
  }
  const minAfter = min(t)
  if (minAfter < minBefore || minAfter < THROUGHPUT_EPS) return stay('moving would not raise the weakest block', minAfter)
  const q = minBefore / minAfter
  if (q < quality - THROUGHPUT_EPS) {
    return { move: true, start: newStart, minBefore, minAfter, quality: q, reason: `balance quality ${(q * 100).toFixed(1)}% < ${(quality * 100).toFixed(0)}%` }
  }
  return { ...stay(`balance quality ${(q * 100).toFixed(1)}% is good enough`, minAfter), quality: q }
}

function add (t: Float64Array, s: Span, scale: number): void {
  for (let b = s.start; b < s.end; b++) t[b] += s.throughput * scale
}

function min (t: Float64Array): number {
  let m = Infinity
  for (const v of t) m = Math.min(m, v)
  return m
}

function shuffle<T> (a: T[], rng: Rng): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}
