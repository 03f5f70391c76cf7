/**
 * Browser persistence of a swarm doc in IndexedDB (y-indexeddb). Stored state is replayed
 * locally on load (not gossiped: peers get it through crdt-sync) and every later update is stored.
 * When the doc moves to a new generation (generation.ts) the stored state is cleared and the new
 * doc stored instead; stored state is a cache: a page opens at the genesis generation and re-seeds
 * from its relay at the first sync.
 */
import { IndexeddbPersistence } from 'y-indexeddb'
import type { CrdtSync } from './sync.ts'

/** Database name per swarm; tabs of one origin share it. */
function idbName (swarm: string): string {
  return `webswarm-crdt-${swarm}`
}

/** Starts IndexedDB persistence for `sync`'s doc; resolves once stored state is loaded. */
export async function persistInIndexedDb (sync: CrdtSync): Promise<void> {
  const name = idbName(sync.sdoc.swarm)
  let p = new IndexeddbPersistence(name, sync.sdoc.doc)
  sync.silentOrigins.add(p)
  await p.whenSynced
  sync.sdoc.onGeneration(() => {
    const old = p
    sync.silentOrigins.delete(old)
    // clearData() destroys the provider and deletes the database; the new one stores the new doc.
    void old.clearData().then(() => {
      p = new IndexeddbPersistence(name, sync.sdoc.doc)
      sync.silentOrigins.add(p)
    }).catch((e: Error) => { console.warn(`crdt: IndexedDB of ${name} not rebound to the new doc generation: ${e.message}`) })
  })
}
