/**
 * The relay's flood limits (PROTOCOL.md § Identity stamps and flood limits), beside libp2p's own
 * (new connections per second per host, pending connections, total connections; per-protocol
 * stream caps):
 *  - at most `maxConnsPerIp` open connections from one IP address (a flooder's many identities
 *    from one machine share it; browsers behind one NAT do too, so the default is generous);
 *  - with `reservationPowBits` > 0 (the default, DEFAULT_RESERVATION_POW_BITS), a circuit-relay
 *    reservation only for a peer that presented a valid identity stamp for this relay today
 *    (`/webswarm/pow/1.0.0`, web/src/net/pow-protocol.ts); a request that comes before the stamp
 *    waits up to STAMP_WAIT_MS for it (a peer sends both at once on connecting);
 *  - capacity: at most `maxConnections` open connections in all (a newcomer past it is refused at
 *    the handshake instead of making libp2p prune someone else's), and no new reservation once
 *    `maxReservations` are held (a held one may still be refreshed). libp2p's reservation store
 *    refuses past its cap too, but silently: refusing here first makes it counted.
 * Every refusal is counted by reason (`/metrics`: webswarm_relay_refused_total{reason}).
 */
import type { ConnectionGater, Libp2p, MultiaddrConnection, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { NetConfigError } from '../web/src/net/errors.ts'
import { MAX_POW_BITS, powEpoch, stampProblem } from '../web/src/net/pow.ts'
import { POW_STAMP, relayStampScope } from '../web/src/net/pow-protocol.ts'

/**
 * How long a connection the gater let in counts as pending (handshake under way) before it opens:
 * libp2p's inbound upgrade timeout, after which a connection that never opened has failed.
 */
const PENDING_UPGRADE_MS = 10_000

/**
 * How long a reservation request from a peer without a stamp waits for one before it is refused:
 * a peer presents its stamp on the connection it reserves over (PeerManager), and the two race.
 * 8 s, within the client's 10 s reservation timeout (node.ts): at 3 s, 30 peers joining 3 relays
 * on the loaded 2-core machine (load 20+) had all 30 of their first asks refused, the stamp
 * arriving later (relay-failover bench, BENCHMARKS.md § Scale).
 */
const STAMP_WAIT_MS = 8_000
/** Reservation requests waiting for a stamp at once, at most; more are refused at once. */
const MAX_STAMP_WAITERS = 256

/** Default cap on open connections from one IP address. */
export const DEFAULT_MAX_CONNS_PER_IP = 128

/** Default cap on open connections in all (BENCHMARKS.md § Scale: relay_peers_max on the 2-core machine). */
export const DEFAULT_MAX_CONNECTIONS = 1000

type RefusalReason = 'ip-connections' | 'connections-full' | 'reservations-full' | 'reservation-without-stamp' | 'bad-stamp'

/** What the gater reads of the relay's reservation table (circuit-relay-v2's `reservations`). */
interface ReservationTable { readonly size: number, has: (peer: PeerId) => boolean }

export interface RelayAdmissionOptions {
  /** Open connections allowed from one IP (0: no cap). */
  maxConnsPerIp: number
  /** Open connections allowed in all (0: no cap). @default 0 */
  maxConnections?: number
  /** Reservations held at once past which new ones are refused (0: no cap). @default 0 */
  maxReservations?: number
  /** Difficulty of the stamp a reservation needs (0: reservations need none). */
  reservationPowBits: number
  /** Stamped peers remembered at most (the oldest is forgotten; it presents its stamp again). */
  maxStamped: number
  /** Called for every refusal (the metrics counter). */
  onRefused: (reason: RefusalReason) => void
  /** Wall clock of stamps' days and of pending handshakes. @default Date.now */
  now?: () => number
  log?: (line: string) => void
}

/** The IP address of a multiaddr (ip4 / ip6 component), or undefined (e.g. a memory transport). */
function ipOf (ma: Multiaddr): string | undefined {
  for (const c of ma.getComponents()) if (c.name === 'ip4' || c.name === 'ip6') return c.value
  return undefined
}

export class RelayAdmission {
  /** Open connections per IP. */
  private readonly perIp = new Map<string, number>()
  /** Open connections in all. */
  private open = 0
  /**
   * Connections let in by the gater whose handshake has not finished, per IP: the times they
   * were let in. The caps count them with the open ones: 'connection:open' fires only after the
   * handshake, so counting open ones alone let a burst of concurrent dials all pass the gate.
   */
  private readonly pending = new Map<string, number[]>()
  private pendingTotal = 0
  /** The relay's reservation table, once attached. */
  private reservations?: ReservationTable
  /** Peers that presented a valid stamp → the UTC day of the stamp. */
  private readonly stamped = new Map<string, number>()
  /** Reservation requests waiting for their peer's stamp: peer id → wake-ups. */
  private readonly waiting = new Map<string, Array<() => void>>()
  private waiters = 0
  private readonly now: () => number
  private readonly log: (line: string) => void

  constructor (readonly opts: RelayAdmissionOptions) {
    if (!(Number.isInteger(opts.maxConnsPerIp) && opts.maxConnsPerIp >= 0)) throw new NetConfigError(`maxConnsPerIp must be an integer ≥ 0, got ${opts.maxConnsPerIp}`)
    if (!(Number.isInteger(opts.reservationPowBits) && opts.reservationPowBits >= 0 && opts.reservationPowBits <= MAX_POW_BITS)) throw new NetConfigError(`reservationPowBits must be an integer in [0, ${MAX_POW_BITS}], got ${opts.reservationPowBits}`)
    for (const k of ['maxConnections', 'maxReservations'] as const) {
      const v = opts[k] ?? 0
      if (!(Number.isInteger(v) && v >= 0)) throw new NetConfigError(`${k} must be an integer ≥ 0, got ${v}`)
    }
    if (!(Number.isInteger(opts.maxStamped) && opts.maxStamped >= 1)) throw new NetConfigError(`maxStamped must be a positive integer, got ${opts.maxStamped}`)
    this.now = opts.now ?? Date.now
    this.log = opts.log ?? (() => {})
  }

  /** Gater hooks merged into the relay node's connection gater (web/src/net/node.ts RelayInit.gater). */
  readonly gater: Pick<ConnectionGater, 'denyInboundConnection' | 'denyInboundRelayReservation'> = {
    denyInboundConnection: (maConn: MultiaddrConnection): boolean => {
      const t = this.now()
      this.expirePending(t)
      const max = this.opts.maxConnections ?? 0
      if (max > 0 && this.open + this.pendingTotal >= max) {
        this.opts.onRefused('connections-full')
        return true
      }
      const ip = ipOf(maConn.remoteAddr)
      if (this.opts.maxConnsPerIp > 0 && ip !== undefined && (this.perIp.get(ip) ?? 0) + (this.pending.get(ip)?.length ?? 0) >= this.opts.maxConnsPerIp) {
        this.opts.onRefused('ip-connections')
        return true
      }
      if (ip !== undefined) {
        const list = this.pending.get(ip)
        if (list === undefined) this.pending.set(ip, [t])
        else list.push(t)
        this.pendingTotal++
      }
      return false
    },
    denyInboundRelayReservation: (source: PeerId): boolean | Promise<boolean> => {
      const max = this.opts.maxReservations ?? 0
      if (max > 0 && this.reservations !== undefined && this.reservations.size >= max && !this.reservations.has(source)) {
        this.opts.onRefused('reservations-full')
        return true
      }
      if (this.opts.reservationPowBits === 0 || this.isStamped(source.toString())) return false
      return this.awaitStamp(source.toString()).then(ok => {
        if (!ok) this.opts.onRefused('reservation-without-stamp')
        return !ok
      })
    }
  }

  /** Whether a stamp from `peer` arrives within STAMP_WAIT_MS (false at once past MAX_STAMP_WAITERS). */
  private async awaitStamp (peer: string): Promise<boolean> {
    if (this.waiters >= MAX_STAMP_WAITERS) return false
    this.waiters++
    await new Promise<void>(resolve => {
      const list = this.waiting.get(peer) ?? []
      this.waiting.set(peer, list)
      const wake = (): void => {
        clearTimeout(timer)
        const i = list.indexOf(wake)
        if (i >= 0) list.splice(i, 1)
        if (list.length === 0 && this.waiting.get(peer) === list) this.waiting.delete(peer)
        this.waiters--
        resolve()
      }
      const timer = setTimeout(wake, STAMP_WAIT_MS)
      list.push(wake)
    })
    return this.isStamped(peer)
  }

  /** Tracks open connections (per IP and in all) and `reservations`, and serves the stamp protocol on `node`. */
  async attach (node: Libp2p, reservations?: ReservationTable): Promise<void> {
    this.reservations = reservations
    node.addEventListener('connection:open', (evt) => {
      this.open++
      const ip = ipOf(evt.detail.remoteAddr)
      if (ip === undefined) return
      this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1)
      // Its handshake is over: it counts as open now, no longer as pending (outbound ones never were).
      const list = this.pending.get(ip)
      if (evt.detail.direction === 'inbound' && list !== undefined) {
        list.shift()
        this.pendingTotal--
        if (list.length === 0) this.pending.delete(ip)
      }
    })
    node.addEventListener('connection:close', (evt) => {
      this.open = Math.max(0, this.open - 1)
      const ip = ipOf(evt.detail.remoteAddr)
      if (ip === undefined) return
      const n = (this.perIp.get(ip) ?? 1) - 1
      if (n <= 0) this.perIp.delete(ip)
      else this.perIp.set(ip, n)
    })
    const scope = relayStampScope(node.peerId)
    await node.handle(POW_STAMP.id, (stream, conn) => { void this.onStamp(stream, conn.remotePeer, scope) }, {
      maxInboundStreams: POW_STAMP.maxInboundStreams,
      maxOutboundStreams: POW_STAMP.maxOutboundStreams,
      runOnLimitedConnection: POW_STAMP.runOnLimitedConnection
    })
  }

  /** Forgets pending connections older than PENDING_UPGRADE_MS: their handshakes failed or timed out. */
  private expirePending (now: number): void {
    if (this.pendingTotal === 0) return
    for (const [ip, list] of this.pending) {
      while (list.length > 0 && list[0] <= now - PENDING_UPGRADE_MS) {
        list.shift()
        this.pendingTotal--
      }
      if (list.length === 0) this.pending.delete(ip)
    }
  }

  /** Open connections in all as tracked. */
  get openConnections (): number {
    return this.open
  }

  /** Open connections from `ip` as tracked (tests, /metrics). */
  connectionsFrom (ip: string): number {
    return this.perIp.get(ip) ?? 0
  }

  /** Whether `peer` holds a stamp accepted today or yesterday. */
  isStamped (peer: string): boolean {
    const day = this.stamped.get(peer)
    return day !== undefined && day >= powEpoch(this.now()) - 1
  }

  private async onStamp (stream: Stream, peer: PeerId, scope: string): Promise<void> {
    const signal = AbortSignal.timeout(POW_STAMP.timeoutMs)
    const lp = lpStream(stream, { maxDataLength: POW_STAMP.maxMessageBytes })
    try {
      const stamp = new TextDecoder('utf-8', { fatal: true }).decode((await lp.read({ signal })).subarray())
      const why = stampProblem(stamp, scope, peer.toString(), this.opts.reservationPowBits, this.now())
      if (why === undefined) {
        const id = peer.toString()
        this.stamped.delete(id)
        if (this.stamped.size >= this.opts.maxStamped) this.stamped.delete(this.stamped.keys().next().value!)
        this.stamped.set(id, Number(stamp.split(':')[0]))
        for (const wake of [...this.waiting.get(id) ?? []]) wake()
      } else {
        this.opts.onRefused('bad-stamp')
        this.log(`relay: refused the identity stamp of ${peer.toString()}: ${why}`)
      }
      await lp.write(Uint8Array.of(why === undefined ? 1 : 0), { signal })
      await stream.close({ signal })
    } catch (e) {
      // oversized, not UTF-8, or too slow: a malformed request, counted like a bad stamp
      this.opts.onRefused('bad-stamp')
      this.log(`relay: reset the stamp stream of ${peer.toString()}: ${(e as Error).message}`)
      stream.abort(e as Error)
    }
  }
}
