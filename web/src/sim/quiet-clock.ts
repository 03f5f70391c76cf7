/**
 * Drives a ManualClock as a discrete-event simulation: its next timer fires only when nothing
 * else can happen — every peer the test names is parked inside the code under test (`stuck()`)
 * and the seeded network has delivered nothing for a few macrotasks. A timeout therefore fires
 * exactly when the protocol is waiting on it (a dead peer's missing part), never because the
 * machine was slow: the outcome is the same on an idle and on a loaded machine.
 *
 * Sound only while the code that `stuck()` covers does its work in this thread: message
 * deliveries (the MemoryNetwork's pump, one `setTimeout(0)` per message, in FIFO order with this
 * driver's own) and synchronous compute. Work off the thread (crypto digests, GPU) must happen
 * outside what `stuck()` reports.
 */
import type { ManualClock } from '../util/clock.ts'
import type { MemoryNetwork } from '../swarm/transport/memory.ts'
import type { AllReducePeer } from '../swarm/train/allreduce.ts'

/**
 * All-reduce timeouts for tests on a ManualClock: in virtual time their length costs nothing, and
 * the transport's request timeouts derived from them (real time: READY waits coordinatorTimeoutMs,
 * REDUCE 2 × and FETCH 3 × partTimeoutMs) are minutes, so only the clock decides.
 */
export const CLOCKED_TIMING = { partTimeoutMs: 30_000, readyWindowMs: 30_000, coordinatorTimeoutMs: 300_000 }

/** Macrotasks in a row with no delivery before the network counts as quiet (the pump and the driver share one timer queue: 2 would do). */
const QUIET_TURNS = 3

export interface QuietDriver {
  /** Ends the loop (call in afterEach / at the end of the test). */
  stop: () => void
  /** Timers this driver fired. */
  readonly fired: number
}

/**
 * Wraps `ar.reduce` so that `count(+1)` runs as a call starts and `count(-1)` as it settles: the
 * calls in progress are what a driver's `stuck()` reads (a peer waiting inside the all-reduce).
 */
export function countReduces (ar: AllReducePeer, count: (delta: 1 | -1) => void): void {
  const reduce = ar.reduce.bind(ar)
  ar.reduce = async (...args: Parameters<AllReducePeer['reduce']>) => {
    count(1)
    try { return await reduce(...args) } finally { count(-1) }
  }
}

export function driveWhenQuiet (clock: ManualClock, net: MemoryNetwork, stuck: () => boolean): QuietDriver {
  let stopped = false
  let quiet = 0
  let last = -1
  let fired = 0
  const tick = (): void => {
    if (stopped) return
    const seen = net.delivered + net.lost
    quiet = seen === last && stuck() ? quiet + 1 : 0
    last = seen
    if (quiet >= QUIET_TURNS && clock.runNext()) { fired++; quiet = 0 }
    setTimeout(tick, 0)
  }
  setTimeout(tick, 0)
  return { stop: () => { stopped = true }, get fired () { return fired } }
}
