/**
 * What servers and expert hosts announce (one signed, expiring DHT record per block / expert) and
 * the directory the roles read them from. `MemoryDirectory` is the in-process directory for tests;
 * `DhtDirectory` (dht-directory.ts) maps the same calls onto web/src/net/dht.
 */

/** Petals' server states: JOINING while loading weights, ONLINE when serving, OFFLINE when leaving. */
export type ServerState = 'joining' | 'online' | 'offline'

/** One server's claim on blocks [start, end) of a model. Announced once per block it holds. */
export interface BlockRecord {
  peer: string
  model: string
  start: number
  end: number
  state: ServerState
  /** Tokens per second this server pushes through one of its blocks (1 / seconds per token-block). */
  throughput: number
  /** KV-cache positions the server can still give new sessions, in tokens. */
  cacheTokensLeft: number
  /** Announcer's record counter; newest wins. */
  version: number
  /** Wall-clock expiry, ms since epoch. */
  expiresAt: number
  /** Whether the server also offers the embedding and LM head (the client runs them otherwise). */
  servesEnds?: boolean
}

/** One peer's claim on some experts of one MoE layer. */
export interface ExpertRecord {
  peer: string
  model: string
  layer: number
  experts: number[]
  /** Token rows per second the host runs through one expert. */
  throughput: number
  version: number
  expiresAt: number
  /**
   * JOINING while loading, ONLINE when serving, OFFLINE when withdrawn (left, or moved off this
   * layer). Callers send rows only to ONLINE hosts. @default 'online' (records without a state)
   */
  state?: ServerState
}

export interface SwarmDirectory {
  /** Every live (unexpired) block record of `model`, one per server (newest version). */
  blockRecords (model: string): Promise<BlockRecord[]>
  announceBlocks (rec: BlockRecord): Promise<void>
  /** Every live expert record of `model`, layer `layer`, one per peer. */
  expertRecords (model: string, layer: number): Promise<ExpertRecord[]>
  announceExperts (rec: ExpertRecord): Promise<void>
}

/** In-process directory with an injectable clock; newest version per (peer, key) wins. */
export class MemoryDirectory implements SwarmDirectory {
  private readonly blocks = new Map<string, Map<string, BlockRecord>>()
  private readonly experts = new Map<string, Map<string, ExpertRecord>>()

  constructor (private readonly now: () => number = Date.now) {}

  async blockRecords (model: string): Promise<BlockRecord[]> {
    const t = this.now()
    return [...(this.blocks.get(model)?.values() ?? [])].filter(r => r.expiresAt > t).map(r => ({ ...r }))
  }

  async announceBlocks (rec: BlockRecord): Promise<void> {
    putNewest(this.blocks, rec.model, rec.peer, { ...rec })
  }

  async expertRecords (model: string, layer: number): Promise<ExpertRecord[]> {
    const t = this.now()
    return [...(this.experts.get(`${model}/${layer}`)?.values() ?? [])].filter(r => r.expiresAt > t).map(r => ({ ...r, experts: [...r.experts] }))
  }

  async announceExperts (rec: ExpertRecord): Promise<void> {
    putNewest(this.experts, `${rec.model}/${rec.layer}`, rec.peer, { ...rec, experts: [...rec.experts] })
  }

  /** Drop a peer's records at once (tests: a peer that vanished before its records expire stays listed otherwise). */
  forget (peer: string): void {
    for (const m of this.blocks.values()) m.delete(peer)
    for (const m of this.experts.values()) m.delete(peer)
  }
}

function putNewest<R extends { version: number }> (maps: Map<string, Map<string, R>>, key: string, peer: string, rec: R): void {
  let m = maps.get(key)
  if (m === undefined) maps.set(key, (m = new Map()))
  const old = m.get(peer)
  if (old === undefined || old.version <= rec.version) m.set(peer, rec)
}
