/**
 * Load progress on stderr: bytes, rate and ETA, rewritten in place on a terminal (at most every
 * TTY_INTERVAL_MS) and ended with a final line; otherwise (a log, a pipe) one line every
 * LOG_INTERVAL_MS and a final one only for a load that printed any (quick loads stay silent, so
 * scripted runs' stderr carries only what went wrong).
 */
import type { LoadProgress } from '../model/weights.ts'
import { ProgressMeter, formatProgress } from '../util/progress.ts'

/** Redraw period of the in-place line on a terminal, ms. */
export const TTY_INTERVAL_MS = 200
/** Period of progress lines when stderr is a file or pipe, ms. */
export const LOG_INTERVAL_MS = 10_000

export interface StderrProgressOptions {
  /** @default process.stderr.write */
  write?: (s: string) => void
  /** @default process.stderr.isTTY */
  isTTY?: boolean
  /** Milliseconds, monotonic. @default performance.now */
  clock?: () => number
}

/** A LoadOptions.onProgress callback printing `label` and the figures. */
export function stderrProgress (label: string, opts: StderrProgressOptions = {}): (p: Pick<LoadProgress, 'bytesLoaded' | 'bytesTotal'>) => void {
  const write = opts.write ?? ((s: string) => { process.stderr.write(s) })
  const tty = opts.isTTY ?? process.stderr.isTTY === true
  const clock = opts.clock ?? (() => performance.now())
  const meter = new ProgressMeter(clock)
  let last: number | undefined
  let printed = false
  let finished = false
  return p => {
    if (finished) return
    const s = meter.update(p.bytesLoaded, p.bytesTotal)
    const now = clock()
    const every = tty ? TTY_INTERVAL_MS : LOG_INTERVAL_MS
    if (s.done) finished = true
    if (!s.done && last !== undefined && now - last < every) return
    if (!tty && (s.done ? !printed : last === undefined)) { last ??= now; return }
    last = now
    printed = true
    const line = formatProgress(label, s)
    if (tty) write(`\r${line}\x1b[K${s.done ? '\n' : ''}`)
    else write(`${line}\n`)
  }
}
