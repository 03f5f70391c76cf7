/**
 * A tab's day of churn against the real ConnectionBudget (net/conn-budget.ts) on a ManualClock:
 * the tab holds `target` direct links; each linked peer leaves after a seeded exponential
 * lifetime (mean = 1 / churn per minute: 10 %/min → 10 min); the tab replaces it when the budget
 * allows. Counts the peer connections opened, the dials refused, and the minutes the tab held
 * fewer links than its target.
 */
import { ConnectionBudget, type CountStore } from '../net/conn-budget.ts'
import { ManualClock } from '../util/clock.ts'
import { SimConfigError } from './errors.ts'
import { NetModel } from './model.ts'

export interface TabDayInit {
  seed?: number
  /** Direct links the tab wants. @default 8 (PeerManager's DEFAULT_TARGET_PEERS) */
  target?: number
  /** Fraction of the swarm leaving per minute. @default 0.1 */
  churnPerMinute?: number
  /** Simulated minutes. @default 24 × 60 */
  minutes?: number
  /** Lifetime limit given to the budget; the browser's limit when omitted. @default 400 */
  lifetimeLimit?: number
}

export interface TabDayResult {
  opened: number
  refused: number
  /** Minutes with fewer open links than the target. */
  minutesBelowTarget: number
  /** Minute at which the lifetime budget ran out (null: it lasted the day). */
  exhaustedAtMinute: number | null
}

export function simulateTabDay (init: TabDayInit = {}): TabDayResult {
  const target = init.target ?? 8
  const churn = init.churnPerMinute ?? 0.1
  const minutes = init.minutes ?? 24 * 60
  if (!(churn > 0 && churn < 1)) throw new SimConfigError(`churnPerMinute ${churn} must be in (0, 1)`)
  const model = new NetModel({ seed: init.seed ?? 1 })
  const clock = new ManualClock(0)
  const data = new Map<string, string>()
  const store: CountStore = { getItem: k => data.get(k) ?? null, setItem: (k, v) => { data.set(k, v) } }
  const budget = new ConnectionBudget({ maxOpen: Math.max(target, 1), lifetimeLimit: init.lifetimeLimit ?? 400, clock, store })
  /** Linked peer → minute it leaves. */
  const links = new Map<string, number>()
  let next = 0
  let below = 0
  let exhaustedAt: number | null = null
  for (let m = 0; m < minutes; m++) {
    clock.advance(60_000)
    for (const [p, leaves] of links) {
      if (leaves <= m) {
        links.delete(p)
        budget.recordClose(p)
      }
    }
    while (links.size < target && budget.canOpen()) {
      const p = `peer-${next++}`
      // Exponential lifetime with mean 1 / churn minutes (memoryless, like independent leavers).
      links.set(p, m + Math.max(1, Math.round(-Math.log(1 - model.rng.next()) / churn)))
      budget.recordOpen(p)
    }
    if (links.size < target) {
      below++
      if (exhaustedAt === null && budget.lifetimeLeft === 0) exhaustedAt = m
    }
  }
  return { opened: budget.lifetimeOpened, refused: budget.refused, minutesBelowTarget: below, exhaustedAtMinute: exhaustedAt }
}
