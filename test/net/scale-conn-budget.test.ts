/** The tab's peer-connection budget (web/src/net/conn-budget.ts), on a ManualClock. */
import { describe, expect, it } from 'vitest'
import { BROWSER_PEER_CONNECTION_LIMIT, ConnectionBudget, LIFETIME_STORAGE_KEY, type CountStore } from '../../web/src/net/conn-budget.ts'
import { NetConfigError } from '../../web/src/net/errors.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

function memoryStore (): CountStore & { data: Map<string, string> } {
  const data = new Map<string, string>()
  return { data, getItem: k => data.get(k) ?? null, setItem: (k, v) => { data.set(k, v) } }
}

describe('ConnectionBudget', () => {
  it('never lets the lifetime count pass its limit over a day of churn, and persists it across a reload', () => {
    const clock = new ManualClock(0)
    const store = memoryStore()
    const b = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 40, clock, store })
    let n = 0
    // A day of churn: every minute a linked peer leaves and the tab tries to replace it.
    for (let minute = 0; minute < 24 * 60; minute++) {
      clock.advance(60_000)
      while (b.canOpen()) b.recordOpen(`p${n++}`)
      b.recordClose(`p${n - 1 - (minute % 8)}`)
    }
    expect(b.lifetimeOpened).toBe(40)
    expect(b.lifetimeLeft).toBe(0)
    expect(b.refused).toBeGreaterThan(0)
    expect(store.data.get(LIFETIME_STORAGE_KEY)).toBe('40')
    const reloaded = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 40, clock, store })
    expect(reloaded.lifetimeOpened).toBe(40)
    expect(reloaded.canOpen()).toBe(false)
  })

  it('bounds open links and counts a peer once while its link stays open', () => {
    const b = new ConnectionBudget({ maxOpen: 2, lifetimeLimit: 10, clock: new ManualClock(0), store: memoryStore() })
    b.recordOpen('a')
    b.recordOpen('a')
    b.recordOpen('b')
    expect(b.openCount).toBe(2)
    expect(b.lifetimeOpened).toBe(2)
    expect(b.canOpen()).toBe(false)
    b.recordClose('a')
    expect(b.canOpen()).toBe(true)
  })

  it('names idle links nobody works with, least recently active first; keeps working peers', () => {
    const clock = new ManualClock(0)
    const b = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 100, idleMs: 1000, clock, store: memoryStore() })
    for (const p of ['route', 'idle', 'busy', 'late']) b.recordOpen(p)
    b.markWorking('route', 10_000)
    clock.advance(600)
    b.touch('busy')
    clock.advance(500) // idle/late: 1100 ms without traffic; busy: 500 ms
    expect(b.toClose(8)).toEqual(['idle', 'late'])
    expect(b.toClose(1)).toEqual(['idle', 'late', 'busy'])
    clock.advance(10_000)
    // The route's work ended at 10 s: now it is an idle link like the others.
    expect(b.toClose(8)).toEqual(['route', 'idle', 'late', 'busy'])
  })

  it('refuses limits beyond the browser\'s', () => {
    expect(() => new ConnectionBudget({ lifetimeLimit: BROWSER_PEER_CONNECTION_LIMIT + 1, store: memoryStore() })).toThrow(NetConfigError)
    expect(() => new ConnectionBudget({ maxOpen: 0, store: memoryStore() })).toThrow(/maxOpen/)
  })
})
