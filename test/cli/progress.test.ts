import { describe, expect, it } from 'vitest'
import { LOG_INTERVAL_MS, TTY_INTERVAL_MS, stderrProgress } from '../../web/src/cli/progress.ts'
import { ProgressMeter, formatDuration, formatProgress, formatSize } from '../../web/src/util/progress.ts'

/** A clock the test moves by hand. */
function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1000
  return { now: () => t, advance: ms => { t += ms } }
}

describe('ProgressMeter', () => {
  it('measures rate over the recent window and the ETA at that rate', () => {
    const c = fakeClock()
    const m = new ProgressMeter(c.now, 5000)
    const s0 = m.update(0, 100e6)
    expect(s0.rate).toBeUndefined()
    expect(s0.etaS).toBeUndefined()
    c.advance(1000)
    const s1 = m.update(10e6, 100e6)
    expect(s1.rate).toBeCloseTo(10e6)
    expect(s1.etaS).toBeCloseTo(9)
    expect(s1.fraction).toBeCloseTo(0.1)
    // The link speeds up: after the window has passed, only recent samples count.
    for (let i = 0; i < 10; i++) { c.advance(1000); m.update(10e6 + (i + 1) * 5e6, 100e6) }
    const s = m.update(60e6, 100e6)
    expect(s.rate).toBeCloseTo(5e6, -3)
    expect(s.etaS).toBeCloseTo(8, 0)
    expect(s.elapsedS).toBe(11)
    c.advance(500)
    const done = m.update(100e6, 100e6)
    expect(done.done).toBe(true)
    expect(done.etaS).toBe(0)
  })

  it('formats sizes, durations and the whole line', () => {
    expect(formatSize(807_690_240)).toBe('808 MB')
    expect(formatSize(38_234_000)).toBe('38.2 MB')
    expect(formatSize(1_420_000_000)).toBe('1.42 GB')
    expect(formatSize(12)).toBe('12 B')
    expect(formatDuration(75)).toBe('1:15')
    expect(formatDuration(3725)).toBe('1:02:05')
    expect(formatProgress('model.gguf', { bytesLoaded: 412e6, bytesTotal: 808e6, fraction: 412 / 808, elapsedS: 10, rate: 38.2e6, etaS: 10.4, done: false }))
      .toBe('model.gguf  412 MB / 808 MB  50%  38.2 MB/s  ETA 0:10')
    expect(formatProgress('m', { bytesLoaded: 5, bytesTotal: 5, fraction: 1, elapsedS: 21, done: true })).toBe('m  5 B / 5 B  100%  done in 0:21')
  })
})

describe('stderrProgress', () => {
  it('redraws one line on a terminal at most every TTY_INTERVAL_MS, and ends it', () => {
    const c = fakeClock()
    const out: string[] = []
    const p = stderrProgress('w', { write: s => out.push(s), isTTY: true, clock: c.now })
    p({ bytesLoaded: 0, bytesTotal: 1000 })
    c.advance(TTY_INTERVAL_MS / 2)
    p({ bytesLoaded: 100, bytesTotal: 1000 }) // too soon: skipped
    c.advance(TTY_INTERVAL_MS)
    p({ bytesLoaded: 500, bytesTotal: 1000 })
    p({ bytesLoaded: 1000, bytesTotal: 1000 }) // done: always written
    p({ bytesLoaded: 1000, bytesTotal: 1000 }) // after the end: nothing
    expect(out.length).toBe(3)
    expect(out.every(s => s.startsWith('\r'))).toBe(true)
    expect(out[1]).toContain('500 B / 1.00 kB  50%')
    expect(out[2]).toMatch(/done in 0:00\x1b\[K\n$/)
  })

  it('writes whole lines, one per LOG_INTERVAL_MS, when stderr is not a terminal', () => {
    const c = fakeClock()
    const out: string[] = []
    const p = stderrProgress('w', { write: s => out.push(s), isTTY: false, clock: c.now })
    for (let i = 0; i <= 30; i++) { p({ bytesLoaded: i * 100, bytesTotal: 3000 }); c.advance(1000) }
    // 0 s starts the clock; 10 s and 20 s report; 30 s is the end.
    expect(out.length).toBe(3)
    expect(out[0]).toMatch(/^w {2}1.00 kB \/ 3.00 kB {2}33% {2}100 B\/s {2}ETA 0:20\n$/)
    expect(out[2]).toMatch(/100% {2}100 B\/s {2}done in 0:30\n$/)
    expect(LOG_INTERVAL_MS).toBe(10_000)
  })

  it('stays silent in a log for a load quicker than LOG_INTERVAL_MS', () => {
    const c = fakeClock()
    const out: string[] = []
    const p = stderrProgress('w', { write: s => out.push(s), isTTY: false, clock: c.now })
    for (let i = 0; i <= 5; i++) { p({ bytesLoaded: i * 100, bytesTotal: 500 }); c.advance(1000) }
    expect(out).toEqual([])
  })
})
