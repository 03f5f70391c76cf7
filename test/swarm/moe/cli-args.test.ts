/** `webswarm serve` expert flags: parsing and the one-line usage errors (checked before joining the swarm). */
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { UsageError } from '../../../web/src/cli/args.ts'
import { parseExperts, parseLayers } from '../../../web/src/cli/serve.ts'

describe('serve expert flags', () => {
  it('parses --experts and --expert-layers', () => {
    expect(parseExperts('1:0,1;0:3', 2, 4)).toEqual(new Map([[1, new Set([0, 1])], [0, new Set([3])]]))
    expect(parseLayers(undefined, 3)).toEqual([0, 1, 2])
    expect(parseLayers('2, 0', 3)).toEqual([2, 0])
  })

  it('bad values are usage errors naming the problem', () => {
    expect(() => parseExperts('2:0', 2, 4)).toThrow(/layer 2 ≥ 2/)
    expect(() => parseExperts('1:4', 2, 4)).toThrow(/expert 4 ≥ 4/)
    expect(() => parseExperts('one', 2, 4)).toThrow(UsageError)
    expect(() => parseLayers('3', 3)).toThrow(/not a list of layers in \[0, 3\)/)
    expect(() => parseLayers('1,1', 3)).toThrow(/twice/)
    expect(() => parseLayers('', 3)).toThrow(UsageError)
  })

  it('the command exits 2 with one line for too many slots, before any network set-up', () => {
    const r = spawnSync('node_modules/.bin/tsx', ['web/src/cli/bin.ts', 'serve', '--model', 'test/fixtures/tiny-mixtral', '--bootstrap', '/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '--experts', 'auto', '--expert-layers', '1', '--expert-slots', '5', '--device', 'cpu'], { encoding: 'utf8', timeout: 60_000 })
    expect(r.status).toBe(2)
    expect(r.stderr.trim()).toBe('webswarm: --expert-slots 5 exceeds the 4 experts of --expert-layers')
  })
})
