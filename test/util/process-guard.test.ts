/**
 * A stray unhandled rejection ends a plain Node process; with the guard (relay, swarm CLI
 * commands) it is logged with its stack and the process keeps running.
 */
import { execFile } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { describeReason } from '../../web/src/util/process-guard.ts'

function runChild (...args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile('node_modules/.bin/tsx', ['test/util/process-guard-child.ts', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout, stderr })
    })
  })
}

describe('process guard', () => {
  it('without it a stray rejection ends the process; with it the process logs it and keeps running', async () => {
    const [bare, guarded] = await Promise.all([runChild(), runChild('guard')])
    expect(bare.code).not.toBe(0)
    expect(bare.stdout).not.toContain('alive')
    expect(guarded.code).toBe(0)
    expect(guarded.stdout).toContain('alive')
    expect(guarded.stderr).toMatch(/child: unhandled promise rejection #1 \(logged; still running\): Error: stray rejection on a closed peer connection\n\s+at /)
  }, 90_000)

  it('describes errors, events and plain values', () => {
    expect(describeReason(new RangeError('x'))).toMatch(/^RangeError: x/)
    expect(describeReason({ type: 'close' })).toBe('{"type":"close"}')
    expect(describeReason('boom')).toBe('boom')
    expect(describeReason(undefined)).toBe('undefined')
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(describeReason(cyclic)).toBe('[object Object]')
  })
})
