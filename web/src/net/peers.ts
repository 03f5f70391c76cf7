/**
 * Keeps a peer in the swarm: connected to the relay (redial with backoff), holding a reservation,
 * discovering peers (pubsub discovery + DHT provider records under the swarm's rendezvous key)
 * and holding a target number of direct WebRTC links (redial with per-peer backoff). A candidate
 * the relay keeps answering NO_RESERVATION for has left: it is dropped and ignored for a while.
 * `dialThroughRelay` is the one-off dial other modules use (bounded NO_RESERVATION retries).
 */
import type { Connection, PeerId, PeerInfo } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { TypedEventEmitter } from 'main-event'
import { realClock, type Clock } from '../util/clock.ts'
import { ConnectionBudget } from './conn-budget.ts'
import { HalfOpenGuard } from './half-open.ts'
import { BootstrapUnreachableError, NetConfigError, StampRefusedError } from './errors.ts'
import { MAX_RELAY_RESERVATIONS, type WebSwarmNode } from './node.ts'
import { DEFAULT_RESERVATION_POW_BITS } from './pow.ts'
import { POW_STAMP, presentStamp } from './pow-protocol.ts'
import { mintOffThread } from './pow-offthread.ts'
import { RelayStamps } from './stamp-renewal.ts'
import { ReservationKeeper, storeReserve } from './reservation-keeper.ts'

/** How a connection reaches its peer. */
export type ConnectionKind = 'webrtc' | 'relayed' | 'websocket' | 'other'

/** Direct WebRTC peers to hold. 8 gives a well-connected gossip mesh (gossipsub D=6) plus slack. */
const DEFAULT_TARGET_PEERS = 8
/** First redial delay after losing the relay or failing a dial, in ms. */
const BACKOFF_INITIAL_MS = 250
/** Backoff ceiling in ms (a relay whose dials time out: RELAY_DOWN_REDIAL_MAX_MS for one that refuses them). */
const BACKOFF_MAX_MS = 10_000
/** Each attempt may be up to ±20 % off its nominal delay so peers do not redial in lockstep. */
const BACKOFF_JITTER = 0.2
/**
 * A relay dial that failed within this, in ms, was refused outright (the port is closed: the relay
 * is down or restarting), not timed out (a peer gives an address PEER_ADDRESS_DIAL_TIMEOUT_MS,
 * net/node.ts): refused under load 17 took ≤ 1.5 s in the failover bench.
 */
export const RELAY_REFUSED_WITHIN_MS = 3_000
/**
 * Redial ceiling, in ms, for a relay whose dials are refused outright: such a dial costs the relay
 * nothing, and at BACKOFF_MAX_MS a restarted relay waited up to 12 s for each peer's next try (a
 * timed-out dial then added 6 s plus another 12: a restarted relay had all 30 peers back only
 * 40-47 s after it listened, BENCHMARKS.md § relay_failover_s). Dials that time out (a relay up
 * but swamped) still back off to BACKOFF_MAX_MS, which spreads the crowd.
 */
export const RELAY_DOWN_REDIAL_MAX_MS = 2_000
/** Maintenance tick: redial lost peers, top up to target, in ms. */
const MAINTAIN_INTERVAL_MS = 1_000
/** How often to look up swarm providers in the DHT, in ms (pubsub discovery covers the rest). */
const DHT_DISCOVERY_INTERVAL_MS = 15_000
/**
 * A DHT round that finds no new member doubles the wait before the next, up to this, in ms; one
 * that finds a member, or a relay (re)connecting, brings it back to DHT_DISCOVERY_INTERVAL_MS.
 * Each round provides the rendezvous key and asks every relay for its providers (the relay loads
 * each provider from its peer store): at 15 s flat, 30 idle peers kept DHT work the largest share
 * of the relays' and peers' CPU (the failover bench's steady state, BENCHMARKS.md § Scale), for
 * members pubsub discovery (every 5 s) had long announced. Provider records outlive 4 min by hours.
 */
export const DHT_DISCOVERY_MAX_INTERVAL_MS = 240_000
/**
 * Right after (re)connecting to the relay, look up again after these delays (ms): peers that
 * joined at the same moment have provided the rendezvous key by then.
 */
const DHT_DISCOVERY_FAST_START_MS = [1_000, 3_000, 7_000]
/** The higher peer id waits this long for the lower one to dial before dialling itself, in ms. */
const DIAL_GRACE_MS = 2_000
/** One dial (relay or WebRTC) may take this long, in ms; ICE on loopback takes ~1 s. */
const DIAL_TIMEOUT_MS = 15_000
/** A DHT provide/findProviders query may take this long, in ms. */
const DHT_QUERY_TIMEOUT_MS = 10_000
/**
 * Consecutive NO_RESERVATION answers after which a candidate counts as gone. A live peer is off
 * the relay only while it (re)connects and reserves (< 1 s on a LAN); at 250 ms → 2 s backoff
 * four answers span ~4 s. DHT provider records outlive their peers by hours, so without this a
 * departed peer was dialled through the relay every 10 s forever.
 */
