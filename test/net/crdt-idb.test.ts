/**
 * IndexedDB persistence of the swarm doc across doc generations (web/src/net/crdt/idb.ts), with
 * two "tabs" of one origin sharing one IndexedDB (fake-indexeddb). Session 13's CI: when the relay
 * started a new generation, the first tab to re-seed deleted the database every tab shared, and
 * the other tab's next doc write threw "The database connection is closing" — its join and its
 * training run failed. A tab still on the old generation now stops storing; its writes go on.
 */
import 'fake-indexeddb/auto'
import { IDBFactory } from 'fake-indexeddb'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { IndexeddbPersistence } from 'y-indexeddb'
import { GENERATION_EPOCH_MS, GENESIS } from '../../web/src/net/crdt/generation.ts'
import { generationOfIdb, idbName, persistInIndexedDb } from '../../web/src/net/crdt/idb.ts'
import { SwarmDoc } from '../../web/src/net/crdt/swarm-doc.ts'
import { until } from './peers-harness.ts'

const SWARM = 'idb'
const T0 = Date.UTC(2026, 0, 1)

let now = T0
beforeEach(() => {
  globalThis.indexedDB = new IDBFactory() // a fresh origin per test
  now = T0
})

async function tab (): Promise<SwarmDoc> {
  const key = await generateKeyPair('Ed25519')
  return new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: 0, now: () => now })
}

/** This swarm's databases (the probe's is not one). */
async function ours (): Promise<string[]> {
  return (await indexedDB.databases()).map(d => d.name ?? '').filter(n => generationOfIdb(SWARM, n) !== undefined).sort()
}

/** The entry payloads stored for generation `g`, by peer (read into a scratch doc, as a reload would). */
async function stored (g = GENESIS): Promise<Map<string, string>> {
  const doc = new Y.Doc()
  const p = new IndexeddbPersistence(idbName(SWARM, g), doc)
  await p.whenSynced
  await p.destroy()
  const out = new Map<string, string>()
  for (const [peer, raw] of doc.getMap<{ payload: string }>('peers')) out.set(peer, raw.payload)
  return out
}

