/**
 * What the swarm map draws, computed from the live (unexpired, verified) entries of the swarm
 * doc's `peers` map: per model, which blocks are served by whom and how fast, where the gaps are;
 * per MoE model, which experts of which layer are hosted; per peer, its role in a few words.
 * Pure functions of the entries, so they are tested without a browser.
 *
 * Entries are written by other peers: every field is checked for type and range here (an entry
 * with a malformed `serving` shows as a peer with no role, it does not break the map).
 */
import type { PeerEntry } from '../net/crdt/entries.ts'

/** Largest model depth the map accepts from a peer's entry (larger is a lie or a bug). */
const MAX_MAP_BLOCKS = 1024
/** Largest expert count per layer the map draws. */
const MAX_MAP_EXPERTS = 1024
/** Longest model name shown, characters. */
const MAX_NAME_CHARS = 80

/** One peer's block-serving role, as mirrored into its entry by the page or `webswarm serve`. */
export interface ServingRole {
  peer: string
  model: string
  start: number
  end: number
  state: string
  /**
   * Tokens/s through one block (the server's measurement); undefined when the entry has none: not
   * measured yet (writers leave it out until then; older ones wrote their starting guess, 1).
   */
  throughput?: number
  /** The model's depth, when the writer said it (pages do; older Node peers do not). */
  blocks?: number
}

/** One block of a model: who serves it now. */
interface BlockCoverage {
  block: number
  /** Online servers of this block with their tokens/s (undefined: not measured yet). */
  servers: Array<{ peer: string, throughput?: number }>
  /** Servers still loading it (state 'joining'). */
  joining: string[]
}

export interface ModelCoverage {
  model: string
  /** Depth: the largest `blocks` any peer announced, else the largest span end seen. */
  numBlocks: number
  blocks: BlockCoverage[]
  /** Maximal runs of blocks nobody serves online, [start, end). */
  gaps: Array<{ start: number, end: number }>
  /** Distinct peers serving or loading some block of it. */
  peers: number
}

/** A MoE expert host: which experts of which layers it holds. */
interface ExpertRole {
  peer: string
  model: string
  state: string
  throughput: number
  /** layer → expert indices. */
  hosted: Map<number, number[]>
}

export interface ExpertCoverage {
  model: string
  /** layer → expert → hosting peers (online only). */
  layers: Map<number, Map<number, string[]>>
}