export const GONE_AFTER_NO_RESERVATION = 4
/** A gone candidate is not re-added from discovery for this long, in ms (it may dial us itself). */
const GONE_FOR_MS = 60_000
/**
 * A connected relay we hold no reservation on, while we hold fewer than we want, for this long:
 * its connection is closed so the redial reserves again — the last resort for a connection the
 * relay no longer answers on. The ReservationKeeper now re-asks on the same connection every
 * 1-8 s, so this is no longer how a timed-out ask gets retried; at 30 s (when it was) it cut
 * asks in flight at load 20+ (ConnectionClosedError / EOF in the failover bench's join),
 * restarting the dial, identify and stamp each time.
 */
export const RESERVATION_STALL_MS = 120_000

/** Protocols whose streams stay open on every link (gossip mesh, identify, ping, DHT): not activity. */
const BACKGROUND_PROTOCOL = /^\/(meshsub|floodsub|ipfs\/id|ipfs\/ping|webswarm\/kad)\//

/** Classifies a connection: direct WebRTC, relayed (limited / via /p2p-circuit), websocket. */
export function connectionKind (conn: Connection): ConnectionKind {
  const addr = conn.remoteAddr.toString()
  if (conn.limits !== undefined) return 'relayed'
  if (addr.includes('/webrtc') && !addr.includes('/webrtc-direct')) return 'webrtc'
  if (addr.includes('/p2p-circuit')) return 'relayed'
  if (addr.includes('/ws')) return 'websocket'
  return 'other'
}

/** Open direct WebRTC connections of `node`. */
export function directConnections (node: WebSwarmNode): Connection[] {
  return node.getConnections().filter(c => c.status === 'open' && connectionKind(c) === 'webrtc')
}

/** Rendezvous CID of a swarm: every member provides it in the DHT, so members find each other. */
export async function swarmRendezvousCid (swarm: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(`webswarm-rendezvous/${swarm}`))
  return CID.createV1(raw.code, digest)
}

/** Whether `err` is the relay's answer that the target holds no reservation (or no connection) on it. */
export function isNoReservation (err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = (e as Error & { cause?: unknown }).cause, depth++) {
    if (e.message.includes('NO_RESERVATION')) return true
    if (e instanceof AggregateError && e.errors.some(x => isNoReservation(x))) return true
  }
  return false
}

export interface RelayDialOptions {
  signal?: AbortSignal
  /** Rounds over the relays (one dial through each) for failures other than NO_RESERVATION (WebRTC set-up, timeouts). @default 2 */
  attempts?: number
  /** Rounds retried after every relay answered NO_RESERVATION, with backoff from BACKOFF_INITIAL_MS (250 → 500 → 1000 ms). @default 3 */
  noReservationRetries?: number
  /** Times the NO_RESERVATION backoff (tests: a ManualClock). @default realClock */
  clock?: Clock
}

/** The part of a node dialThroughRelay uses (tests pass a stand-in). */
type RelayDialNode = Pick<WebSwarmNode, 'dial'> & Partial<Pick<WebSwarmNode, 'getConnections' | 'addEventListener' | 'removeEventListener' | 'peerStore'>>

/** `…/p2p/<id>` → id (the last /p2p/ component). */
function relayIdOf (addr: string): string | undefined {
  return multiaddr(addr).getComponents().findLast(c => c.name === 'p2p')?.value
}

/**
 * Relays to signal a WebRTC dial to `peer` through, best first, one address each: relays we are
 * connected to before ones we would have to dial (a dead relay costs a failed dial, a blackholed
 * one the whole timeout); among those, relays `peer` advertises a reservation on (its circuit
 * addresses in our peer store) before others, which would answer NO_RESERVATION; then `given`'s
 * order. Besides `given`, every relay we hold a websocket connection to is a route: peers reach
 * each other over WebRTC, so a peer's websocket links are its relay links.
 */
export async function signallingRelays (node: RelayDialNode, peer: string, given: readonly string[]): Promise<string[]> {
  const routes = new Map<string, { addr: string, connected: boolean, reserved: boolean, order: number }>()
  const add = (addr: string, connected: boolean): void => {
    const id = relayIdOf(addr)
    if (id === undefined || id === peer) return
    const known = routes.get(id)
    if (known === undefined) routes.set(id, { addr, connected, reserved: false, order: routes.size })
    else if (connected && !known.connected) Object.assign(known, { addr, connected })
  }
  for (const a of given) add(a, false)
  for (const c of node.getConnections?.() ?? []) {
    if (c.status !== 'open' || connectionKind(c) !== 'websocket') continue
    const a = c.remoteAddr.toString()
    add(a.includes('/p2p/') ? a : `${a}/p2p/${c.remotePeer.toString()}`, true)
  }
  // A peer the store does not know has no reservation relays to prefer: the connected ones still serve.
  const stored = await node.peerStore?.get(peerIdFromString(peer)).catch(() => undefined)
  for (const { multiaddr: ma } of stored?.addresses ?? []) {
    const s = ma.toString()
    const at = s.indexOf('/p2p-circuit')
    const id = at < 0 ? undefined : relayIdOf(s.slice(0, at))
    const r = id === undefined ? undefined : routes.get(id)
    if (r !== undefined) r.reserved = true
  }
  const rank = (r: { connected: boolean, reserved: boolean }): number => (r.connected ? 0 : 2) + (r.reserved ? 0 : 1)
  return [...routes.values()].sort((a, b) => rank(a) - rank(b) || a.order - b.order).map(r => r.addr)
}

