/**
 * A tab's day of churn against the real ConnectionBudget (net/conn-budget.ts) on a ManualClock.
 * A swarm of `swarm` peers in steady state: every minute each peer leaves with its lifetime's
 * odds and a joiner takes its place, so `churnPerMinute` of the swarm leaves per minute (mean
 * lifetime 1 / churn minutes). The tab wants `target` direct links; each minute it drops the links
 * to departed peers and, while the budget allows (`canOpen`), dials the live peers in the
 * budget's `dialOrder` (longest observed uptime first). Counts the peer connections opened, the
 * dials refused, the links held each minute and the minutes below the target.
 *
 * Lifetimes: 'exponential' (memoryless: uptime tells nothing, the worst case for the budget's
 * preference) or 'heavy-tailed' (a fifth of joiners stay 4× the mean, the rest a quarter of it,
 * the same mean: closer to real swarms, where a peer up for long tends to stay).
 */
import { ConnectionBudget, type CountStore } from '../net/conn-budget.ts'
import { ManualClock } from '../util/clock.ts'
import type { Rng } from '../util/rng.ts'
import { SimConfigError } from './errors.ts'
import { NetModel } from './model.ts'

type LifetimeModel = 'exponential' | 'heavy-tailed'

export interface TabDayInit {
  seed?: number
  /** Direct links the tab wants. @default 8 (PeerManager's DEFAULT_TARGET_PEERS) */
  target?: number
  /** Fraction of the swarm leaving per minute. @default 0.1 */
  churnPerMinute?: number
  /** Simulated minutes. @default 24 × 60 */
  minutes?: number
  /** Live peers in the swarm besides the tab. @default 200 */
  swarm?: number
  /** @default 'exponential' */
  lifetimes?: LifetimeModel
  /** Lifetime limit given to the budget. @default 400 */
  lifetimeLimit?: number
  /** The budget's 24 h pacing limit. @default the budget's (300) */
  dailyLimit?: number
  /** false: the budget without pacing (bucket = lifetime limit, no refill, floor = target), the session-7 policy, for comparison. @default true */
  paced?: boolean
  /** 'budget': dial in the budget's dialOrder (longest uptime first); 'random': ignore uptime, for comparison. @default 'budget' */
  order?: 'budget' | 'random'
}

export interface TabDayResult {
  opened: number
  refused: number
  /** Minutes with fewer open links than the target. */
  minutesBelowTarget: number
  /** Links held, averaged over the minutes of the day. */
  meanLinks: number
  /** Fewest links held in any minute after the first. */
  minLinks: number
  /** Minute at which the lifetime limit ran out (null: it lasted the day). */
  exhaustedAtMinute: number | null
}

/** Share of joiners that are long-lived, and their mean lifetime in units of the swarm's mean. */
const LONG_SHARE = 0.2
const LONG_MEAN = 4
/** The short-lived joiners' mean, so that the overall mean lifetime stays 1 / churn. */
const SHORT_MEAN = (1 - LONG_SHARE * LONG_MEAN) / (1 - LONG_SHARE)

interface SimPeer { id: string, upSince: number, leavesAt: number }

export function simulateTabDay (init: TabDayInit = {}): TabDayResult {
  const target = init.target ?? 8
  const churn = init.churnPerMinute ?? 0.1
  const minutes = init.minutes ?? 24 * 60
  const size = init.swarm ?? 200
  const lifetimes = init.lifetimes ?? 'exponential'
  if (!(churn > 0 && churn < 1)) throw new SimConfigError(`churnPerMinute ${churn} must be in (0, 1)`)
  if (!(Number.isInteger(size) && size >= target)) throw new SimConfigError(`swarm ${size} must be an integer ≥ target ${target}`)
  const model = new NetModel({ seed: init.seed ?? 1 })
  const meanMin = 1 / churn
  const clock = new ManualClock(0)
  const data = new Map<string, string>()
  const store: CountStore = { getItem: k => data.get(k) ?? null, setItem: (k, v) => { data.set(k, v) } }
  const lifetimeLimit = init.lifetimeLimit ?? 400
  const pacing = init.paced === false ? { dailyLimit: lifetimeLimit, burst: lifetimeLimit, floor: Math.max(target, 1) } : { dailyLimit: init.dailyLimit }
  const budget = new ConnectionBudget({ maxOpen: Math.max(target, 1), lifetimeLimit, ...pacing, clock, store })
  let next = 0
  const minuteMs = 60_000
  /** A joiner at minute `m`; `aged` peers start the day mid-life (the steady state's age spread). */
  const join = (m: number, aged: boolean): SimPeer => {
    const mean = lifetimeMean(model.rng, lifetimes, meanMin, aged)
    const age = aged ? expo(model.rng, mean) : 0
    return { id: `peer-${next++}`, upSince: (m - age) * minuteMs, leavesAt: m + Math.max(1, Math.round(expo(model.rng, mean))) }
  }
  const live = new Map<string, SimPeer>()
  for (let i = 0; i < size; i++) { const p = join(0, true); live.set(p.id, p) }
  const links = new Set<string>()
  let below = 0
  let held = 0
  let minHeld = Infinity
  let exhaustedAt: number | null = null
  for (let m = 0; m < minutes; m++) {
    clock.advance(minuteMs)
    for (const [id, p] of live) {
      if (p.leavesAt > m) continue
      live.delete(id)
      if (links.delete(id)) budget.recordClose(id)
      const j = join(m, false)
      live.set(j.id, j)
    }
    if (links.size < target) {
      const free = [...live.values()].filter(p => !links.has(p.id))
      const order = init.order === 'random' ? model.pick(free.length, target).map(i => free[i]) : budget.dialOrder(free)
      for (const p of order) {
        if (links.size >= target || !budget.canOpen()) break
        links.add(p.id)
        budget.recordOpen(p.id)
      }
    }
    held += links.size
    if (m > 0) minHeld = Math.min(minHeld, links.size)
    if (links.size < target) {
      below++
      if (exhaustedAt === null && budget.lifetimeLeft === 0) exhaustedAt = m
    }
  }
  return { opened: budget.lifetimeOpened, refused: budget.refused, minutesBelowTarget: below, meanLinks: held / minutes, minLinks: minHeld === Infinity ? 0 : minHeld, exhaustedAtMinute: exhaustedAt }
}

/** Exponential with mean `mean` (memoryless, like independent leavers). */
function expo (rng: Rng, mean: number): number {
  return -Math.log(1 - rng.next()) * mean
}

/**
 * A peer's mean lifetime, minutes. Heavy-tailed: joiners are long-lived with LONG_SHARE odds, but
 * a peer alive at the start is long-lived with the steady state's odds (long-lived peers pile up:
 * LONG_SHARE × LONG_MEAN of the swarm).
 */
function lifetimeMean (rng: Rng, lifetimes: LifetimeModel, meanMin: number, aged: boolean): number {
  if (lifetimes === 'exponential') return meanMin
  const longOdds = aged ? LONG_SHARE * LONG_MEAN : LONG_SHARE
  return (rng.next() < longOdds ? LONG_MEAN : SHORT_MEAN) * meanMin
}