const isInt = (v: unknown, lo: number, hi: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi

function nameOf (v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v.slice(0, MAX_NAME_CHARS) : undefined
}

/** The entry's block-serving role, or undefined when it has none or a malformed one. */
export function servingRole (e: PeerEntry): ServingRole | undefined {
  const s = e.data.serving
  if (typeof s !== 'object' || s === null) return undefined
  const r = s as Record<string, unknown>
  const model = nameOf(r.model)
  if (model === undefined || !isInt(r.start, 0, MAX_MAP_BLOCKS) || !isInt(r.end, 1, MAX_MAP_BLOCKS) || r.end <= r.start) return undefined
  const blocks = isInt(r.blocks, 1, MAX_MAP_BLOCKS) && r.blocks >= r.end ? r.blocks : undefined
  // Absent: not measured yet. A malformed value reads as 0, as it always did.
  const throughput = r.throughput === undefined ? undefined : typeof r.throughput === 'number' && Number.isFinite(r.throughput) && r.throughput >= 0 ? r.throughput : 0
  return { peer: e.peer, model, start: r.start, end: r.end, state: typeof r.state === 'string' ? r.state.slice(0, 16) : 'unknown', throughput, blocks }
}

/** Parses `formatPlacement`'s text ("0:1,2;1:3"), dropping malformed parts. */
export function parseHosted (text: string): Map<number, number[]> {
  const out = new Map<number, number[]>()
  for (const part of text.split(';')) {
    const m = /^(\d+):(\d+(?:,\d+)*)$/.exec(part.trim())
    if (m === null) continue
    const layer = Number(m[1])
    const experts = m[2].split(',').map(Number).filter(x => x < MAX_MAP_EXPERTS)
    if (layer < MAX_MAP_BLOCKS && experts.length > 0) out.set(layer, experts)
  }
  return out
}

/** The entry's MoE expert-hosting role, or undefined. */
function expertRole (e: PeerEntry): ExpertRole | undefined {
  const x = e.data.experts
  if (typeof x !== 'object' || x === null) return undefined
  const r = x as Record<string, unknown>
  const model = nameOf(r.model)
  if (model === undefined || typeof r.hosted !== 'string') return undefined
  const throughput = typeof r.throughput === 'number' && Number.isFinite(r.throughput) && r.throughput >= 0 ? r.throughput : 0
  return { peer: e.peer, model, state: typeof r.state === 'string' ? r.state.slice(0, 16) : 'unknown', throughput, hosted: parseHosted(r.hosted) }
}

/**
 * Block coverage of every model someone serves (sorted by name). `known` adds models this page
 * knows the depth of (its own), so that a model nobody serves yet shows as one red gap.
 */
export function modelCoverage (entries: Iterable<PeerEntry>, known: ReadonlyMap<string, number> = new Map()): ModelCoverage[] {
  const roles = new Map<string, ServingRole[]>()
  for (const m of known.keys()) roles.set(m, [])
  for (const e of entries) {
    const r = servingRole(e)
    if (r === undefined || r.state === 'offline') continue
    roles.set(r.model, [...(roles.get(r.model) ?? []), r])
  }
  const out: ModelCoverage[] = []
  for (const [model, rs] of [...roles].sort(([a], [b]) => a.localeCompare(b))) {
    const numBlocks = Math.max(known.get(model) ?? 0, ...rs.map(r => r.blocks ?? r.end))
    const blocks: BlockCoverage[] = Array.from({ length: numBlocks }, (_, block) => ({ block, servers: [], joining: [] }))
    for (const r of rs) {
      for (let b = r.start; b < r.end; b++) {
        if (r.state === 'online') blocks[b].servers.push({ peer: r.peer, throughput: r.throughput })
        else blocks[b].joining.push(r.peer)
      }
    }
    const gaps: Array<{ start: number, end: number }> = []
    for (const b of blocks) {
      if (b.servers.length > 0) continue
      const last = gaps.at(-1)
      if (last !== undefined && last.end === b.block) last.end++
      else gaps.push({ start: b.block, end: b.block + 1 })
    }
    out.push({ model, numBlocks, blocks, gaps, peers: new Set(rs.map(r => r.peer)).size })
  }
  return out
}

/** Expert coverage of every MoE model someone hosts experts of (online hosts only). */
export function expertCoverage (entries: Iterable<PeerEntry>): ExpertCoverage[] {
  const byModel = new Map<string, Map<number, Map<number, string[]>>>()
  for (const e of entries) {
    const r = expertRole(e)
    if (r === undefined || r.state !== 'online') continue
    const layers = byModel.get(r.model) ?? new Map<number, Map<number, string[]>>()
    byModel.set(r.model, layers)
    for (const [layer, experts] of r.hosted) {
      const m = layers.get(layer) ?? new Map<number, string[]>()
      layers.set(layer, m)
      for (const x of experts) m.set(x, [...(m.get(x) ?? []), r.peer])
    }
  }
  return [...byModel].sort(([a], [b]) => a.localeCompare(b)).map(([model, layers]) => ({ model, layers }))
}

/**
 * Blocks [start, end) as the page words them everywhere (map, peers list, Contribute panel, chat
 * route): "blocks A–B", inclusive, or "block A" for one.
 */
export function blocksText (start: number, end: number): string {
  return end - start === 1 ? `block ${start}` : `blocks ${start}–${end - 1}`
}

/** Tokens/s as the map writes it (whole numbers from 10 on). */
const tokPerS = (tps: number): string => `${tps.toFixed(tps >= 10 ? 0 : 1)} tok/s`

/**
 * A block's throughput for its map cell: the sum of its servers' measurements, or that none is
 * measured yet (a server's starting guess is no measurement).
 */
export function blockThroughputText (servers: ReadonlyArray<{ throughput?: number }>): string {
  const measured = servers.flatMap(s => s.throughput === undefined ? [] : [s.throughput])
  return measured.length === 0 ? 'not measured' : tokPerS(measured.reduce((a, b) => a + b, 0))
}

/** One server's throughput in words (a cell's tooltip). */
export function serverThroughputText (throughput: number | undefined): string {
  return throughput === undefined ? 'throughput not measured yet' : `${throughput.toFixed(1)} tok/s`
}

/** A peer's role in a few words, for the peers list. */
export function roleText (e: PeerEntry): string {
  const parts: string[] = []
  const s = servingRole(e)
  if (s !== undefined) {
    // Only an online server is measured; a malformed throughput (read as 0) is left out, as before.
    const tp = s.state !== 'online' || s.throughput === 0 ? '' : ` · ${serverThroughputText(s.throughput)}`
    parts.push(`${s.state === 'online' ? 'serves' : s.state} ${s.model} ${blocksText(s.start, s.end)}${tp}`)
  }
  const x = expertRole(e)
  if (x !== undefined) parts.push(`hosts ${x.model} experts (${[...x.hosted.values()].reduce((n, es) => n + es.length, 0)})`)
  if (typeof e.data.training === 'string') parts.push(`trains ${e.data.training.slice(0, MAX_NAME_CHARS)}`)
  const chat = nameOf(e.data.chatting)
  if (chat !== undefined) parts.push(`chats with ${chat}`)
  return parts.length === 0 ? 'idle' : parts.join('; ')
}

/** Whether the peer said its tab is in the background (timers throttled by the browser). */
export function isBackground (e: PeerEntry): boolean {
  return e.data.background === true
}