/**
 * Dials `peer` over WebRTC signalled through a relay: `relayAddr` (`…/p2p/<relay id>`, or several)
 * or any other relay we are connected to, in signallingRelays' order, so that a dead relay, or one
 * the peer holds no reservation on, costs one attempt and the next relay is tried at once.
 * NO_RESERVATION from every relay means the peer is on none right now: gone, or between
 * connecting and reserving (a joiner, or a peer redialling a restarted relay); the round is
 * retried with backoff, which a reconnecting peer's reservation beats on a LAN. A round that
 * failed otherwise is retried at once (WebRTC set-up through a busy relay sometimes fails once).
 * A failed dial whose peer meanwhile opened a direct connection to us (it dialled at the same
 * moment) returns that connection. The last error is thrown.
 */
export async function dialThroughRelay (node: RelayDialNode, relayAddr: string | readonly string[], peer: PeerId | string, options: RelayDialOptions = {}): Promise<Connection> {
  const key = peer.toString()
  const given = typeof relayAddr === 'string' ? [relayAddr] : relayAddr
  // Two peers dialling each other at once (both start an exchange) often see one set-up succeed
  // at once and the other time out after seconds: a direct connection from them is the answer.
  const isTheirs = (c: Connection): boolean => c.remotePeer.toString() === key && c.status === 'open' && connectionKind(c) === 'webrtc'
  const direct = (): Connection | undefined => node.getConnections?.().find(isTheirs)
  let failures = 0
  let noReservation = 0
  for (;;) {
    const routes = await signallingRelays(node, key, given)
    if (routes.length === 0) throw new NetConfigError(`no relay to signal a dial to ${key} through`)
    let last: unknown
    let absent = false
    for (const relay of routes) {
      try {
        return await dialOrTheirs(node, multiaddr(`${relay}/p2p-circuit/webrtc/p2p/${key}`), isTheirs, options.signal)
      } catch (e) {
        if (options.signal?.aborted === true) throw e
        const up = direct()
        if (up !== undefined) return up
        last = e
        absent ||= isNoReservation(e)
      }
    }
    if (absent) {
      if (++noReservation > (options.noReservationRetries ?? 3)) throw last
      await abortableSleep(BACKOFF_INITIAL_MS * 2 ** (noReservation - 1), options.signal, options.clock ?? realClock)
    } else if (++failures >= (options.attempts ?? 2)) {
      throw last
    }
  }
}

/**
 * Our dial of `addr`, or the first connection `isTheirs` accepts that opens meanwhile. Our dial
 * then runs on (its result is dropped): aborting a WebRTC set-up midway left half-open
 * connections, open on one side and gone on the other (bench:net "simultaneous dials").
 */
async function dialOrTheirs (node: RelayDialNode, addr: Multiaddr, isTheirs: (c: Connection) => boolean, signal?: AbortSignal): Promise<Connection> {
  if (node.addEventListener === undefined || node.removeEventListener === undefined) return await node.dial(addr, { signal })
  const dialing = node.dial(addr, { signal })
  let onOpen: ((evt: CustomEvent<Connection>) => void) | undefined
  const theirs = new Promise<Connection>(resolve => {
    onOpen = (evt) => { if (isTheirs(evt.detail)) resolve(evt.detail) }
    node.addEventListener!('connection:open', onOpen)
  })
  try {
    const won = await Promise.race([dialing.then(c => ({ c, mine: true })), theirs.then(c => ({ c, mine: false }))])
    if (!won.mine) dialing.catch(() => {}) // dropped: a late failure of ours is no one's concern
    return won.c
  } finally {
    node.removeEventListener('connection:open', onOpen)
  }
}

async function abortableSleep (ms: number, signal: AbortSignal | undefined, clock: Clock): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const t = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clock.clearTimeout(t); reject(signal?.reason as Error) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** How often waitForReservation re-checks the address list, in ms (besides self:peer:update events). */
const RESERVATION_POLL_MS = 100

