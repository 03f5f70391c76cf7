/**
 * Browser persistence of a swarm doc in IndexedDB (y-indexeddb). Stored state is replayed
 * locally on load (not gossiped: peers get it through crdt-sync) and every later update is stored.
 * Stored state is a cache: nothing here may fail the swarm or a write to the doc.
 *
 * Tabs of one origin share the databases, and they move to a new doc generation (generation.ts)
 * one by one, each at its own next sync. So each generation has its own database: a tab that moves
 * on closes its connection to the old one, opens the new one (which the tabs that moved before it
 * already fill) and deletes the databases of older generations. Deleting a database closes the
 * other tabs' connections to it (IndexedDB's versionchange): a tab that has not moved yet then
 * stops storing until it moves. Before, all tabs shared one database that each cleared as it moved
 * on; a tab still on the old generation then threw "The database connection is closing" from its
 * next doc write (session 13's CI: a join and a training run failed that way).
 */
import { IndexeddbPersistence } from 'y-indexeddb'
import { GENESIS, compareGenerations, formatGeneration, sameGeneration, type Generation } from './generation.ts'
import type { SwarmDoc } from './swarm-doc.ts'

/** What persistence needs of a CrdtSync: its doc, and the origins whose updates it does not gossip. */
export interface PersistTarget {
  readonly sdoc: SwarmDoc
  readonly silentOrigins: Set<unknown>
}

export interface PersistOptions {
  /** Where warnings go (a lost or unopenable database). @default console.warn */
  log?: (line: string) => void
  /** How long the first open may take before the page goes on without stored state, ms. @default 5000 */
  openTimeoutMs?: number
}

const PREFIX = 'webswarm-crdt-'
/** An empty database opened to learn whether IndexedDB works here (kept: deleting it would close another tab's probe). */
const PROBE_DB = 'webswarm-probe'

/** Database of `swarm`'s doc generation `g` (the genesis name is the one used before generations). */
export function idbName (swarm: string, g: Generation): string {
  return sameGeneration(g, GENESIS) ? `${PREFIX}${swarm}` : `${PREFIX}${swarm}@${formatGeneration(g)}`
}

/** The generation a database of `swarm` holds, or undefined for another swarm's (or app's) database. */
export function generationOfIdb (swarm: string, name: string): Generation | undefined {
  if (name === `${PREFIX}${swarm}`) return GENESIS
  const head = `${PREFIX}${swarm}@`
  if (!name.startsWith(head)) return undefined
  const m = /^(\d+)\.(\d+)$/.exec(name.slice(head.length))
  return m === null ? undefined : { n: Number(m[1]), tag: Number(m[2]) }
}

/** The live binding of a doc to IndexedDB; `stop()` closes it (the data stays). */
export class IdbPersistence {
  /** The open provider, or undefined while storing is off (lost connection, failed open). */
  private provider?: IndexeddbPersistence
  private readonly off: () => void
  private readonly log: (line: string) => void
  /** Databases lost to another tab or never opened (for tests and diagnostics). */
  lost = 0

  constructor (private readonly target: PersistTarget, opts: PersistOptions = {}) {
    this.log = opts.log ?? ((l: string) => { console.warn(l) })
    this.off = target.sdoc.onGeneration((g) => { this.moveTo(g) })
  }

  /** Whether updates are being stored now. */
  get storing (): boolean {
    return this.provider !== undefined
  }

  /** Opens the current generation's database; resolves once its state is loaded, or on a failed/slow open (logged). */
  async start (openTimeoutMs = 5000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<'late'>(resolve => { timer = setTimeout(() => { resolve('late') }, openTimeoutMs) })
    try {
      // y-indexeddb leaves a failed open as an unhandled rejection: try IndexedDB itself first.
      const unusable = await Promise.race([probe(), late])
      if (unusable !== undefined) {
        this.lost++
        const why = unusable === 'late' ? `no answer within ${openTimeoutMs} ms` : unusable
        this.log(`crdt: IndexedDB ${idbName(this.target.sdoc.swarm, this.target.sdoc.generation)}: ${why}; the swarm doc is not stored`)
        return
      }
      const p = this.bind(this.target.sdoc.generation)
      const loaded = await Promise.race([
        p.whenSynced.then(() => true),
        // whenSynced never settles when the open fails: the failure is the open's (bind() logs it).
        p._db.then(async () => await new Promise<boolean>(() => {}), () => false),
        late.then(() => false)
      ])
      if (!loaded && this.provider === p) this.lose(p, `not loaded within ${openTimeoutMs} ms`)
    } finally {
      clearTimeout(timer)
    }
  }

