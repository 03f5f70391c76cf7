/**
 * Who a run's part owners refused, on the run board (README.md § Contribution check): after a
 * sync whose RESULTs named refused members (malformed bytes, or excluded by the contribution
 * check), every member writes `train["refused/<run>/<seq>"] = { peers }`. Every member writes the
 * same list for a seq (it comes from the same RESULTs), so concurrent writes agree; the newest
 * KEEP_SYNC_RECORDS are kept, like sync records. The dashboard and operators read per-peer counts.
 */
import type * as Y from 'yjs'
import { MAX_ID_CHARS, MAX_MEMBERS } from './constants.ts'
import { KEEP_SYNC_RECORDS } from './run-board.ts'

const key = (runId: string, seq: number): string => `refused/${runId}/${seq}`

/** Records the peers refused in sync `seq` (nothing when none); drops the record KEEP_SYNC_RECORDS behind. */
export function recordRefused (map: Y.Map<unknown>, runId: string, seq: number, peers: readonly string[]): void {
  if (peers.length === 0 || !Number.isSafeInteger(seq) || seq < 0) return
  const list = [...new Set(peers)].filter(p => p.length > 0 && p.length <= MAX_ID_CHARS).sort().slice(0, MAX_MEMBERS)
  const write = (): void => {
    map.set(key(runId, seq), { peers: list })
    if (seq - KEEP_SYNC_RECORDS >= 0) map.delete(key(runId, seq - KEEP_SYNC_RECORDS))
  }
  if (map.doc !== null) map.doc.transact(write)
  else write()
}

/** Per peer, the number of recorded syncs that refused it (malformed entries skipped, each list bounded). */
export function refusedCounts (map: Y.Map<unknown>, runId: string): Map<string, number> {
  const out = new Map<string, number>()
  const prefix = `refused/${runId}/`
  for (const [k, v] of map.entries()) {
    if (!k.startsWith(prefix) || !/^\d{1,15}$/.test(k.slice(prefix.length))) continue
    const peers = (v as { peers?: unknown } | null)?.peers
    if (!Array.isArray(peers)) continue
    for (const p of peers.slice(0, MAX_MEMBERS)) {
      if (typeof p === 'string' && p.length > 0 && p.length <= MAX_ID_CHARS) out.set(p, (out.get(p) ?? 0) + 1)
    }
  }
  return out
}
