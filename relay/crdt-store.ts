/**
 * Durable storage of one swarm's Yjs document on the relay's disk.
 *
 * File `<dir>/<swarm>.ylog`: a sequence of records
 *   record = length:u32le crc32:u32le update:bytes[length]
 * Every doc update is appended and fsynced (group commit: updates arriving while an fsync runs
 * share the next one); flush() resolves when everything appended so far is on disk. Compaction
 * rewrites the file as one record holding the whole state (write tmp → fsync → rename → fsync dir),
 * so a crash at any point leaves either the old or the new file intact. On load a torn or corrupt
 * tail (a crash mid-append) is cut off with a log line; everything before it is kept.
 *
 * Doc generations (web/src/net/crdt/generation.ts): a compacted file starts with a generation
 * record, body "webswarm-generation/1\n" <n> "." <tag> (a file without one holds the genesis
 * generation, 0.0). When the swarm doc moves to a new generation, rebind() points the store at the
 * new Y.Doc and compacts at once, so the file holds the current generation only.
 */
import { constants as fsc } from 'node:fs'
import * as fs from 'node:fs/promises'
import * as path from 'node:path'
import { crc32 } from 'node:zlib'
import * as Y from 'yjs'
import { GENESIS, formatGeneration, type Generation } from '../web/src/net/crdt/generation.ts'

/** Bytes of a record header: length + crc32. */
const HEADER_BYTES = 8
/** Largest record accepted on load, in bytes: anything bigger is corruption (a doc this size is not swarm state). */
const MAX_RECORD_BYTES = 256 * 1024 * 1024
/** Compact at least this often, in ms. */
export const DEFAULT_COMPACT_INTERVAL_MS = 60_000
/** …and whenever the log holds this many records since the last compaction. */
const COMPACT_AFTER_RECORDS = 10_000

/** Body prefix of the generation record (no Yjs update starts with it: it would declare 119 clients, then fail to decode). */
const GENERATION_RECORD = 'webswarm-generation/1\n'

function generationRecord (g: Generation): Buffer {
  return Buffer.from(`${GENERATION_RECORD}${g.n}.${g.tag}`)
}

/** The generation named by a record body, or undefined when the body is a doc update. */
function parseGenerationRecord (body: Uint8Array): Generation | undefined {
  const text = Buffer.from(body.subarray(0, 64)).toString('latin1')
  if (!text.startsWith(GENERATION_RECORD)) return undefined
  const m = /^(\d{1,15})\.(\d{1,10})$/.exec(text.slice(GENERATION_RECORD.length))
  return m === null ? undefined : { n: Number(m[1]), tag: Number(m[2]) }
}

/** Transaction origin of state replayed from disk. */
const DISK_ORIGIN = Symbol('webswarm-disk')

export interface CrdtStoreStats {
  /** Records appended since start. */
  appended: number
  /** Bytes in the log file now. */
  fileBytes: number
  /** Records in the file now. */
  records: number
  compactions: number
  /** Records dropped from a torn tail at load. */
  tornRecords: number
  lastFsyncAt: number
}

export class CrdtStore {
  readonly stats: CrdtStoreStats = { appended: 0, fileBytes: 0, records: 0, compactions: 0, tornRecords: 0, lastFsyncAt: 0 }
  private fh!: fs.FileHandle
  private queue: Buffer[] = []
  private chain: Promise<void> = Promise.resolve()
  private timer?: ReturnType<typeof setInterval>
  private closed = false
  readonly file: string
  /** The doc generation the file holds (read at load, set by rebind()). */
  generation: Generation = GENESIS
  private ydoc: Y.Doc

  private constructor (readonly dir: string, readonly swarm: string, doc: Y.Doc, private readonly log: (line: string) => void) {
    this.file = path.join(dir, `${swarm}.ylog`)
    this.ydoc = doc
  }

  /** The doc recorded now. */
  get doc (): Y.Doc { return this.ydoc }

  /**
   * Records `doc` (generation `g`) from now on instead of the current doc, and compacts the file
   * to it at once: the previous generation's records are dropped. Resolves when that is on disk.
   */
  async rebind (doc: Y.Doc, g: Generation): Promise<void> {
    if (this.closed) return
    this.ydoc.off('update', this.onUpdate)
    this.ydoc = doc
    this.generation = g
    // Updates of the old generation not yet written are dropped by the compaction.
    this.ydoc.on('update', this.onUpdate)
    await this.compact()
    this.log(`crdt-store ${this.swarm}: compacted to doc generation ${formatGeneration(g)}`)
  }

