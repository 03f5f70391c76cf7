/** A tab's simulated day of churn against the real ConnectionBudget (web/src/sim/tab-connections.ts). */
import { describe, expect, it } from 'vitest'
import { simulateTabDay } from '../../web/src/sim/tab-connections.ts'

describe('tab peer connections over a day of churn', () => {
  it('never opens more than the lifetime limit; 8 links at 10 %/min churn need more than it allows', () => {
    const r = simulateTabDay({ seed: 3, target: 8, churnPerMinute: 0.1 })
    expect(r.opened).toBeLessThanOrEqual(400)
    expect(r.opened).toBe(400)
    expect(r.exhaustedAtMinute).not.toBeNull()
    expect(r.refused).toBeGreaterThan(0)
  })

  it('a small target at low churn lasts the day within the limit', () => {
    const r = simulateTabDay({ seed: 3, target: 2, churnPerMinute: 0.005 })
    expect(r.exhaustedAtMinute).toBeNull()
    expect(r.opened).toBeLessThan(400)
    expect(simulateTabDay({ seed: 3, target: 2, churnPerMinute: 0.005 })).toEqual(r)
  })
})
