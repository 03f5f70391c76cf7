import { execFileSync, spawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from 'node:child_process'

/**
 * Runs a TypeScript entry point as one process, `node --import tsx FILE ARGS` — not through the
 * `tsx` launcher. The launcher is a parent process that relays signals to its child: when the
 * child's acknowledgement misses its short wait (a loaded machine), it sends the signal again, then
 * SIGKILLs the child and exits 143, so a test of graceful SIGTERM handling failed at random.
 */
export function spawnTs (file: string, args: readonly string[], opts: SpawnOptionsWithoutStdio = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', file, ...args], { ...opts, stdio: 'pipe' })
}

/** Runs a TypeScript entry point to completion (see spawnTs) and returns its stdout. */
export function execTs (file: string, args: readonly string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', file, ...args], { encoding: 'utf8' })
}
