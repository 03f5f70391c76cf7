/**
 * SwarmDirectory on the private DHT (web/src/net/dht): one signed, expiring record per block a
 * server holds (`/ws-blocks/<model>/<block>/<peer>`) and per expert a peer hosts
 * (`/ws-experts/<model>/<layer>/<expert>/<peer>`), refreshed by the roles' announce loop. Keys
 * end in the announcer's id, so readers first find who provides a block / expert (provider
 * records), then read each one's record. Payloads are JSON, parsed with every field checked.
 */
import type { SwarmDht } from '../net/dht/index.ts'
import { blockKey, expertKey } from '../net/dht/index.ts'
import { MAX_EXPERTS_PER_CALL } from './constants.ts'
import { MalformedMessageError } from './errors.ts'
import type { BlockRecord, ExpertRecord, ServerState, SwarmDirectory } from './records.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const STATES: readonly ServerState[] = ['joining', 'online', 'offline']

/** Provider key of everyone serving block `b` of `model`. */
function blockTopic (model: string, b: number): string {
  return `/ws-blocks/${model}/${b}`
}

function expertTopic (model: string, layer: number, e: number): string {
  return `/ws-experts/${model}/${layer}/${e}`
}

function field<T> (o: Record<string, unknown>, k: string, check: (v: unknown) => v is T): T {
  const v = o[k]
  if (!check(v)) throw new MalformedMessageError(`record field ${k} is invalid: ${JSON.stringify(v)}`)
  return v
}
const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0
const isStr = (v: unknown): v is string => typeof v === 'string' && v.length < 256

function parseBlock (bytes: Uint8Array, signer: string, expiresAt: number): BlockRecord {
  const o = JSON.parse(dec.decode(bytes)) as Record<string, unknown>
  const state = field(o, 'state', isStr)
  if (!STATES.includes(state as ServerState)) throw new MalformedMessageError(`record state ${state}`)
  const r: BlockRecord = {
    peer: signer,
    model: field(o, 'model', isStr),
    start: field(o, 'start', isInt),
    end: field(o, 'end', isInt),
    state: state as ServerState,
    throughput: field(o, 'throughput', isNum),
    cacheTokensLeft: field(o, 'cacheTokensLeft', isInt),
    version: field(o, 'version', isInt),
    expiresAt
  }
  if (r.end <= r.start) throw new MalformedMessageError(`record span [${r.start}, ${r.end}) is empty`)
  return r
}

/**
 * An expert record's payload, every field checked: experts distinct ids < `numExperts`, at most
 * MAX_EXPERTS_PER_CALL of them; state one of Petals' three (absent = online, older announcers).
 */
