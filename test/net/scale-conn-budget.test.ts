/** The tab's peer-connection budget (web/src/net/conn-budget.ts), on a ManualClock. */
import { describe, expect, it } from 'vitest'
import { BROWSER_PEER_CONNECTION_LIMIT, BUCKET_STORAGE_KEY, ConnectionBudget, LIFETIME_STORAGE_KEY, type CountStore } from '../../web/src/net/conn-budget.ts'
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
    const b = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 40, dailyLimit: 40, burst: 40, floor: 8, clock, store })
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
    const reloaded = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 40, dailyLimit: 40, burst: 40, floor: 8, clock, store })
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

  it('paces opens with a token bucket: burst at once, then the rest of dailyLimit spread over 24 h, never more in any day', () => {
    const clock = new ManualClock(0)
    const b = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 400, dailyLimit: 120, burst: 8, floor: 8, clock, store: memoryStore() })
    let n = 0
    const open = (): number => { let k = 0; while (b.canOpen()) { b.recordOpen(`p${n++}`); k++ } return k }
    expect(open()).toBe(8) // the burst
    for (let i = 0; i < 8; i++) b.recordClose(`p${i}`)
    expect(open()).toBe(0) // the bucket is empty: departures are not replaced at once
    clock.advance(12 * 60_000) // (120 − 8) / 24 h = one token every 12 min 51 s
    expect(open()).toBe(0)
    clock.advance(60_000)
    expect(open()).toBe(1)
    // Churn every link every minute for two days: each 24 h opens at most dailyLimit.
    const perDay = [0, 0]
    for (let m = 0; m < 2 * 24 * 60; m++) {
      clock.advance(60_000)
      for (let i = 0; i < n; i++) b.recordClose(`p${i}`)
      perDay[Math.floor(m / (24 * 60))] += open()
    }
    expect(perDay[0]).toBeLessThanOrEqual(120)
    expect(perDay[1]).toBeLessThanOrEqual(120)
    expect(perDay[1]).toBeGreaterThanOrEqual(110) // the refill is spent, not withheld
  })

  it('keeps the floor with the last tokens, tops up beyond it only from a fuller bucket, and lets work through', () => {
    const clock = new ManualClock(0)
    const b = new ConnectionBudget({ maxOpen: 8, lifetimeLimit: 400, dailyLimit: 300, burst: 16, floor: 4, clock, store: memoryStore() })
    for (let i = 0; i < 12; i++) b.recordOpen(`p${i}`) // 4 tokens left
    for (let i = 0; i < 12; i++) b.recordClose(`p${i}`)
    for (let i = 0; i < 3; i++) b.recordOpen(`q${i}`) // 1 token left
    expect(b.canOpen()).toBe(true) // 3 open < floor 4: one token is enough
    b.recordOpen('q3') // 4 open, 0 tokens: at the floor, a top-up waits for a quarter of the bucket (4)
    clock.advance(12 * 60_000) // (300 − 16) / 24 h ≈ 0.2 a minute: ≈ 2.4 tokens back
    expect(b.bucket).toBeGreaterThan(1)
    expect(b.bucket).toBeLessThan(4)
    expect(b.canOpen('top-up')).toBe(false)
    expect(b.canOpen('work')).toBe(true)
    clock.advance(10 * 60_000)
    expect(b.canOpen('top-up')).toBe(true)
  })

  it('keeps the bucket across a reload (a reload does not refill it)', () => {
    const clock = new ManualClock(1_000)
    const store = memoryStore()
    const b = new ConnectionBudget({ maxOpen: 8, burst: 8, clock, store })
    for (let i = 0; i < 8; i++) b.recordOpen(`p${i}`)
    expect(store.data.get(BUCKET_STORAGE_KEY)).toBe('0@1000')
    const reloaded = new ConnectionBudget({ maxOpen: 8, burst: 8, clock, store })
    expect(reloaded.bucket).toBe(0)
    expect(reloaded.canOpen()).toBe(false)
  })

  it('orders candidates: peers the tab works with, then longest observed uptime', () => {
    const clock = new ManualClock(10_000)
    const b = new ConnectionBudget({ clock, store: memoryStore() })
    b.markWorking('route', 20_000)
    const order = b.dialOrder([{ id: 'new', upSince: 9_000 }, { id: 'old', upSince: 1_000 }, { id: 'route', upSince: 9_500 }, { id: 'mid', upSince: 5_000 }])
    expect(order.map(c => c.id)).toEqual(['route', 'old', 'mid', 'new'])
  })

  it('refuses pacing settings it cannot keep', () => {
    expect(() => new ConnectionBudget({ lifetimeLimit: 100, dailyLimit: 101, store: memoryStore() })).toThrow(/dailyLimit/)
    expect(() => new ConnectionBudget({ dailyLimit: 10, burst: 11, store: memoryStore() })).toThrow(/burst/)
    expect(() => new ConnectionBudget({ maxOpen: 4, floor: 5, store: memoryStore() })).toThrow(/floor/)
  })
})
