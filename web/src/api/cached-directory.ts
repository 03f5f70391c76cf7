/**
 * A SwarmDirectory that shares block-record lookups: requests that open sessions at the same
 * moment (8 or 32 API clients at once) make one DHT lookup, not one each; records fetched in
 * the last `ttlMs` are reused, and older ones (up to `maxStaleMs`) are served while one lookup
 * refreshes them in the background. Announcements pass straight through. Stale records cost little:
 * the client bans servers that fail and re-asks when a plan finds no route.
 */
import type { BlockRecord, ExpertRecord, SwarmDirectory } from '../swarm/records.ts'

/**
 * How long fetched block records are fresh, ms; after that a lookup refreshes them in the
 * background, so a server that joins is used within this long. Each lookup is a DHT query (new
 * streams, peer-store merges, Noise traffic) on the API's thread: at 1 s it was a third of the
 * libp2p background that thread carried under load, ≈ 0.12 ms of CPU a token at 8 streams
 * (BENCHMARKS.md § API); servers re-announce every RECORD_REFRESH_MS (60 s) anyway.
 */
const RECORDS_TTL_MS = 5_000
/**
 * How long records are served while a refresh runs, ms: well under a record's refresh period
 * (60 s). A DHT lookup took ~130 ms on loopback (bench:api: the time to first token of a request
 * that came more than RECORDS_TTL_MS after the last one); a request need not wait for it when
 * records a few seconds old are at hand.
 */
const RECORDS_MAX_STALE_MS = 30_000

interface Entry { at: number, records: Promise<BlockRecord[]>, refreshing: boolean }

export class CachedDirectory implements SwarmDirectory {
  private readonly blocks = new Map<string, Entry>()

  constructor (private readonly inner: SwarmDirectory, private readonly ttlMs = RECORDS_TTL_MS, private readonly now: () => number = Date.now, private readonly maxStaleMs = RECORDS_MAX_STALE_MS) {}

  async blockRecords (model: string): Promise<BlockRecord[]> {
    const t = this.now()
    let hit = this.blocks.get(model)
    if (hit === undefined || t - hit.at > this.maxStaleMs) hit = this.fetch(model, t)
    else if (t - hit.at > this.ttlMs && !hit.refreshing) this.refresh(model, hit, t)
    return (await hit.records).map(r => ({ ...r }))
  }

  /** A lookup that callers wait for (nothing usable cached). */
  private fetch (model: string, t: number): Entry {
    const records = this.inner.blockRecords(model)
    const hit: Entry = { at: t, records, refreshing: false }
    this.blocks.set(model, hit)
    // A failed lookup is not reused.
    records.catch(() => { if (this.blocks.get(model) === hit) this.blocks.delete(model) })
    return hit
  }

  /** A lookup in the background: its records replace `stale` once they come; a failure keeps `stale`. */
  private refresh (model: string, stale: Entry, t: number): void {
    stale.refreshing = true
    this.inner.blockRecords(model).then(records => {
      if (this.blocks.get(model) === stale) this.blocks.set(model, { at: t, records: Promise.resolve(records), refreshing: false })
    }, () => { stale.refreshing = false })
  }

  async announceBlocks (rec: BlockRecord): Promise<void> {
    await this.inner.announceBlocks(rec)
  }

  async expertRecords (model: string, layer: number): Promise<ExpertRecord[]> {
    return await this.inner.expertRecords(model, layer)
  }

  async announceExperts (rec: ExpertRecord): Promise<void> {
    await this.inner.announceExperts(rec)
  }
}
