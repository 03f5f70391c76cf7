import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../web/src/model/config.ts'
import type { PeerEntry } from '../../web/src/net/crdt/entries.ts'
import { demandOf, trainingBytes } from '../../web/src/ui/role-inputs.ts'

const config = (name: string): ReturnType<typeof parseConfig> => parseConfig(JSON.parse(readFileSync(`models/${name}/config.json`, 'utf8')))
const entry = (peer: string, data: Record<string, unknown>): PeerEntry => ({ peer, seq: 1, expiresAt: Date.now() + 60_000, data })

describe('role inputs', () => {
  it('sizes a training member from the parameter count (models/README.md: byte-llama 353,952, byte-mixtral 576,288)', () => {
    expect(trainingBytes(config('byte-llama'))).toBe(353_952 * 4 * 6)
    expect(trainingBytes(config('byte-mixtral'))).toBe(576_288 * 4 * 6)
  })

  it('counts demand from the peers chatting with each model, not this tab nor malformed fields', () => {
    const d = demandOf([entry('a', { chatting: 'm' }), entry('b', { chatting: 'm' }), entry('c', { chatting: 'n' }), entry('me', { chatting: 'n' }), entry('x', { chatting: 5 }), entry('y', { chatting: '' })], 'me')
    expect([...d]).toEqual([['m', 2], ['n', 1]])
  })
})