/** Resolves once `node` advertises a circuit-relay address (its reservation is live). */
export async function waitForReservation (node: WebSwarmNode, timeoutMs = DIAL_TIMEOUT_MS): Promise<Multiaddr[]> {
  const circuit = (): Multiaddr[] => node.getMultiaddrs().filter(m => m.toString().includes('/p2p-circuit'))
  if (circuit().length > 0) return circuit()
  return await new Promise((resolve, reject) => {
    const check = (): void => {
      const addrs = circuit()
      if (addrs.length > 0) { done(); resolve(addrs) }
    }
    // The address list can change without a self:peer:update reaching us first; poll as well.
    const poll = setInterval(check, RESERVATION_POLL_MS)
    const timer = setTimeout(() => { done(); reject(new BootstrapUnreachableError(`no relay reservation within ${timeoutMs} ms`)) }, timeoutMs)
    const done = (): void => {
      clearTimeout(timer)
      clearInterval(poll)
      node.removeEventListener('self:peer:update', check)
    }
    node.addEventListener('self:peer:update', check)
  })
}

function backoffDelay (failures: number, maxMs = BACKOFF_MAX_MS, random: () => number = Math.random): number {
  const nominal = Math.min(maxMs, BACKOFF_INITIAL_MS * 2 ** Math.max(0, failures - 1))
  return nominal * (1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * random())
}

/**
 * Wait before redialling a relay after `failures` failed dials in a row, the last of which failed
 * after `failedAfterMs`: refused outright (within RELAY_REFUSED_WITHIN_MS) the ceiling is
 * RELAY_DOWN_REDIAL_MAX_MS, so a restarted relay is found within ~2 s of listening; timed out, the
 * usual BACKOFF_MAX_MS.
 */
export function relayRedialDelay (failures: number, failedAfterMs: number, random: () => number = Math.random): number {
  return backoffDelay(failures, failedAfterMs < RELAY_REFUSED_WITHIN_MS ? RELAY_DOWN_REDIAL_MAX_MS : BACKOFF_MAX_MS, random)
}

/** Bootstrap multiaddrs grouped by relay peer id (several addresses of one relay are alternatives). */
function relaysById (bootstrap: string[]): Map<string, Multiaddr[]> {
  const byId = new Map<string, Multiaddr[]>()
  for (const a of bootstrap) {
    const addr = multiaddr(a)
    const id = addr.getComponents().findLast(c => c.name === 'p2p')?.value
    if (id === undefined) throw new NetConfigError(`bootstrap address ${a} must end in /p2p/<relay peer id>`)
    byId.set(id, [...(byId.get(id) ?? []), addr])
  }
  return byId
}

/** How many distinct relays `bootstrap` names: a peer reserves on up to MAX_RELAY_RESERVATIONS (node.ts) of them. */
export function relayCount (bootstrap: string[]): number {
  return relaysById(bootstrap).size
}

/**
 * Dials every relay of `bootstrap` at once (a relay's several addresses are alternatives) and
 * resolves when the first connects; the others connect on in the background. A dead or
 * blackholed first relay so costs nothing. Throws BootstrapUnreachableError naming each
 * relay's failure when none connects within `timeoutMs`.
 */
export async function dialAnyRelay (node: Pick<WebSwarmNode, 'dial'>, bootstrap: string[], timeoutMs = DIAL_TIMEOUT_MS): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs)
  const dials = [...relaysById(bootstrap)].map(async ([id, addrs]) => {
    try {
      await node.dial(addrs, { signal })
    } catch (e) {
      throw new BootstrapUnreachableError(`relay ${id}: ${(e as Error).message}`)
    }
  })
  try {
    await Promise.any(dials)
  } catch (e) {
    throw new BootstrapUnreachableError(`no relay reachable: ${(e as AggregateError).errors.map((x: Error) => x.message).join('; ')}`)
  }
}

export interface PeerManagerInit {
  /** Relay multiaddrs, each ending in `/p2p/<relay id>`; several per relay are alternatives. */
  bootstrap: string[]
  /** Swarm name (rendezvous key). */
  swarm: string
  /** Direct WebRTC peers to hold. @default DEFAULT_TARGET_PEERS */
  targetPeers?: number
  /** Look up DHT providers this often, in ms. @default DHT_DISCOVERY_INTERVAL_MS */
  dhtDiscoveryIntervalMs?: number
  /** Log sink for connection events. @default console.info */
  log?: (line: string) => void
  /** Bounds direct links open at once and over the tab's lifetime (conn-budget.ts). @default new ConnectionBudget() */
  budget?: ConnectionBudget
  /**
   * Difficulty of the identity stamp presented to each relay on connecting, so that it grants a
   * reservation (relay --reservation-pow-bits; pow-protocol.ts); 0 presents none.
   * @default DEFAULT_RESERVATION_POW_BITS
   */
  reservationPowBits?: number
  /** Days of the identity stamps, renewed each UTC midnight (stamp-renewal.ts; tests: a ManualClock). @default realClock */
  clock?: Clock
}

export interface PeerManagerEvents {
  /** Relay connection state changed; detail: connected. */
  'relay': CustomEvent<boolean>
  /** A direct WebRTC link opened or closed; detail: the remote peer id. */
  'direct:open': CustomEvent<string>
  'direct:close': CustomEvent<string>
  /** Anything worth re-rendering (candidates, backoff). */
  'change': CustomEvent<void>
}

