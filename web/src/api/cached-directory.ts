/**
 * A SwarmDirectory that shares block-record lookups: requests that open sessions at the same
 * moment (8 or 32 API clients at once) make one DHT lookup, not one each, and records fetched in
 * the last `ttlMs` are reused. Announcements pass straight through. Stale records cost little:
 * the client bans servers that fail and re-asks when a plan finds no route.
 */
import type { BlockRecord, ExpertRecord, SwarmDirectory } from '../swarm/records.ts'

/** How long fetched block records are reused, ms: well under a record's refresh period (60 s). */
export const RECORDS_TTL_MS = 1_000

export class CachedDirectory implements SwarmDirectory {
  private readonly blocks = new Map<string, { at: number, records: Promise<BlockRecord[]> }>()

  constructor (private readonly inner: SwarmDirectory, private readonly ttlMs = RECORDS_TTL_MS, private readonly now: () => number = Date.now) {}

  async blockRecords (model: string): Promise<BlockRecord[]> {
    const t = this.now()
    let hit = this.blocks.get(model)
    if (hit === undefined || t - hit.at > this.ttlMs) {
      const records = this.inner.blockRecords(model)
      hit = { at: t, records }
      this.blocks.set(model, hit)
      // A failed lookup is not reused.
      records.catch(() => { if (this.blocks.get(model) === hit) this.blocks.delete(model) })
    }
    return (await hit.records).map(r => ({ ...r }))
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
