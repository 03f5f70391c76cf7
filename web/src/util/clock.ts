/**
 * Time as a dependency. Code that waits (a ready window, a part timeout, a hedge deadline) takes
 * a Clock instead of calling the globals, so that a test can decide when a timeout fires instead
 * of hoping the machine is fast enough: `realClock` by default, a `ManualClock` in tests whose
 * subject is the timeout itself.
 */

/** An opaque timer handle (a number in browsers, an object in Node): only the clock that made it can clear it. */
export interface TimerHandle { readonly __brand?: 'TimerHandle' }

export interface Clock {
  /** Milliseconds; only differences are meaningful (realClock: since the epoch). */
  now: () => number
  /** Runs `fn` once after `ms` milliseconds of this clock's time. */
  setTimeout: (fn: () => void, ms: number) => TimerHandle
  /** Cancels a timer of this clock; an already fired or cleared one is ignored. */
  clearTimeout: (handle: TimerHandle | undefined) => void
}

/** The process's own timers and wall clock. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as TimerHandle,
  clearTimeout: (handle) => { if (handle !== undefined) clearTimeout(handle as ReturnType<typeof setTimeout>) }
}

/**
 * Runs `fn` every `ms` of `clock`'s time until the returned function is called (a chain of
 * timeouts: Clock has no interval, and a ManualClock fires each period in turn).
 */
export function every (clock: Clock, ms: number, fn: () => void): () => void {
  let handle: TimerHandle | undefined
  let stopped = false
  const schedule = (): void => {
    handle = clock.setTimeout(() => {
      fn()
      if (!stopped) schedule()
    }, ms)
  }
  schedule()
  return () => { stopped = true; clock.clearTimeout(handle) }
}

interface ManualTimer {
  at: number
  /** Creation order: timers due at the same time fire in the order they were set. */
  seq: number
  fn: () => void
}

/**
 * A clock that moves only when told to (`advance`, `runNext`): timers fire in due-time order,
 * each seeing `now()` equal to its due time. Deterministic whatever the machine's load.
 */
export class ManualClock implements Clock {
  private time: number
  private seq = 0
  private readonly timers = new Set<ManualTimer>()
  /** Timers fired so far (tests assert that a timeout really happened, or never did). */
  fired = 0

  /** @param start the initial `now()`, ms. @default 0 */
  constructor (start = 0) {
    this.time = start
  }

  now = (): number => this.time

  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    // Like the global: a negative, NaN or missing delay means "as soon as possible".
    const t: ManualTimer = { at: this.time + (ms > 0 ? ms : 0), seq: this.seq++, fn }
    this.timers.add(t)
    return t as TimerHandle
  }

  clearTimeout = (handle: TimerHandle | undefined): void => {
    this.timers.delete(handle as unknown as ManualTimer)
  }

  /** Timers set and not yet fired or cleared. */
  get pending (): number {
    return this.timers.size
  }

  /** Due time of the earliest pending timer, or undefined when none is set. */
  nextDue (): number | undefined {
    return this.earliest()?.at
  }

  /** Moves time forward by `ms`, firing every timer due by then (including ones set by those firing). */
  advance (ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ms must be ≥ 0, got ${ms}`)
    const end = this.time + ms
    for (let t = this.earliest(); t !== undefined && t.at <= end; t = this.earliest()) this.fire(t)
    this.time = end
  }

  /** Jumps to the earliest pending timer and fires it (and any due at the same time); false when none is set. */
  runNext (): boolean {
    const t = this.earliest()
    if (t === undefined) return false
    this.advance(t.at - this.time)
    return true
  }

  private fire (t: ManualTimer): void {
    this.timers.delete(t)
    this.time = Math.max(this.time, t.at)
    this.fired++
    t.fn()
  }

  private earliest (): ManualTimer | undefined {
    let best: ManualTimer | undefined
    for (const t of this.timers) if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t
    return best
  }
}
