/**
 * The DHT sim's virtual clock: time moves only when nothing is runnable, so CPU work costs no
 * simulated time, and the run's globals are put back afterwards, also when it fails.
 */
import { describe, expect, it } from 'vitest'
import { SimStateError } from '../../web/src/sim/errors.ts'
import { virtualTimeActive, withVirtualTime } from '../../web/src/sim/virtual-time.ts'

/** Real CPU time spent without yielding (a stand-in for N nodes sharing one event loop). */
function burn (ms: number): void {
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n
  while (process.hrtime.bigint() < end) { /* busy */ }
}

describe('withVirtualTime', () => {
  it('jumps to the next timer when idle, and CPU work costs no virtual time', async () => {
    const realStart = process.hrtime.bigint()
    const r = await withVirtualTime(async vt => {
      const t0 = Date.now()
      // An hour of virtual sleep returns at once in real time.
      await new Promise(resolve => setTimeout(resolve, 3600_000))
      const slept = Date.now() - t0
      // 200 ms of real CPU between two reads of the clock: no virtual time passes.
      const t1 = performance.now()
      burn(200)
      return { slept, burned: performance.now() - t1, elapsed: vt.elapsedMs(), events: vt.events() }
    })
    expect(r.slept).toBe(3600_000)
    expect(r.burned).toBe(0)
    expect(r.elapsed).toBe(3600_000)
    expect(r.events).toBe(1)
    expect(Number(process.hrtime.bigint() - realStart) / 1e6).toBeLessThan(3600_000)
  })

  it('a CPU stall does not trip AbortSignal.timeout (network time, not machine time)', async () => {
    const out = await withVirtualTime(async () => {
      const signal = AbortSignal.timeout(50)
      // The machine is busy for 300 ms, then the request goes out and its answer takes 10 ms of
      // network latency. On real time the 50 ms budget would have run out during the stall.
      burn(300)
      const answer = new Promise<string>(resolve => setTimeout(() => { resolve('answer') }, 10))
      const got = await Promise.race([answer, new Promise<string>(resolve => signal.addEventListener('abort', () => { resolve(`timeout: ${(signal.reason as Error).name}`) }))])
      // The timeout still fires on virtual time once its 50 ms have passed.
      await new Promise(resolve => setTimeout(resolve, 100))
      return { got, aborted: signal.aborted, reason: (signal.reason as Error).name }
    })
    expect(out).toEqual({ got: 'answer', aborted: true, reason: 'TimeoutError' })
  })

  it('node:timers/promises runs on the virtual clock', async () => {
    // A namespace read at call time, as an ES module's named import (a live binding) is.
    const timers = await import('node:timers/promises')
    const elapsed = await withVirtualTime(async vt => { await timers.setTimeout(90_000); return vt.elapsedMs() })
    expect(elapsed).toBe(90_000)
  })

  it('restores the real globals after a run and after a failing run', async () => {
    const real = { setTimeout: globalThis.setTimeout, Date: globalThis.Date, timeout: AbortSignal.timeout, now: performance.now }
    await withVirtualTime(async () => { expect(virtualTimeActive()).toBe(true); expect(globalThis.setTimeout).not.toBe(real.setTimeout) })
    expect({ setTimeout: globalThis.setTimeout, Date: globalThis.Date, timeout: AbortSignal.timeout, now: performance.now }).toEqual(real)
    expect(virtualTimeActive()).toBe(false)
    await expect(withVirtualTime(async () => { await new Promise(resolve => setTimeout(resolve, 5)); throw new Error('boom') })).rejects.toThrow('boom')
    expect({ setTimeout: globalThis.setTimeout, Date: globalThis.Date, timeout: AbortSignal.timeout, now: performance.now }).toEqual(real)
    expect(virtualTimeActive()).toBe(false)
    // Real time runs again: a real 1 ms timer fires.
    await new Promise(resolve => setTimeout(resolve, 1))
  })

  it('fails clearly when the run waits on nothing, or past its virtual budget, or is nested', async () => {
    await expect(withVirtualTime(async () => { await new Promise(() => undefined) })).rejects.toThrow(/waits on nothing/)
    await expect(withVirtualTime(async () => { setInterval(() => undefined, 1000); await new Promise(() => undefined) }, { maxVirtualMs: 10_000 })).rejects.toThrow(SimStateError)
    await expect(withVirtualTime(async () => { await withVirtualTime(async () => undefined) })).rejects.toThrow(/not re-entrant/)
    expect(virtualTimeActive()).toBe(false)
  })
})