  stop (): void {
    this.off()
    if (this.provider !== undefined) this.close(this.provider)
  }

  /** A provider on generation `g`'s database whose failures end its storing instead of a doc write. */
  private bind (g: Generation): IndexeddbPersistence {
    const doc = this.target.sdoc.doc
    const p = new IndexeddbPersistence(idbName(this.target.sdoc.swarm, g), doc)
    this.provider = p
    this.target.silentOrigins.add(p)
    const store = p._storeUpdate
    doc.off('update', store)
    p._storeUpdate = (update: Uint8Array, origin: unknown) => {
      try {
        store(update, origin)
      } catch (e) {
        this.lose(p, (e as Error).message)
      }
    }
    doc.on('update', p._storeUpdate)
    p._db.then((db) => {
      // lib0 closes the connection on versionchange (another tab deletes the database, having
      // moved on); stop storing with it, or the next write would throw on the closing connection.
      db.onversionchange = () => { this.lose(p, 'deleted by another tab of this origin (it moved to a newer doc generation)') }
    }, (e: Error) => { this.lose(p, e.message) })
    return p
  }

  private lose (p: IndexeddbPersistence, why: string): void {
    if (this.provider !== p) return
    this.lost++
    this.provider = undefined
    this.close(p)
    this.log(`crdt: IndexedDB ${p.name}: ${why}; stored state is not updated until the next doc generation`)
  }

  private close (p: IndexeddbPersistence): void {
    this.target.silentOrigins.delete(p)
    if (this.provider === p) this.provider = undefined
    // destroy() closes the connection once open; an open that failed has nothing to close.
    void p.destroy().catch(() => {})
  }

  /** The doc moved to generation `g`: store it in g's database and delete the older ones. */
  private moveTo (g: Generation): void {
    if (this.provider !== undefined) this.close(this.provider)
    this.bind(g)
    void this.deleteOlder(g).catch((e: Error) => { this.log(`crdt: IndexedDB: older doc generations not deleted: ${e.message}`) })
  }

  /** Deletes this swarm's databases of generations older than `g` (another tab's connection to one closes). */
  private async deleteOlder (g: Generation): Promise<void> {
    const swarm = this.target.sdoc.swarm
    // indexedDB.databases() is missing in older browsers: then only the genesis database is known.
    const names = typeof indexedDB.databases === 'function'
      ? (await indexedDB.databases()).map(d => d.name).filter((n): n is string => n !== undefined)
      : [idbName(swarm, GENESIS)]
    for (const name of names) {
      const of = generationOfIdb(swarm, name)
      if (of !== undefined && compareGenerations(of, g) < 0) indexedDB.deleteDatabase(name)
    }
  }
}

/** Why IndexedDB cannot be used here (disabled, private mode…), or undefined when a database opens. */
async function probe (): Promise<string | undefined> {
  try {
    return await new Promise<string | undefined>((resolve) => {
      const req = indexedDB.open(PROBE_DB)
      req.onsuccess = () => { req.result.close(); resolve(undefined) }
      req.onerror = () => { resolve(req.error?.message ?? 'the database did not open') }
      req.onblocked = () => { resolve('the database open is blocked') }
    })
  } catch (e) {
    return (e as Error).message
  }
}

/** Starts IndexedDB persistence for `target`'s doc; resolves once stored state is loaded (or could not be). */
export async function persistInIndexedDb (target: PersistTarget, opts: PersistOptions = {}): Promise<IdbPersistence> {
  const persistence = new IdbPersistence(target, opts)
  await persistence.start(opts.openTimeoutMs)
  return persistence
}
