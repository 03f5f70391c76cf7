/**
 * Relays find each other through the swarm's private DHT: every relay provides one well-known
 * key (RELAYS_KEY) and links (relay/peering.ts) to the providers it finds, up to a bound. So a
 * relay started with one `--peer-relay` (or reached by a relay that names it) learns the others,
 * replicates the swarm docs with them, and lists them in `/bootstrap`: a page learns every relay
 * from any one. Provider records carry the relay's addresses, so no address is typed twice.
 * kad-dht keeps provider records for 48 h: a relay found that way but gone is dialled, fails,
 * and is redialled with peering's backoff (1 s → 30 s); it costs a timer, not a slot's worth
 * of traffic. Only websocket addresses are taken (what a relay and a Node peer can dial).
 */
import type { PeerInfo } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { RelayNode } from '../web/src/net/node.ts'
import { realClock, type Clock, type TimerHandle } from '../web/src/util/clock.ts'
import type { RelayPeering } from './peering.ts'

/** The DHT key every relay provides (versioned: a change of meaning gets a new key). */
const RELAYS_KEY = 'webswarm-relays/1'
/** Most relays one relay links to, configured and found together: each link carries every swarm doc's gossip. */
export const MAX_RELAY_LINKS = 8
/** First round after start, ms: the links of `--peer-relay` have filled the routing table by then. */
const FIRST_ROUND_MS = 3_000
/** Later rounds, ms: re-provides (records of a restarted relay) and picks up relays started since. */
export const FIND_RELAYS_INTERVAL_MS = 60_000
/** One provide or lookup may take this long, ms. */
const QUERY_TIMEOUT_MS = 20_000

/** The CID of RELAYS_KEY (kad-dht provider records are keyed by CID). */
async function relaysCid (): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(RELAYS_KEY)))
}

/** A provider's dialable relay address (`…/ws/p2p/<id>`), or undefined. */
export function relayAddrOf (p: PeerInfo): string | undefined {
  const ws = p.multiaddrs.map(String).find(a => /\/wss?(\/|$)/.test(a) && !a.includes('/p2p-circuit'))
  if (ws === undefined) return undefined
  return ws.includes('/p2p/') ? ws : `${ws}/p2p/${p.id.toString()}`
}

export interface RelayFinderInit {
  /** Most links in all. @default MAX_RELAY_LINKS */
  maxLinks?: number
  /** Round period, ms; 0: off (only the rounds `round()` is called for). @default FIND_RELAYS_INTERVAL_MS */
  intervalMs?: number
  clock?: Clock
  log?: (line: string) => void
}

/** Provides RELAYS_KEY and links to the relays that provide it, each round. */
export class RelayFinder {
  private timer?: TimerHandle
  private running = false
  private readonly controller = new AbortController()
  private readonly clock: Clock
  private readonly log: (line: string) => void
  /** Queries whose last try failed: their failures are not logged again until one succeeds. */
  private readonly failing = new Set<'providing' | 'looking up'>()

  constructor (private readonly node: Pick<RelayNode, 'peerId' | 'services'>, private readonly peering: RelayPeering, private readonly init: RelayFinderInit = {}) {
    this.clock = init.clock ?? realClock
    this.log = init.log ?? (() => {})
  }

  start (): void {
    if (this.running || this.every <= 0) return
    this.running = true
    this.schedule(FIRST_ROUND_MS)
  }

  private get every (): number {
    return this.init.intervalMs ?? FIND_RELAYS_INTERVAL_MS
  }

  stop (): void {
    this.running = false
    this.controller.abort()
    this.clock.clearTimeout(this.timer)
  }

  private schedule (ms: number): void {
    this.timer = this.clock.setTimeout(() => {
      void this.round().finally(() => {
        if (this.running) this.schedule(this.every)
      })
    }, ms)
  }

  /**
   * One round: provide RELAYS_KEY, then look its providers up and link to the new ones while
   * under the bound. Returns the addresses linked this round. A relay alone (no DHT server to
   * ask) fails both queries every round until another relay links to it: that is not logged
   * (failed()), and any other failure once per failing stretch, not once a round.
   */
  async round (): Promise<string[]> {
    const dht = this.node.services.dht
    const cid = await relaysCid()
    const signal = (): AbortSignal => AbortSignal.any([this.controller.signal, AbortSignal.timeout(QUERY_TIMEOUT_MS)])
    try {
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      for await (const _ of dht.provide(cid, { signal: signal() })) { /* drain */ }
      this.failing.delete('providing')
    } catch (e) {
      this.failed('providing', e)
    }

    const linked: string[] = []
    const self = this.node.peerId.toString()
    try {
      for await (const ev of dht.findProviders(cid, { signal: signal() })) {
        if (ev.name !== 'PROVIDER') continue
        for (const p of ev.providers) {
          const id = p.id.toString()
          if (id === self || this.peering.knows(id)) continue
          if (this.peering.size >= (this.init.maxLinks ?? MAX_RELAY_LINKS)) { this.failing.delete('looking up'); return linked }
          const addr = relayAddrOf(p)
          if (addr === undefined) continue
          this.log(`relay: found relay ${id} through the DHT; linking`)
          this.peering.add(addr)
          linked.push(addr)
        }
      }
      this.failing.delete('looking up')
    } catch (e) {
      if ((e as Error).name === 'NotFoundError') this.failing.delete('looking up')
      else this.failed('looking up', e)
    }
    return linked
  }

  /**
   * DHT servers in the routing table, or undefined where the DHT does not say (kad-dht keeps its
   * routing table outside its public type).
   */
  private dhtPeers (): number | undefined {
    const size = (this.node.services.dht as unknown as { routingTable?: { size?: unknown } }).routingTable?.size
    return typeof size === 'number' ? size : undefined
  }

  /**
   * Logs a failed query unless its previous try failed too (see round()). Not at all while the
   * routing table is empty: a relay alone (the usual `npm start`) has nobody to ask, so its
   * queries time out every round and that is no news; with DHT peers, a failure is.
   */
  private failed (what: 'providing' | 'looking up', e: unknown): void {
    if (this.controller.signal.aborted || this.failing.has(what) || this.dhtPeers() === 0) return
    this.failing.add(what)
    this.log(`relay: ${what} ${RELAYS_KEY} failed: ${(e as Error).message} (logged again only after a success)`)
  }
}