interface Candidate {
  id: PeerId
  addrs: Multiaddr[]
  failures: number
  /** Consecutive NO_RESERVATION answers from the relay for this peer. */
  noReservation: number
  nextAttemptAt: number
  firstSeenAt: number
}

/** Relay link plus direct peer set of one node. Start it after the node. */
export class PeerManager extends TypedEventEmitter<PeerManagerEvents> {
  readonly targetPeers: number
  /** Open and lifetime direct-link counts; the page shows them (event `change`). */
  readonly budget: ConnectionBudget
  /** One entry per relay peer id; `addrs` are its alternative addresses (all tried per dial). */
  private readonly relays: Array<{ addrs: Multiaddr[], id: string, failures: number, connected: boolean, connectedAt?: number, timer?: ReturnType<typeof setTimeout>, stampShown?: boolean }>
  private readonly candidates = new Map<string, Candidate>()
  /** Since when we have held fewer reservations than we want (unstallReservation), ms; undefined: not short. */
  private shortSince?: number
  /** Candidates the relay keeps answering NO_RESERVATION for → when they may be re-added. */
  private readonly gone = new Map<string, number>()
  private readonly dialing = new Set<string>()
  private readonly log: (line: string) => void
  private readonly dhtIntervalMs: number
  private maintainTimer?: ReturnType<typeof setInterval>
  private dhtTimer?: ReturnType<typeof setTimeout>
  /** Wait before the next DHT round (DHT_DISCOVERY_MAX_INTERVAL_MS says how it grows), ms. */
  private dhtDelayMs: number
  private readonly fastStartTimers = new Set<ReturnType<typeof setTimeout>>()
  private running = false
  private readonly controller = new AbortController()
  /** Asks connected relays for reservations at once and in parallel while we hold too few (reservation-keeper.ts). */
  private readonly keeper: ReservationKeeper
  /** Stamps for each relay (scope relay/<id>) and UTC day: presented on every (re)connect, and renewed each day on the open connections. */
  private stamps?: RelayStamps
  private readonly powBits: number
  /** Closes direct links only this side holds, so that it dials the peer again (half-open.ts). */
  private readonly halfOpen: HalfOpenGuard

  constructor (readonly node: WebSwarmNode, private readonly init: PeerManagerInit) {
    super()
    if (init.bootstrap.length === 0) throw new NetConfigError('PeerManager needs at least one bootstrap (relay) address')
    this.relays = [...relaysById(init.bootstrap)].map(([id, addrs]) => ({ addrs, id, failures: 0, connected: false }))
    this.targetPeers = init.targetPeers ?? DEFAULT_TARGET_PEERS
    this.budget = init.budget ?? new ConnectionBudget()
    this.dhtIntervalMs = init.dhtDiscoveryIntervalMs ?? DHT_DISCOVERY_INTERVAL_MS
    this.dhtDelayMs = this.dhtIntervalMs
    this.log = init.log ?? ((l) => { console.info(l) })
    this.powBits = init.reservationPowBits ?? DEFAULT_RESERVATION_POW_BITS
    this.halfOpen = new HalfOpenGuard(node, { isDirect: c => c.status === 'open' && connectionKind(c) === 'webrtc', log: this.log })
    let reserve: ((id: string) => Promise<void>) | undefined
    this.keeper = new ReservationKeeper({
      want: Math.min(MAX_RELAY_RESERVATIONS, this.relays.length),
      connected: () => this.relays.filter(r => r.connected).map(r => r.id),
      held: () => this.liveReservations(),
      reserve: async (id) => { await this.reserveOn(id, reserve ??= storeReserve(this.node)) },
      log: this.log
    })
  }

  /** Relay peer ids (never treated as swarm members). */
  get relayIds (): string[] {
    return this.relays.map(r => r.id)
  }

  /** Whether at least one relay is connected. */
  get relayConnected (): boolean {
    return this.relays.some(r => r.connected)
  }

  /** Remote peer ids with an open direct WebRTC connection. */
  directPeers (): string[] {
    return [...new Set(directConnections(this.node).map(c => c.remotePeer.toString()))]
  }

