/**
 * Virtual time for code that takes a `Clock` (the swarm's client/server stack over MemoryNetwork).
 * Code that calls the global timers itself (libp2p in the DHT sim) runs under virtual-time.ts instead.
 *
 * Runs async code in virtual time: a ManualClock is a discrete-event simulation whose next timer
 * fires only when nothing else can happen — the seeded network has nothing waiting for delivery,
 * no compute is under way (`busy()`), and a few turns of the event loop went by with nothing
 * delivered, no timer set or fired. A link's latency or a server's compute time then costs
 * simulated milliseconds, and the figures are the same on an idle and on a loaded machine.
 *
 * Sound while the code under test works in this thread (message deliveries, synchronous compute,
 * promise chains and `setImmediate` turns) and waits on nothing but the clock: a real timer would
 * be outrun by the clock (the sim turns hedging off for that reason: its deadlines are real timers).
 */
import type { ManualClock } from '../util/clock.ts'
import type { MemoryNetwork } from '../swarm/transport/memory.ts'
import { SimStateError } from './errors.ts'

/** Event-loop turns in a row with nothing happening before the clock may move. */
const QUIET_TURNS = 3

export interface VirtualTimeOptions {
  /** Work not visible to the network or the clock is under way (e.g. a forward being computed). @default never */
  busy?: () => boolean
  /** Give up (SimStateError) past this much virtual time from the start. @default 1 hour */
  maxMs?: number
}

async function turn (): Promise<void> {
  await new Promise<void>(resolve => { setImmediate(resolve) })
}

/**
 * Awaits `work`, moving `clock` to its next timer each time everything else is quiet. Throws
 * SimStateError when `work` waits on nothing (no timer left: a deadlock) or runs past `maxMs`.
 */
export async function inVirtualTime<T> (clock: ManualClock, net: MemoryNetwork, work: Promise<T>, opts: VirtualTimeOptions = {}): Promise<T> {
  let settled = false
  const done = work.finally(() => { settled = true })
  // The driver reports the outcome through `done`; this copy only keeps it from being unhandled meanwhile.
  done.catch(() => {})
  const deadline = clock.now() + (opts.maxMs ?? 3_600_000)
  const busy = opts.busy ?? (() => false)
  const signature = (): string => `${net.delivered}/${net.lost}/${net.queued}/${clock.pending}/${clock.fired}`
  let quiet = 0
  let last = ''
  while (!settled) {
    if (net.queued > 0) {
      // The pump delivers one message per 0 ms timer: wait on the same timer queue.
      await new Promise<void>(resolve => { setTimeout(resolve, 0) })
      quiet = 0
      continue
    }
    await turn()
    const now = signature()
    quiet = now === last && !busy() ? quiet + 1 : 0
    last = now
    if (quiet < QUIET_TURNS || settled) continue
    quiet = 0
    const due = clock.nextDue()
    if (due === undefined) throw new SimStateError(`virtual time: the work waits on nothing (no timer pending at ${clock.now()} ms)`)
    if (due > deadline) throw new SimStateError(`virtual time: the work ran past ${opts.maxMs ?? 3_600_000} ms of simulated time`)
    clock.runNext()
  }
  return await done
}
