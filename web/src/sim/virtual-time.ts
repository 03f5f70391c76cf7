/**
 * Discrete-event time for a simulation that runs real asynchronous code (the DHT sim's libp2p
 * nodes): inside `withVirtualTime(fn)` the clock stands still while anything is runnable and
 * jumps to the next due timer only when the process has nothing left to do, so CPU time costs no
 * simulated time. N nodes sharing one slow event loop then see the network the model describes
 * (its latencies, its timeouts), not the lag of this machine.
 *
 * Faked for the run's lifetime, then restored: setTimeout/setInterval and their clears (also
 * `node:timers` and `node:timers/promises`), Date, performance.now, and AbortSignal.timeout
 * (native: it would otherwise fire on real time; libp2p uses it for most of its budgets). Kept
 * real so the driver can drain work: setImmediate, queueMicrotask, process.nextTick.
 *
 * Why @sinonjs/fake-timers rather than a scheduler of our own: it already fakes every one of
 * those globals and Node's timers modules consistently (timer objects with ref/unref/refresh,
 * Date called as a function or constructed, performance), and it keeps pending timers in a heap,
 * so finding the next one stays cheap with tens of thousands pending. What it lacks is the
 * driver (its async helpers yield to a real setTimeout per step): that is `withVirtualTime`.
 */
import FakeTimers from '@sinonjs/fake-timers'
import { syncBuiltinESMExports } from 'node:module'
import { SimConfigError, SimStateError } from './errors.ts'

export interface VirtualTimeInit {
  /** Virtual epoch ms at the start (what Date.now() returns first). @default 1_800_000_000_000 (2027) */
  startMs?: number
  /**
   * The run fails once this much virtual time has passed with `fn` unsettled: a run that waits
   * on an interval forever would otherwise spin without end. @default 24 h
   */
  maxVirtualMs?: number
}

/** The run's clock, handed to `fn`. */
export interface VirtualTime {
  /** Virtual ms since the epoch (Date.now() inside the run). */
  now: () => number
  /** Virtual ms since the run began. */
  elapsedMs: () => number
  /** Timers fired so far (each one a discrete event). */
  events: () => number
}

/** Real setImmediate turns one drain may take before time moves on anyway (a self-rescheduling loop). */
const MAX_DRAIN_TURNS = 10_000

let installed = false

/** True while a `withVirtualTime` run has the globals faked. */
export function virtualTimeActive (): boolean {
  return installed
}

/**
 * Runs `fn` on virtual time and returns what it returns. The globals are restored when `fn`
 * settles, when it throws, and when the run fails (a timer callback that threw, `maxVirtualMs`
 * passed, or nothing left to run while `fn` still waits). Not re-entrant: one run at a time.
 */
export async function withVirtualTime<T> (fn: (time: VirtualTime) => Promise<T>, init: VirtualTimeInit = {}): Promise<T> {
  const startMs = init.startMs ?? 1_800_000_000_000
  const maxVirtualMs = init.maxVirtualMs ?? 24 * 3600_000
  if (!(maxVirtualMs > 0)) throw new SimConfigError(`maxVirtualMs ${maxVirtualMs} must be > 0`)
  if (installed) throw new SimStateError('virtual time is already installed (withVirtualTime is not re-entrant)')
  // Captured before install: the driver's own turns are real.
  const realSetImmediate = globalThis.setImmediate
  const baseline = countResources()
  const nativeTimeout = AbortSignal.timeout
  const clock = FakeTimers.install({
    now: startMs,
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    shouldClearNativeTimers: false
  })
  installed = true
  let events = 0
  // The native AbortSignal.timeout runs on the real clock: rebuild it on the faked setTimeout.
  AbortSignal.timeout = (ms: number): AbortSignal => {
    const ac = new AbortController()
    setTimeout(() => { ac.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, ms)
    return ac.signal
  }
  // ES modules that imported node:timers(/promises) by name see fake-timers' replacements only after this.
  syncBuiltinESMExports()
  const time: VirtualTime = { now: () => clock.now, elapsedMs: () => clock.now - startMs, events: () => events }
  try {
    let settled = false
    const run = Promise.resolve().then(async () => await fn(time)).finally(() => { settled = true })
    // A rejection is read below, after the loop; this keeps it from counting as unhandled meanwhile.
    run.catch(() => undefined)
    const turn = async (): Promise<void> => { await new Promise<void>(resolve => realSetImmediate(resolve)) }
    while (!settled) {
      // Drain: real turns until no immediate or I/O request of the run's is pending; every
      // microtask and nextTick has run by the end of a turn.
      for (let i = 0; i < MAX_DRAIN_TURNS && !settled; i++) {
        await turn()
        if (!busy(baseline)) break
      }
      if (settled) break
      if (clock.now - startMs > maxVirtualMs) throw new SimStateError(`virtual time passed ${maxVirtualMs} ms and the run has not settled`)
      if (clock.countTimers() === 0) throw new SimStateError('the run waits on nothing: no work runnable and no timer pending, so it can never settle')
      try {
        clock.next()
      } catch (e) {
        throw new SimStateError(`a timer callback threw on virtual time: ${(e as Error).message}`)
      }
      events++
    }
    return await run
  } finally {
    clock.uninstall()
    AbortSignal.timeout = nativeTimeout
    syncBuiltinESMExports()
    installed = false
  }
}

function countResources (): Map<string, number> {
  const m = new Map<string, number>()
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1)
  return m
}

/** Requests (one-off I/O whose callback is still to come), as process.getActiveResourcesInfo() names them. */
const REQUEST = /Req|WriteWrap|ShutdownWrap/

/**
 * Whether an immediate, or an I/O request beyond those pending when the run began, is still to
 * run. Handles (sockets, servers, real timers) stay open without being work in progress.
 */
function busy (baseline: Map<string, number>): boolean {
  for (const [r, n] of countResources()) {
    if (r === 'Immediate') return true
    if (REQUEST.test(r) && n > (baseline.get(r) ?? 0)) return true
  }
  return false
}