  /** Dials the relays (not waiting), then keeps everything up until stop(). */
  start (): void {
    if (this.running) return
    this.running = true
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.node.addEventListener('connection:open', this.onConnectionOpen)
    this.node.addEventListener('connection:close', this.onConnectionClose)
    this.halfOpen.start()
    if (this.powBits > 0) {
      this.stamps = new RelayStamps({
        peer: this.node.peerId.toString(),
        bits: this.powBits,
        clock: this.init.clock,
        signal: this.controller.signal,
        mint: mintOffThread, // a Web Worker on the page; in place in Node
        onRenew: (id) => {
          const r = this.relays.find(x => x.id === id)
          if (r?.connected === true) void this.presentStampTo(r)
        }
      })
    }
    for (const r of this.relays) {
      // Minted while the dial is under way (a worker on the page; in Node it yields to the event loop every few ms).
      if (this.powBits > 0) this.stampFor(r.id).catch(() => {}) // a failed mint is logged when presenting
      void this.dialRelay(r)
    }
    this.maintainTimer = setInterval(() => { this.maintain() }, MAINTAIN_INTERVAL_MS)
    this.scheduleDhtRound()
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.keeper.stop()
    this.halfOpen.stop()
    this.stamps?.stop()
    this.controller.abort()
    clearInterval(this.maintainTimer)
    clearTimeout(this.dhtTimer)
    for (const t of this.fastStartTimers) clearTimeout(t)
    for (const r of this.relays) clearTimeout(r.timer)
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.node.removeEventListener('connection:open', this.onConnectionOpen)
    this.node.removeEventListener('connection:close', this.onConnectionClose)
  }

  /** Resolves once a relay is connected and our reservation is live. */
  async ready (timeoutMs = DIAL_TIMEOUT_MS): Promise<void> {
    await waitForReservation(this.node, timeoutMs)
  }

  /** This peer's stamp for relay `id` today (minted on first use). */
  private async stampFor (id: string): Promise<string> {
    if (this.stamps === undefined) throw new NetConfigError('no identity stamps: reservationPowBits is 0 or the peer manager is not started')
    return await this.stamps.stampFor(id)
  }

  /** Shows relay `r` our identity stamp, which it asks before a reservation; its reservation request waits for it there. */
  private async presentStampTo (r: PeerManager['relays'][number]): Promise<boolean> {
    if (this.powBits === 0) return true
    try {
      await presentStamp(this.node, peerIdFromString(r.id), await this.stampFor(r.id), AbortSignal.any([this.controller.signal, AbortSignal.timeout(POW_STAMP.timeoutMs)]))
      r.stampShown = true
      return true
    } catch (e) {
      if ((e as Error).name === 'UnsupportedProtocolError') {
        // A relay that serves no stamp protocol (a plain libp2p relay, or one with its limits off)
        // asks none: reserve without one rather than treat it as a refusal and never ask.
        r.stampShown = true
        return true
      }
      if (this.running) this.log(`relay ${r.id}: identity stamp not accepted (${(e as Error).message}); shown again before the next reservation ask`)
      return false
    }
  }

  /**
   * The keeper's reservation ask on relay `id`: our stamp first where this connection has not seen
   * it (a presentation that timed out at load left every later ask refused until a reconnect).
   */
  private async reserveOn (id: string, reserve: (id: string) => Promise<void>): Promise<void> {
    const r = this.relays.find(x => x.id === id)
    if (r !== undefined && r.stampShown !== true && !await this.presentStampTo(r)) throw new StampRefusedError(id)
    await reserve(id)
  }

  private async dialRelay (r: PeerManager['relays'][number]): Promise<void> {
    if (!this.running) return
    const started = Date.now()
    try {
      await this.node.dial(r.addrs, { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
      if (r.failures > 0) this.log(`relay ${r.id}: reconnected after ${r.failures} failed attempt(s)`)
      r.failures = 0
      r.connected = true
      r.connectedAt = Date.now()
      this.dispatchEvent(new CustomEvent('relay', { detail: true }))
      // Ask for a reservation once the relay has our stamp (it refuses one asked before it).
      void this.presentStampTo(r).then(() => { this.keeper.poke() })
      void this.dhtDiscover()
      // The swarm may have changed while we were away: paced rounds start over.
      this.dhtDelayMs = this.dhtIntervalMs
      this.scheduleDhtRound()
      // The fast start is for a newcomer, which knows no one yet. A member reconnecting to a
      // restarted relay skips it: 30 peers doing 4 rounds each within 7 s of the restart piled
      // onto a relay busy re-admitting all of them (the failover bench's restarts).
      if (this.candidates.size === 0) {
        for (const ms of DHT_DISCOVERY_FAST_START_MS) {
          const t = setTimeout(() => { this.fastStartTimers.delete(t); void this.dhtDiscover() }, ms)
          this.fastStartTimers.add(t)
        }
      }
    } catch (e) {
      if (!this.running) return
      r.failures++
      const failedAfterMs = Date.now() - started
      const delay = relayRedialDelay(r.failures, failedAfterMs)
      this.log(`relay ${r.id}: dial failed after ${failedAfterMs} ms (${(e as Error).message}); retry ${r.failures} in ${Math.round(delay)} ms`)
      r.timer = setTimeout(() => { void this.dialRelay(r) }, delay)
    }
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    const r = this.relays.find(x => x.id === id)
    if (r === undefined || !this.running) return
    r.connected = false
    r.stampShown = false // a new connection is a new admission: the relay asks again
    this.dispatchEvent(new CustomEvent('relay', { detail: false }))
    this.keeper.poke() // a lost reservation is asked for on the other connected relays at once
    r.failures++
    const delay = backoffDelay(r.failures)
    this.log(`relay ${id}: disconnected; redial in ${Math.round(delay)} ms`)
    clearTimeout(r.timer)
    r.timer = setTimeout(() => { void this.dialRelay(r) }, delay)
  }

  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    if (connectionKind(conn) !== 'webrtc') return
    const id = conn.remotePeer.toString()
    this.budget.recordOpen(id)
    this.gone.delete(id) // it dialled us: alive after all
    const c = this.candidates.get(id)
    if (c !== undefined) { c.failures = 0; c.noReservation = 0 }
    this.dispatchEvent(new CustomEvent('direct:open', { detail: id }))
    this.dispatchEvent(new CustomEvent('change'))
  }

  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    if (connectionKind(conn) !== 'webrtc') return
    const id = conn.remotePeer.toString()
    if (this.directPeers().includes(id)) return
    this.budget.recordClose(id)
    const c = this.candidates.get(id)
    if (c !== undefined) c.nextAttemptAt = Date.now() + backoffDelay(Math.max(1, c.failures))
    this.dispatchEvent(new CustomEvent('direct:close', { detail: id }))
    this.dispatchEvent(new CustomEvent('change'))
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.addCandidate(evt.detail.id, evt.detail.multiaddrs)
  }

