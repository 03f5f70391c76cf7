/**
 * DhtDirectory's expert records over an in-memory stand-in for SwarmDht (put/get/provide/
 * findProviders with the same key layout): a peer that moves re-writes the keys of experts it
 * dropped, so readers stop listing them at once; OFFLINE withdrawals are read back as such; a
 * malformed record under one key does not hide the peer's good ones.
 */
import { describe, expect, it } from 'vitest'
import type { SwarmDht } from '../../../web/src/net/dht/index.ts'
import { DhtDirectory } from '../../../web/src/swarm/dht-directory.ts'
import { hostsFromRecords } from '../../../web/src/swarm/moe/remote-experts.ts'

/** key → { payload, signer }; topic → providers. Signer = the writing directory's peer. */
function fakeDht (self: string, store: Map<string, { payload: Uint8Array, signer: string }>, providers: Map<string, Set<string>>): SwarmDht {
  const fake = {
    put: async (key: string, payload: Uint8Array) => { store.set(key, { payload, signer: self }) },
    get: async (key: string) => {
      const r = store.get(key)
      if (r === undefined) throw new Error(`no record ${key}`)
      return { ...r, key, expiresAt: Date.now() + 60_000 }
    },
    provide: async (topic: string) => { providers.set(topic, new Set([...(providers.get(topic) ?? []), self])) },
    findProviders: async (topic: string) => [...(providers.get(topic) ?? [])]
  }
  return fake as unknown as SwarmDht
}

function swarm () {
  const store = new Map<string, { payload: Uint8Array, signer: string }>()
  const providers = new Map<string, Set<string>>()
  const dir = (peer: string): DhtDirectory => new DhtDirectory(fakeDht(peer, store, providers), peer, { numBlocks: 2, numExperts: 4 })
  return { store, dir }
}

const rec = (peer: string, experts: number[], version: number, state: 'joining' | 'online' | 'offline' = 'online') =>
  ({ peer, model: 'm', layer: 1, experts, throughput: 2, version, expiresAt: 0, state })

describe('DhtDirectory expert records', () => {
  it('a move re-writes the dropped experts\' keys; readers see only the new placement', async () => {
    const { dir, store } = swarm()
    const a = dir('a')
    await a.announceExperts(rec('a', [0, 1], 1))
    await a.announceExperts(rec('a', [2, 3], 2))
    const seen = await dir('reader').expertRecords('m', 1)
    expect(seen.map(r => [r.peer, r.experts.join(','), r.version, r.state])).toEqual([['a', '2,3', 2, 'online']])
    expect([...hostsFromRecords(seen).keys()].sort()).toEqual([2, 3])
    // Even a reader that cannot reach the new keys does not see the stale claim on 0 and 1.
    for (const k of [...store.keys()]) if (/\/1\/[23]\/a$/.test(k)) store.delete(k)
    expect(await dir('reader').expertRecords('m', 1)).toEqual([])
  })

  it('joining and offline records are read back with their state; callers use only online ones', async () => {
    const { dir } = swarm()
    await dir('a').announceExperts(rec('a', [0, 1], 1, 'joining'))
    await dir('b').announceExperts(rec('b', [2, 3], 1))
    await dir('b').announceExperts(rec('b', [2, 3], 2, 'offline'))
    const seen = await dir('reader').expertRecords('m', 1)
    expect(seen.map(r => [r.peer, r.state]).sort()).toEqual([['a', 'joining'], ['b', 'offline']])
    expect(hostsFromRecords(seen).size).toBe(0)
  })

  it('a malformed record under one key is skipped; the peer\'s valid record is still found', async () => {
    const { dir, store } = swarm()
    await dir('a').announceExperts(rec('a', [0, 1], 3))
    const k = [...store.keys()].find(x => x.endsWith('/1/0/a'))!
    store.set(k, { payload: new TextEncoder().encode('{"model":"m","layer":1,"experts":[0,0],"throughput":1,"version":9}'), signer: 'a' })
    const seen = await dir('reader').expertRecords('m', 1)
    expect(seen.map(r => [r.peer, r.experts.join(','), r.version])).toEqual([['a', '0,1', 3]])
  })
})
