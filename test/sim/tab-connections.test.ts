/** A tab's simulated day of churn against the real ConnectionBudget (web/src/sim/tab-connections.ts). */
import { describe, expect, it } from 'vitest'
import { simulateTabDay } from '../../web/src/sim/tab-connections.ts'

describe('tab peer connections over a day of churn', () => {
  it('the cap-only budget spends its 400 in hours at 10 %/min; the paced one stays under its 300 a day and never runs out', () => {
    const capOnly = simulateTabDay({ seed: 3, target: 8, churnPerMinute: 0.1, paced: false, order: 'random' })
    expect(capOnly.opened).toBe(400)
    expect(capOnly.exhaustedAtMinute).not.toBeNull()
    const paced = simulateTabDay({ seed: 3, target: 8, churnPerMinute: 0.1 })
    expect(paced.opened).toBeLessThanOrEqual(300)
    expect(paced.exhaustedAtMinute).toBeNull()
    expect(paced.minLinks).toBe(0) // memoryless churn at 10 %/min: 8 links would need ~1,150 a day
    expect(paced.meanLinks).toBeGreaterThan(1.5)
  })

  it('with heavy-tailed lifetimes, preferring long uptime holds more links than random choice on the same budget', () => {
    const byUptime = simulateTabDay({ seed: 3, target: 8, churnPerMinute: 0.1, lifetimes: 'heavy-tailed' })
    const random = simulateTabDay({ seed: 3, target: 8, churnPerMinute: 0.1, lifetimes: 'heavy-tailed', order: 'random' })
    expect(byUptime.opened).toBeLessThan(400)
    expect(byUptime.meanLinks).toBeGreaterThan(random.meanLinks + 0.3)
    expect(byUptime.minLinks).toBeGreaterThanOrEqual(4) // the floor
  })

  it('a small target at low churn holds its links all day within the limit, deterministically', () => {
    const r = simulateTabDay({ seed: 3, target: 2, churnPerMinute: 0.005 })
    expect(r.exhaustedAtMinute).toBeNull()
    expect(r.minutesBelowTarget).toBe(0)
    expect(r.opened).toBeLessThan(400)
    expect(simulateTabDay({ seed: 3, target: 2, churnPerMinute: 0.005 })).toEqual(r)
  })
})