  /** Adds or refreshes a discovered member; true when it was not a candidate yet. */
  private addCandidate (id: PeerId, addrs: Multiaddr[]): boolean {
    const key = id.toString()
    if (key === this.node.peerId.toString() || this.relayIds.includes(key)) return false
    const goneUntil = this.gone.get(key)
    if (goneUntil !== undefined) {
      if (Date.now() < goneUntil) return false
      this.gone.delete(key)
    }
    const known = this.candidates.get(key)
    const webrtc = addrs.filter(a => WebRTC.matches(a))
    if (known !== undefined) {
      if (webrtc.length > 0) known.addrs = webrtc
    } else {
      this.candidates.set(key, { id, addrs: webrtc, failures: 0, noReservation: 0, nextAttemptAt: 0, firstSeenAt: Date.now() })
      this.dispatchEvent(new CustomEvent('change'))
    }
    this.maintain()
    return known === undefined
  }

  /** Known swarm members (discovered, not necessarily connected). */
  knownPeers (): string[] {
    return [...this.candidates.keys()]
  }

  /** Relay ids we hold a reservation on (our /p2p-circuit addresses name them). */
  reservedRelays (): Set<string> {
    const out = new Set<string>()
    for (const a of this.node.getMultiaddrs()) {
      const s = a.toString()
      const at = s.indexOf('/p2p-circuit')
      if (at < 0) continue
      const id = s.slice(0, at).split('/p2p/')[1]
      if (id !== undefined) out.add(id)
    }
    return out
  }

  /**
   * Closes one relay connection whose reservation stalled, so that the redial reserves: we have
   * been short of reservations, and connected to it, for RESERVATION_STALL_MS. Counted from when
   * we fell short, not from the (long-lived) connection: when a relay dies, libp2p's transport
   * reserves on another connected relay by itself within a second or two, and hanging that relay
   * up at once (as this did) cut the attempt and added a whole reconnect to every failover.
   */
  /** Relays we hold a reservation on and are still connected to (a dead relay's circuit address can outlive its connection). */
  private liveReservations (): Set<string> {
    return new Set([...this.reservedRelays()].filter(id => this.relays.find(x => x.id === id)?.connected !== false))
  }

  private unstallReservation (now: number): void {
    const held = this.liveReservations()
    if (held.size >= Math.min(MAX_RELAY_RESERVATIONS, this.relays.length)) {
      this.shortSince = undefined
      return
    }
    this.shortSince ??= now
    const since = (x: { connectedAt?: number }): number => Math.max(x.connectedAt ?? now, this.shortSince ?? now)
    const r = this.relays.find(x => x.connected && !held.has(x.id) && now - since(x) >= RESERVATION_STALL_MS)
    if (r === undefined) return
    r.connectedAt = now
    this.log(`relay ${r.id}: connected ${RESERVATION_STALL_MS / 1000} s without our reservation; reconnecting to reserve`)
    void this.node.hangUp(peerIdFromString(r.id)).catch((e: Error) => { this.log(`relay ${r.id}: hang-up failed: ${e.message}`) })
  }

