/**
 * The relay's CRDT log under churn (relay/crdt-store.ts with the simulator's hub doc): after a
 * compaction the file is one snapshot of the live state, so it tracks the swarm, not its history;
 * reopening it restores exactly that state.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { CrdtStore } from '../../relay/crdt-store.ts'
import { CrdtChurnSim } from '../../web/src/sim/crdt-churn.ts'

describe('relay CRDT log under churn', () => {
  const dirs: string[] = []
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('compaction leaves one snapshot of the live state; reopening restores it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ws-scale-store-'))
    dirs.push(dir)
    const sim = new CrdtChurnSim({ livePeers: 15, seed: 8, churnPerRound: 0.2, observers: 1 })
    const store = await CrdtStore.open(dir, 'sim', sim.hub.doc, { compactIntervalMs: 0, log: () => {} })
    await sim.join(15)
    for (let r = 0; r < 8; r++) await sim.step()
    await store.flush()
    const appendedBytes = store.stats.fileBytes
    await store.compact()
    const snapshot = Y.encodeStateAsUpdate(sim.hub.doc)
    expect(store.stats.records).toBe(1)
    expect(store.stats.fileBytes).toBe(8 + snapshot.length) // header + the state, nothing of the history
    expect(store.stats.fileBytes).toBeLessThan(appendedBytes / 4)
    await store.close({ compact: false })
    const reopened = new Y.Doc()
    const again = await CrdtStore.open(dir, 'sim', reopened, { compactIntervalMs: 0, log: () => {} })
    expect(Y.encodeStateAsUpdate(reopened)).toEqual(snapshot)
    expect(reopened.getMap('peers').size).toBe(sim.hub.peersMap.size)
    await again.close({ compact: false })
  }, 120_000)
})
