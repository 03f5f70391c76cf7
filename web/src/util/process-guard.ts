/**
 * Long-running Node processes (the relay, `webswarm serve`, `generate --bootstrap`,
 * `train --bootstrap`) serve many peers at once. Node's default ends the process on an unhandled
 * promise rejection, so one stray rejection on one peer's connection (a WebRTC teardown racing a
 * timeout, an abort reason nobody awaited) would drop every other peer and, for a trainer, its
 * state. The guard logs each such rejection with its stack, counts it, and keeps the process
 * running. Uncaught exceptions are left to Node: a throw out of synchronous code may leave state
 * half-updated, and ending is the safer answer there.
 */

/** The text of a rejection reason: stack (or name and message) for errors, String() for the rest. */
export function describeReason (reason: unknown): string {
  if (reason instanceof Error) return reason.stack ?? `${reason.name}: ${reason.message}`
  try { return typeof reason === 'object' && reason !== null ? JSON.stringify(reason) ?? String(reason) : String(reason) } catch { return String(reason) }
}

/**
 * Installs the guard for process `name` (the log prefix); `onRejection` runs after the log line
 * (e.g. a metrics counter). Returns the uninstaller. Rejections are counted in `rejections()`.
 */
export function keepRunningOnUnhandledRejections (name: string, onRejection?: (reason: unknown) => void, log: (line: string) => void = (l) => { console.error(l) }): { uninstall: () => void, rejections: () => number } {
  let count = 0
  const handler = (reason: unknown): void => {
    count++
    log(`${name}: unhandled promise rejection #${count} (logged; still running): ${describeReason(reason)}`)
    onRejection?.(reason)
  }
  process.on('unhandledRejection', handler)
  return { uninstall: () => { process.off('unhandledRejection', handler) }, rejections: () => count }
}
