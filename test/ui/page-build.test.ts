import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

/**
 * The page's production build prints no warning: Node-only code that the page bundles reaches
 * node: built-ins out of Vite's sight (util/node-builtin.ts), and no module is imported both
 * statically and dynamically (such a dynamic import splits nothing off). The build runs in its own
 * process without vitest's NODE_ENV=test, under which Vite does not report externalized built-ins.
 */
describe('vite build of the page', () => {
  it('warns about nothing: no node: module externalized for the browser, no ineffective dynamic import', () => {
    const out = mkdtempSync(join(tmpdir(), 'webswarm-build-'))
    try {
      const { NODE_ENV: _test, ...env } = process.env
      const r = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn', '--outDir', out, '--emptyOutDir'], { encoding: 'utf8', env: { ...env, NO_COLOR: '1' } })
      expect(r.status, r.stderr).toBe(0)
      expect(`${r.stdout}${r.stderr}`.trim()).toBe('')
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })
})
