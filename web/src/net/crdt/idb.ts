/**
 * Browser persistence of a swarm doc in IndexedDB (y-indexeddb). Stored state is replayed
 * locally on load (not gossiped: peers get it through crdt-sync) and every later update is stored.
 */
import { IndexeddbPersistence } from 'y-indexeddb'
import type { CrdtSync } from './sync.ts'

/** Database name per swarm; tabs of one origin share it. */
function idbName (swarm: string): string {
  return `webswarm-crdt-${swarm}`
}

/** Starts IndexedDB persistence for `sync`'s doc; resolves once stored state is loaded. */
export async function persistInIndexedDb (sync: CrdtSync): Promise<IndexeddbPersistence> {
  const p = new IndexeddbPersistence(idbName(sync.sdoc.swarm), sync.sdoc.doc)
  sync.silentOrigins.add(p)
  await p.whenSynced
  return p
}