describe('swarm doc in IndexedDB across doc generations', () => {
  it('two tabs: the one that re-seeds first moves to the new database; the other keeps writing, then follows; nothing stored is lost', async () => {
    const relay = new SwarmDoc(SWARM, 'relay', undefined, undefined, { powBits: 0, now: () => now })
    const a = await tab()
    const b = await tab()
    const logs: string[] = []
    const log = (l: string): void => { logs.push(l) }
    const pa = await persistInIndexedDb({ sdoc: a, silentOrigins: new Set() }, { log })
    const pb = await persistInIndexedDb({ sdoc: b, silentOrigins: new Set() }, { log })
    await a.setSelf({ tab: 'a', n: 1 })
    await b.setSelf({ tab: 'b', n: 1 })
    for (const t of [a, b]) await relay.applyRemoteIn(GENESIS, Y.encodeStateAsUpdate(t.doc))
    await until('both entries stored', async () => (await stored()).size === 2)

    now += GENERATION_EPOCH_MS
    const g = await relay.rotate(now)
    await a.adopt(g, Y.encodeStateAsUpdate(relay.doc))
    await until('tab b loses the deleted genesis database', () => pb.lost === 1)
    expect(await ours()).toEqual([idbName(SWARM, g)])
    expect(pb.storing).toBe(false)
    expect(logs.join('\n')).toMatch(/deleted by another tab/)

    // The write that threw "The database connection is closing" before.
    await expect(b.setSelf({ tab: 'b', n: 2 })).resolves.toMatchObject({ seq: 2 })

    await b.adopt(g, Y.encodeStateAsUpdate(relay.doc))
    expect(pb.storing).toBe(true)
    await a.setSelf({ tab: 'a', n: 3 })
    await b.setSelf({ tab: 'b', n: 3 })
    await until('both tabs store into the new generation', async () => {
      const s = await stored(g)
      return s.get(a.selfId)?.includes('"n":3') === true && s.get(b.selfId)?.includes('"n":3') === true
    })
    // b's move deleted nothing a holds: a stores on.
    expect(pa.storing).toBe(true)
    expect(pa.lost).toBe(0)
    expect(await ours()).toEqual([idbName(SWARM, g)])
    pa.stop()
    pb.stop()
  })

  it('a page opening after a rotation deletes the databases of older generations once it re-seeds', async () => {
    const relay = new SwarmDoc(SWARM, 'relay', undefined, undefined, { powBits: 0, now: () => now })
    // Left behind by an earlier visit: a generation nobody holds any more.
    const old = { n: epochAfterT0(1), tag: 7 }
    const leftover = new IndexeddbPersistence(idbName(SWARM, old), new Y.Doc())
    await leftover.whenSynced
    await leftover.destroy()
    now += 3 * GENERATION_EPOCH_MS
    const g = await relay.rotate(now)
    const c = await tab()
    const pc = await persistInIndexedDb({ sdoc: c, silentOrigins: new Set() })
    expect(await ours()).toEqual([idbName(SWARM, GENESIS), idbName(SWARM, old)].sort())
    await c.adopt(g, Y.encodeStateAsUpdate(relay.doc))
    await until('older databases deleted', async () => (await ours()).join() === idbName(SWARM, g))
    expect(pc.storing).toBe(true)
    pc.stop()
  })

  it('an IndexedDB that cannot be opened: the join goes on without stored state, and doc writes work', async () => {
    globalThis.indexedDB = { open () { throw new DOMException('IndexedDB is disabled', 'SecurityError') } } as unknown as IDBFactory
    const d = await tab()
    const logs: string[] = []
    const p = await persistInIndexedDb({ sdoc: d, silentOrigins: new Set() }, { log: l => { logs.push(l) } })
    expect(p.storing).toBe(false)
    expect(p.lost).toBe(1)
    expect(logs.join('\n')).toMatch(/IndexedDB webswarm-crdt-idb: IndexedDB is disabled; the swarm doc is not stored/)
    await expect(d.setSelf({ ok: true })).resolves.toMatchObject({ seq: 1 })
    p.stop()
  })

  it('an IndexedDB that never answers: the join goes on after the open timeout', async () => {
    globalThis.indexedDB = { open: () => ({}) } as unknown as IDBFactory // a request whose events never fire
    const d = await tab()
    const logs: string[] = []
    const p = await persistInIndexedDb({ sdoc: d, silentOrigins: new Set() }, { log: l => { logs.push(l) }, openTimeoutMs: 50 })
    expect(p.storing).toBe(false)
    expect(logs.join('\n')).toMatch(/no answer within 50 ms; the swarm doc is not stored/)
    await expect(d.setSelf({ ok: true })).resolves.toMatchObject({ seq: 1 })
    p.stop()
  })

  it('database names: one per generation, another swarm\'s or app\'s are not ours', () => {
    const g = { n: 29942695, tag: 3149277305 }
    expect(idbName(SWARM, GENESIS)).toBe('webswarm-crdt-idb')
    expect(idbName(SWARM, g)).toBe('webswarm-crdt-idb@29942695.3149277305')
    expect(generationOfIdb(SWARM, idbName(SWARM, g))).toEqual(g)
    expect(generationOfIdb(SWARM, idbName(SWARM, GENESIS))).toEqual(GENESIS)
    expect(generationOfIdb('id', idbName(SWARM, g))).toBeUndefined()
    expect(generationOfIdb(SWARM, 'webswarm-crdt-idb@1.x')).toBeUndefined()
    expect(generationOfIdb(SWARM, 'webswarm-crdt-idb2')).toBeUndefined()
    expect(generationOfIdb(SWARM, 'other-app')).toBeUndefined()
  })
})

/** The generation number of `minutes` after T0. */
function epochAfterT0 (minutes: number): number {
  return Math.floor(T0 / GENERATION_EPOCH_MS) + minutes
}
