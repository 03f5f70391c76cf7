/**
 * Signed, expiring, namespaced records on the private Kademlia DHT, plus provider records.
 *
 * @example
 * ```ts
 * const dht = new SwarmDht(node, privateKey)
 * const key = blockKey('tiny', 3, node.peerId.toString())
 * const ann = dht.announce(key, () => encode({ gflops: 12 }))   // refreshed at half-life
 * const rec = await dht.get(key)                                 // newest valid record
 * ann.stop()
 * ```
 */
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { realClock, type Clock, type TimerHandle } from '../../util/clock.ts'
import { InvalidRecordError, NetConfigError, RecordNotFoundError } from '../errors.ts'
import type { WebSwarmNode } from '../node.ts'
import { DHT_DEFAULT_TTL_MS, DHT_NAMESPACES } from '../protocols.ts'
import { namespaceOf, signRecord, verifyRecord, type SignedRecord } from './records.ts'

export { signRecord, verifyRecord, namespaceOf, type SignedRecord } from './records.ts'

/** A put or get may take this long before it is abandoned, in ms (one relay hop on loopback: ~10 ms). */
export const DHT_QUERY_TIMEOUT_MS = 10_000
/** Announcements refresh at this fraction of their lifetime (Petals: 60 s of 120 s). */
const REFRESH_FRACTION = 0.5
/** A failed refresh is retried after this long, in ms, well inside the remaining half-life. */
const REFRESH_RETRY_MS = 2_000

const utf8 = new TextEncoder()

/** `/ws-blocks/<model>/<block>/<peer>` */
export function blockKey (model: string, block: number, peer: string): string {
  return `/${DHT_NAMESPACES.blocks.name}/${model}/${block}/${peer}`
}

/** `/ws-experts/<model>/<layer>/<expert>/<peer>` */
export function expertKey (model: string, layer: number, expert: number, peer: string): string {
  return `/${DHT_NAMESPACES.experts.name}/${model}/${layer}/${expert}/${peer}`
}

/** `/ws-model/<id>` */
export function modelKey (id: string): string {
  return `/${DHT_NAMESPACES.model.name}/${id}`
}

/** `/ws-peer/<swarm>/<peer>` */
export function peerKey (swarm: string, peer: string): string {
  return `/${DHT_NAMESPACES.peer.name}/${swarm}/${peer}`
}

/** CID under which providers of an arbitrary key (e.g. a block id) are recorded. */
export async function providerCid (key: string): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(utf8.encode(`webswarm-provide${key}`)))
}

export interface PutOptions {
  /** Record lifetime, ms. @default DHT_DEFAULT_TTL_MS (120 s) */
  ttlMs?: number
  signal?: AbortSignal
}

/** A running announcement; stop() ends refreshing (the record then expires by itself). */
export interface Announcement {
  readonly key: string
  /** Publishes a fresh record now (e.g. after the payload changed). */
  refresh: () => Promise<void>
  stop: () => void
}

/** Signed-record and provider API over the node's kad-dht service. */
export class SwarmDht {
  /**
   * @param clock signs and checks record lifetimes and times the announcements' refreshes (tests:
   * a ManualClock whose `now` the nodes' DHT validators share, net/node.ts `now`). @default realClock
   */
  private readonly queryTimeoutMs: number

  /**
   * @param opts.queryTimeoutMs how long one put, get, provide or find may take, ms (the simulator
   * runs hundreds of nodes on two cores, each far slower than a device). @default DHT_QUERY_TIMEOUT_MS
   */
  constructor (private readonly node: WebSwarmNode, private readonly privateKey: PrivateKey, private readonly clock: Clock = realClock, opts: { queryTimeoutMs?: number } = {}) {
    if (!privateKey.publicKey.equals(node.peerId.publicKey)) throw new NetConfigError('SwarmDht: private key does not belong to this node')
    this.queryTimeoutMs = opts.queryTimeoutMs ?? DHT_QUERY_TIMEOUT_MS
    if (!(this.queryTimeoutMs > 0)) throw new NetConfigError(`SwarmDht: queryTimeoutMs ${this.queryTimeoutMs} must be > 0`)
  }

  private signal (signal?: AbortSignal): AbortSignal {
    const t = AbortSignal.timeout(this.queryTimeoutMs)
    return signal === undefined ? t : AbortSignal.any([signal, t])
  }

