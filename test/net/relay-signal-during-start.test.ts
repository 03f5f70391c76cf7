import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { spawnTs } from '../helpers/spawn-ts.ts'

/** Watchdog of the wait for the relay's first log line; a passing run never waits for it. */
const WATCHDOG_MS = 120_000

const dirs: string[] = []
afterAll(async () => { for (const d of dirs) await fs.rm(d, { recursive: true, force: true }) })

describe('relay process: a signal during start', { timeout: 2 * WATCHDOG_MS }, () => {
  it('SIGTERM right after the libp2p node listens (the API still loading) stops cleanly and exits 0', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-relay-sig-'))
    dirs.push(dataDir)
    // With the API on: main.ts then imports and starts it after the relay node is up, the window
    // in which a SIGTERM used to meet no handler (killed by the signal, no CRDT flush).
    const child = spawnTs('relay/main.ts', ['--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--no-embedded-peer'])
    let out = ''
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => { resolve({ code, signal }) }))
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => { reject(new Error(`relay did not log its listen addresses in ${WATCHDOG_MS} ms: ${out}`)) }, WATCHDOG_MS)
        const onData = (c: Buffer): void => {
          out += c.toString()
          if (/relay \S+ listening:/.test(out)) { clearTimeout(t); resolve() }
        }
        child.stdout.on('data', onData)
        child.stderr.on('data', (c: Buffer) => { out += c.toString() })
        child.on('exit', () => { clearTimeout(t); reject(new Error(`relay exited before listening: ${out}`)) })
      })
      // The first log line comes from inside startRelay: whatever main.ts still has to do, the
      // signal must find its handler (no wait here decides the outcome).
      child.kill('SIGTERM')
      const { code, signal } = await exited
      expect({ code, signal }, out).toEqual({ code: 0, signal: null })
      expect(out).toMatch(/SIGTERM received/)
      expect(out).toMatch(/relay: stopped/)
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })
})
