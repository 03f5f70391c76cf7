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

/** A TypeScript command run as a child process (see runTs). */
export interface TsRun {
  child: ChildProcessWithoutNullStreams
  /** Stdout up to its first newline (a ready line); rejects on exit or after `readyMs`. */
  firstLine: Promise<string>
  /** The exit code (null when killed by a signal). */
  code: Promise<number | null>
  stderr: () => string
  stdout: () => string
}

/** Runs `file` (spawnTs), collecting its output; `firstLine` waits for its ready line. */
export function runTs (file: string, args: readonly string[], readyMs: number): TsRun {
  const child = spawnTs(file, args)
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  const firstLine = new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no output from ${args[0]} in ${readyMs} ms; stderr: ${err}`)), readyMs)
    child.stdout.on('data', () => { if (out.includes('\n')) { clearTimeout(t); resolve(out) } })
    child.on('exit', c => { clearTimeout(t); reject(new Error(`${args[0]} exited ${c}: ${err}`)) })
  })
  firstLine.catch(() => {}) // a run expected to fail is awaited by its exit code instead
  return { child, firstLine, code, stderr: () => err, stdout: () => out }
}