  /** Tops up direct links to the target: dial due candidates in order of fewest failures. */
  private maintain (): void {
    if (!this.running) return
    this.keeper.poke()
    this.unstallReservation(Date.now())
    this.closeIdle()
    const direct = new Set(this.directPeers())
    let missing = this.targetPeers - direct.size - this.dialing.size
    if (missing <= 0) return
    const now = Date.now()
    const self = this.node.peerId.toString()
    const ready = [...this.candidates.values()]
      .filter(c => !direct.has(c.id.toString()) && !this.dialing.has(c.id.toString()) && c.nextAttemptAt <= now)
      // Both sides would dial at once; the lower id dials, the higher waits DIAL_GRACE_MS first.
      .filter(c => self < c.id.toString() || now - c.firstSeenAt >= DIAL_GRACE_MS)
    // Fewest failures first; ties in the budget's order (peers we work with, then longest seen).
    const due = this.budget.dialOrder(ready.map(c => ({ id: c.id.toString(), upSince: c.firstSeenAt, c })))
      .sort((a, b) => a.c.failures - b.c.failures)
    for (const { id, c } of due) {
      if (missing-- <= 0 || !this.budget.canOpen(this.budget.isWorking(id) ? 'work' : 'top-up')) break
      void this.dialDirect(c)
    }
  }

  /**
   * Closes the direct links the budget names: idle ones nobody works with, and any beyond its
   * maxOpen. A link carrying a stream other than the ever-open background ones (gossip, identify,
   * ping, DHT) is active now.
   */
  private closeIdle (): void {
    for (const conn of directConnections(this.node)) {
      if (conn.streams.some(st => st.protocol !== undefined && !BACKGROUND_PROTOCOL.test(st.protocol))) this.budget.touch(conn.remotePeer.toString())
    }
    for (const peer of this.budget.toClose(this.budget.maxOpen)) {
      for (const conn of this.node.getConnections(peerIdFromString(peer))) {
        if (connectionKind(conn) !== 'webrtc') continue
        // A close that fails leaves the link to its transport's own teardown.
        conn.close().catch(() => {})
      }
    }
  }

  /** Candidate WebRTC addresses: advertised ones, else through each connected relay. */
  private webrtcAddrsFor (c: Candidate): Multiaddr[] {
    if (c.addrs.length > 0) return c.addrs
    return this.relays.filter(r => r.connected).map(r => r.addrs[0].encapsulate(`/p2p-circuit/webrtc/p2p/${c.id.toString()}`))
  }

  private async dialDirect (c: Candidate): Promise<void> {
    const key = c.id.toString()
    const addrs = this.webrtcAddrsFor(c)
    if (addrs.length === 0) return
    this.dialing.add(key)
    try {
      let lastError: Error | undefined
      for (const addr of addrs) {
        try {
          await this.node.dial(addr, { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
          lastError = undefined
          break
        } catch (e) {
          lastError = e as Error
        }
      }
      if (lastError !== undefined) throw lastError
      c.failures = 0
      c.noReservation = 0
    } catch (e) {
      if (!this.running) return
      if (isNoReservation(e)) {
        if (++c.noReservation >= GONE_AFTER_NO_RESERVATION) {
          this.candidates.delete(key)
          this.gone.set(key, Date.now() + GONE_FOR_MS)
          this.log(`peer ${key}: not on the relay (NO_RESERVATION ${c.noReservation}×): treated as gone for ${GONE_FOR_MS / 1000} s`)
          return
        }
      } else {
        c.noReservation = 0
      }
      c.failures++
      const delay = backoffDelay(c.failures)
      c.nextAttemptAt = Date.now() + delay
      this.log(`peer ${key}: WebRTC dial failed (${(e as Error).message}); retry ${c.failures} in ${Math.round(delay)} ms`)
      const viaRelay = this.node.getConnections(c.id).find(x => connectionKind(x) === 'relayed' && x.limits === undefined)
      if (viaRelay !== undefined) this.log(`peer ${key}: no direct path; falling back to the relay's data-relaying connection`)
    } finally {
      this.dialing.delete(key)
      this.dispatchEvent(new CustomEvent('change'))
    }
  }

  /** The next paced DHT round, after dhtDelayMs; a round that found no one new doubles the wait. */
  private scheduleDhtRound (): void {
    clearTimeout(this.dhtTimer)
    if (!this.running) return
    this.dhtTimer = setTimeout(() => {
      void this.dhtDiscover().then(found => {
        this.dhtDelayMs = found > 0 ? this.dhtIntervalMs : Math.min(Math.max(DHT_DISCOVERY_MAX_INTERVAL_MS, this.dhtIntervalMs), this.dhtDelayMs * 2)
        this.scheduleDhtRound()
      })
    }, this.dhtDelayMs)
  }

  /** Provides the swarm rendezvous key and collects the other providers as candidates; resolves to how many were new. */
  private async dhtDiscover (): Promise<number> {
    let found = 0
    if (!this.running || !this.relayConnected) return found
    const dht = this.node.services.dht
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(DHT_QUERY_TIMEOUT_MS)])
    try {
      const cid = await swarmRendezvousCid(this.init.swarm)
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      for await (const _ of dht.provide(cid, { signal })) { /* drain */ }
      for await (const ev of dht.findProviders(cid, { signal })) {
        if (ev.name !== 'PROVIDER') continue
        for (const p of ev.providers) if (this.addCandidate(p.id, p.multiaddrs)) found++
      }
    } catch (e) {
      if (this.running) this.log(`dht discovery: ${(e as Error).message}`)
    }
    return found
  }
}
