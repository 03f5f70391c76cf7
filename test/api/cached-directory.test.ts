/** The API's shared records lookup (web/src/api/cached-directory.ts): shared, fresh, stale-while-refreshing, expired. */
import { describe, expect, it } from 'vitest'
import { CachedDirectory } from '../../web/src/api/cached-directory.ts'
import type { BlockRecord, SwarmDirectory } from '../../web/src/swarm/records.ts'

/** A directory whose lookups the test answers one by one. */
function slowDirectory (): { dir: SwarmDirectory, lookups: Array<{ resolve: (r: BlockRecord[]) => void, reject: (e: Error) => void }> } {
  const lookups: Array<{ resolve: (r: BlockRecord[]) => void, reject: (e: Error) => void }> = []
  const dir: SwarmDirectory = {
    blockRecords: async () => await new Promise<BlockRecord[]>((resolve, reject) => lookups.push({ resolve, reject })),
    announceBlocks: async () => {},
    expertRecords: async () => [],
    announceExperts: async () => {}
  }
  return { dir, lookups }
}

const rec = (peer: string): BlockRecord => ({ peer, model: 'm', start: 0, end: 3, state: 'online', throughput: 1, cacheTokensLeft: 100, expiresAt: 0 } as unknown as BlockRecord)
const peersOf = (rs: BlockRecord[]): string[] => rs.map(r => r.peer)

describe('CachedDirectory', () => {
  it('shares a lookup, reuses fresh records, serves stale ones while one refresh runs, waits once they expire', async () => {
    let now = 0
    const { dir, lookups } = slowDirectory()
    const c = new CachedDirectory(dir, 1_000, () => now, 30_000)
    const first = [c.blockRecords('m'), c.blockRecords('m')]
    expect(lookups).toHaveLength(1)
    lookups[0].resolve([rec('a')])
    expect((await Promise.all(first)).map(peersOf)).toEqual([['a'], ['a']])
    now = 500
    expect(peersOf(await c.blockRecords('m'))).toEqual(['a'])
    expect(lookups).toHaveLength(1)
    // Stale: answered at once from the old records; one background lookup however many ask.
    now = 5_000
    expect(peersOf(await c.blockRecords('m'))).toEqual(['a'])
    expect(peersOf(await c.blockRecords('m'))).toEqual(['a'])
    expect(lookups).toHaveLength(2)
    lookups[1].resolve([rec('b')])
    await new Promise(resolve => setImmediate(resolve))
    expect(peersOf(await c.blockRecords('m'))).toEqual(['b'])
    // A failed refresh keeps the stale records, and a later call tries again.
    now = 7_000
    expect(peersOf(await c.blockRecords('m'))).toEqual(['b'])
    lookups[2].reject(new Error('dht down'))
    await new Promise(resolve => setImmediate(resolve))
    expect(peersOf(await c.blockRecords('m'))).toEqual(['b'])
    expect(lookups).toHaveLength(4)
    // Past maxStaleMs: callers wait for a fresh lookup.
    now = 40_000
    const late = c.blockRecords('m')
    expect(lookups).toHaveLength(5)
    lookups[4].resolve([rec('c')])
    expect(peersOf(await late)).toEqual(['c'])
    // Callers get copies: changing one does not change the cache.
    const got = await c.blockRecords('m')
    got[0].peer = 'x'
    expect(peersOf(await c.blockRecords('m'))).toEqual(['c'])
  })

  it('does not keep a failed first lookup', async () => {
    const { dir, lookups } = slowDirectory()
    const c = new CachedDirectory(dir, 1_000, () => 0)
    const p = c.blockRecords('m')
    lookups[0].reject(new Error('no route'))
    await expect(p).rejects.toThrow(/no route/)
    const q = c.blockRecords('m')
    expect(lookups).toHaveLength(2)
    lookups[1].resolve([rec('a')])
    expect(peersOf(await q)).toEqual(['a'])
  })
})