export function parseExpertRecord (bytes: Uint8Array, signer: string, expiresAt: number, numExperts: number): ExpertRecord {
  let o: Record<string, unknown>
  try {
    o = JSON.parse(dec.decode(bytes)) as Record<string, unknown>
  } catch {
    throw new MalformedMessageError('expert record is not JSON')
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MalformedMessageError('expert record is not an object')
  const experts = field(o, 'experts', (v): v is number[] => Array.isArray(v) && v.length <= MAX_EXPERTS_PER_CALL && v.every(x => isInt(x) && x < numExperts))
  if (new Set(experts).size !== experts.length) throw new MalformedMessageError(`expert record names an expert twice: ${experts.join(', ')}`)
  const state = o.state === undefined ? 'online' : field(o, 'state', isStr)
  if (!STATES.includes(state as ServerState)) throw new MalformedMessageError(`record state ${state}`)
  return {
    peer: signer,
    model: field(o, 'model', isStr),
    layer: field(o, 'layer', isInt),
    experts,
    throughput: field(o, 'throughput', isNum),
    version: field(o, 'version', isInt),
    expiresAt,
    state: state as ServerState
  }
}

export interface DhtDirectoryOptions {
  /** Blocks of each model read through this directory. */
  numBlocks: number
  /** Experts per MoE layer (0 for dense models). @default 0 */
  numExperts?: number
  ttlMs?: number
}

export class DhtDirectory implements SwarmDirectory {
  private readonly provided = new Set<string>()
  /** `<model>/<layer>` → experts whose keys hold one of this peer's records. */
  private readonly announcedExperts = new Map<string, Set<number>>()

  constructor (private readonly dht: SwarmDht, private readonly self: string, private readonly opts: DhtDirectoryOptions) {}

  private async provideOnce (topic: string): Promise<void> {
    if (this.provided.has(topic)) return
    await this.dht.provide(topic)
    this.provided.add(topic)
  }

  async announceBlocks (rec: BlockRecord): Promise<void> {
    const payload = enc.encode(JSON.stringify({ model: rec.model, start: rec.start, end: rec.end, state: rec.state, throughput: rec.throughput, cacheTokensLeft: rec.cacheTokensLeft, version: rec.version }))
    await Promise.all(Array.from({ length: rec.end - rec.start }, async (_, i) => {
      const b = rec.start + i
      await this.dht.put(blockKey(rec.model, b, this.self), payload, { ttlMs: this.opts.ttlMs })
      await this.provideOnce(blockTopic(rec.model, b))
    }))
  }

  async blockRecords (model: string): Promise<BlockRecord[]> {
    const best = new Map<string, BlockRecord>()
    await Promise.all(Array.from({ length: this.opts.numBlocks }, async (_, b) => {
      const peers = await this.dht.findProviders(blockTopic(model, b)).catch(() => [] as string[])
      await Promise.all(peers.map(async peer => {
        try {
          const rec = await this.dht.get(blockKey(model, b, peer))
          const r = parseBlock(rec.payload, rec.signer, rec.expiresAt)
          if (r.model !== model || r.start > b || r.end <= b) return // stale: the peer moved
          const old = best.get(peer)
          if (old === undefined || old.version < r.version) best.set(peer, r)
        } catch {
          // Gone, expired, forged or malformed: the DHT layer already dropped invalid records.
        }
      }))
    }))
    return [...best.values()]
  }

  /**
   * Puts the record under each expert it names and under every expert this peer announced before
   * in that layer: a key left with an older record would keep listing an expert the peer dropped
   * (readers skip a key whose record no longer names its expert).
   */
  async announceExperts (rec: ExpertRecord): Promise<void> {
    const payload = enc.encode(JSON.stringify({ model: rec.model, layer: rec.layer, experts: rec.experts, throughput: rec.throughput, version: rec.version, state: rec.state ?? 'online' }))
    const k = `${rec.model}/${rec.layer}`
    const keys = new Set([...(this.announcedExperts.get(k) ?? []), ...rec.experts])
    this.announcedExperts.set(k, keys)
    await Promise.all([...keys].map(async e => {
      await this.dht.put(expertKey(rec.model, rec.layer, e, this.self), payload, { ttlMs: this.opts.ttlMs })
      await this.provideOnce(expertTopic(rec.model, rec.layer, e))
    }))
  }

  async expertRecords (model: string, layer: number): Promise<ExpertRecord[]> {
    const best = new Map<string, ExpertRecord>()
    await Promise.all(Array.from({ length: this.opts.numExperts ?? 0 }, async (_, e) => {
      const peers = await this.dht.findProviders(expertTopic(model, layer, e)).catch(() => [] as string[])
      await Promise.all(peers.map(async peer => {
        try {
          const rec = await this.dht.get(expertKey(model, layer, e, peer))
          const r = parseExpertRecord(rec.payload, rec.signer, rec.expiresAt, this.opts.numExperts ?? 0)
          if (r.model !== model || r.layer !== layer || !r.experts.includes(e)) return // stale: the peer moved
          const old = best.get(peer)
          if (old === undefined || old.version < r.version) best.set(peer, r)
        } catch {
          // As above: skip what does not verify or parse.
        }
      }))
    }))
    return [...best.values()]
  }
}