  /** Signs `payload` under `key` and stores it on the DHT's closest servers. */
  async put (key: string, payload: Uint8Array, opts: PutOptions = {}): Promise<void> {
    const value = await signRecord(this.privateKey, key, payload, opts.ttlMs ?? DHT_DEFAULT_TTL_MS, this.clock.now())
    await this.putSigned(key, value, opts.signal)
  }

  /** Stores an already-signed record value (relaying someone else's record, or tests). */
  async putSigned (key: string, value: Uint8Array, signal?: AbortSignal): Promise<void> {
    let stored = 0
    let lastError: Error | undefined
    for await (const ev of this.node.services.dht.put(utf8.encode(key), value, { signal: this.signal(signal) })) {
      // PEER_RESPONSE also reports the closest-peer walk; only PUT_VALUE replies mean "stored".
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'PUT_VALUE') stored++
      if (ev.name === 'QUERY_ERROR') lastError = ev.error
    }
    if (stored === 0) throw new InvalidRecordError(key, `no DHT server stored it${lastError !== undefined ? `: ${lastError.message}` : ''}`)
  }

  /**
   * The newest valid record under `key`. Records with bad signatures, expired ones and ones under
   * another owner's key are dropped; throws RecordNotFoundError when none is left.
   */
  async get (key: string, opts: { signal?: AbortSignal } = {}): Promise<SignedRecord> {
    namespaceOf(key)
    let best: SignedRecord | undefined
    try {
      for await (const ev of this.node.services.dht.get(utf8.encode(key), { signal: this.signal(opts.signal) })) {
        if (ev.name !== 'VALUE') continue
        const rec = await verifyRecord(key, ev.value, this.clock.now()).catch((e: unknown) => {
          if (e instanceof InvalidRecordError) return undefined
          throw e
        })
        if (rec !== undefined && (best === undefined || rec.issuedAt > best.issuedAt)) best = rec
      }
    } catch (e) {
      if ((e as Error).name !== 'NotFoundError' && best === undefined) throw e
    }
    if (best === undefined) throw new RecordNotFoundError(key)
    return best
  }

  /**
   * Publishes `payload()` under `key` now and again at half of each record's lifetime, so readers
   * always find an unexpired record while the announcer lives.
   */
  announce (key: string, payload: () => Uint8Array, opts: { ttlMs?: number, onError?: (e: Error) => void } = {}): Announcement {
    const ttlMs = opts.ttlMs ?? DHT_DEFAULT_TTL_MS
    namespaceOf(key)
    let timer: TimerHandle | undefined
    let stopped = false
    const controller = new AbortController()
    const schedule = (ms: number): void => {
      if (stopped) return
      this.clock.clearTimeout(timer)
      // refresh() has reported its failure to onError and rescheduled itself.
      timer = this.clock.setTimeout(() => { void refresh().catch(() => {}) }, ms)
    }
    const refresh = async (): Promise<void> => {
      try {
        await this.put(key, payload(), { ttlMs, signal: controller.signal })
        schedule(ttlMs * REFRESH_FRACTION)
      } catch (e) {
        opts.onError?.(e as Error)
        schedule(Math.min(REFRESH_RETRY_MS, ttlMs * REFRESH_FRACTION))
        throw e
      }
    }
    // As above: failures go to onError and a sooner retry.
    void refresh().catch(() => {})
    return {
      key,
      refresh,
      stop: () => {
        stopped = true
        this.clock.clearTimeout(timer)
        controller.abort()
      }
    }
  }

  /** Announces this peer as a provider of `key` (kad provider record, reprovided by kad-dht). */
  async provide (key: string, signal?: AbortSignal): Promise<void> {
    const cid = await providerCid(key)
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    for await (const _ of this.node.services.dht.provide(cid, { signal: this.signal(signal) })) { /* drain */ }
  }

  /** Peer ids (string) currently providing `key`. */
  async findProviders (key: string, signal?: AbortSignal): Promise<string[]> {
    const cid = await providerCid(key)
    const found = new Set<string>()
    try {
      for await (const ev of this.node.services.dht.findProviders(cid, { signal: this.signal(signal) })) {
        if (ev.name === 'PROVIDER') for (const p of ev.providers) found.add(p.id.toString())
      }
    } catch (e) {
      if ((e as Error).name !== 'NotFoundError') throw e
    }
    return [...found]
  }
}