  /** Opens (creating if needed) the swarm's log, replays it into `doc`, and starts recording updates. */
  static async open (dir: string, swarm: string, doc: Y.Doc, opts: { compactIntervalMs?: number, log?: (line: string) => void } = {}): Promise<CrdtStore> {
    const store = new CrdtStore(dir, swarm, doc, opts.log ?? ((l) => { console.warn(l) }))
    await fs.mkdir(dir, { recursive: true })
    await store.load()
    store.fh = await fs.open(store.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600)
    doc.on('update', store.onUpdate)
    const every = opts.compactIntervalMs ?? DEFAULT_COMPACT_INTERVAL_MS
    if (every > 0) store.timer = setInterval(() => { void store.compact().catch((e: Error) => { store.log(`crdt-store ${swarm}: compaction failed: ${e.message}`) }) }, every)
    return store
  }

  private async load (): Promise<void> {
    let buf: Buffer
    try {
      buf = await fs.readFile(this.file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
      throw e
    }
    const updates: Uint8Array[] = []
    let off = 0
    while (off < buf.length) {
      const bad = (why: string): void => {
        this.log(`crdt-store ${this.swarm}: dropping torn/corrupt tail at byte ${off} of ${buf.length} (${why})`)
      }
      if (off + HEADER_BYTES > buf.length) { bad('short header'); break }
      const len = buf.readUInt32LE(off)
      const crc = buf.readUInt32LE(off + 4)
      if (len > MAX_RECORD_BYTES || off + HEADER_BYTES + len > buf.length) { bad(`record length ${len}`); break }
      const body = buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len)
      if (crc32(body) !== crc) { bad('crc mismatch'); break }
      const g = off === 0 ? parseGenerationRecord(body) : undefined
      if (g !== undefined) this.generation = g
      else updates.push(body)
      off += HEADER_BYTES + len
    }
    if (off < buf.length) {
      this.stats.tornRecords++
      await fs.truncate(this.file, off)
    }
    if (updates.length > 0) Y.applyUpdate(this.doc, Y.mergeUpdates(updates), DISK_ORIGIN)
    this.stats.records = updates.length + (this.generation.n === 0 ? 0 : 1)
    this.stats.fileBytes = off
  }

  private readonly onUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === DISK_ORIGIN || this.closed) return
    this.queue.push(record(update))
    this.stats.appended++
    void this.flush().catch((e: Error) => { this.log(`crdt-store ${this.swarm}: append failed: ${e.message}`) })
    if (this.compactionDue) void this.compact().catch((e: Error) => { this.log(`crdt-store ${this.swarm}: compaction failed: ${e.message}`) })
  }

  /** Runs `job` after every earlier write/compaction (one writer at a time). */
  private serial (job: () => Promise<void>): Promise<void> {
    const next = this.chain.then(job)
    // The caller gets `next`'s failure; the chain only orders the following job after it.
    this.chain = next.catch(() => {})
    return next
  }

  /** Resolves once every update recorded so far is written and fsynced. */
  async flush (): Promise<void> {
    await this.serial(async () => {
      if (this.queue.length === 0) return
      const batch = Buffer.concat(this.queue)
      const n = this.queue.length
      this.queue = []
      await this.fh.write(batch)
      await this.fh.datasync()
      this.stats.records += n
      this.stats.fileBytes += batch.length
      this.stats.lastFsyncAt = Date.now()
    })
  }

  /** Rewrites the log as a single snapshot record of the current state (after its generation record, past genesis). */
  async compact (): Promise<void> {
    await this.serial(async () => {
      if (this.closed) return
      // Updates queued but not yet written are already in the doc, hence in the snapshot.
      this.queue = []
      const bodies = [Y.encodeStateAsUpdate(this.doc)]
      if (this.generation.n !== 0) bodies.unshift(generationRecord(this.generation))
      const rec = Buffer.concat(bodies.map(record))
      const tmp = `${this.file}.tmp`
      const t = await fs.open(tmp, 'w', 0o600)
      try {
        await t.write(rec)
        await t.sync()
      } finally {
        await t.close()
      }
      await this.fh.close()
      await fs.rename(tmp, this.file)
      await syncDir(this.dir)
      this.fh = await fs.open(this.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600)
      this.stats.records = bodies.length
      this.stats.fileBytes = rec.length
      this.stats.compactions++
      this.stats.lastFsyncAt = Date.now()
    })
  }

  /** Whether enough records piled up that compaction is due. */
  get compactionDue (): boolean {
    return this.stats.records >= COMPACT_AFTER_RECORDS
  }

  /** Flushes, compacts and closes (graceful shutdown). */
  async close (opts: { compact?: boolean } = {}): Promise<void> {
    if (this.closed) return
    clearInterval(this.timer)
    this.doc.off('update', this.onUpdate)
    await this.flush()
    if (opts.compact ?? true) await this.compact()
    this.closed = true
    await this.serial(async () => { await this.fh.close() })
  }
}

/** length:u32le crc32:u32le body */
function record (body: Uint8Array): Buffer {
  const rec = Buffer.allocUnsafe(HEADER_BYTES + body.length)
  rec.writeUInt32LE(body.length, 0)
  rec.writeUInt32LE(crc32(body), 4)
  rec.set(body, HEADER_BYTES)
  return rec
}

async function syncDir (dir: string): Promise<void> {
  const d = await fs.open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}
