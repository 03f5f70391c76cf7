/**
 * Closes direct links that only one side holds. A WebRTC dial that fails late (its set-up timed
 * out on the dialler after the answerer had already connected) leaves the answerer holding a
 * connection the dialler has closed (js-libp2p issue #2646, open upstream): libp2p closes it only
 * when the RTCPeerConnection reaches 'failed', which Chrome may never report, and meanwhile the
 * answerer counts the dialler as linked and never dials it back. In the e2e net spec under load
 * one tab's three dials to another each failed that way, and the other tab held two such links
 * for the whole 45 s (session 13).
 *
 * Two rules, both for links that carry no stream the peer opened (a peer that holds a link opens
 * identify and gossip streams on it; a half-open link has none, so a busy but healthy link is
 * never cut):
 * - a peer that dials us again over WebRTC while we hold an inbound WebRTC link from it does not
 *   hold the older one (PeerManager and libp2p's dialer reuse an open direct link): it is closed;
 * - a direct link that libp2p's identify (run on every new connection) has not answered within
 *   `probeAfterMs` + `probeTimeoutMs`, and that the peer opened no stream on, is closed.
 */
import type { Connection, IdentifyResult } from '@libp2p/interface'
import type { WebSwarmNode } from './node.ts'
import { realClock, type Clock, type TimerHandle } from '../util/clock.ts'

/** Whether the peer has a stream open on `conn` that it opened: then it holds the link. */
function peerUses (conn: Connection): boolean {
  return conn.streams.some(st => st.direction === 'inbound')
}

/** A new direct link that identify has not answered this long, in ms, is looked at again later. */
export const HALF_OPEN_PROBE_AFTER_MS = 15_000
/** How much later, in ms: still neither identified nor used by the peer, and it is closed. */
export const HALF_OPEN_PROBE_TIMEOUT_MS = 10_000

/** The part of a libp2p node the guard uses (tests pass a stand-in). */
export type HalfOpenNode = Pick<WebSwarmNode, 'addEventListener' | 'removeEventListener' | 'getConnections'>

export interface HalfOpenGuardInit {
  /** Which connections are direct links to guard (PeerManager: open WebRTC ones). */
  isDirect: (conn: Connection) => boolean
  log: (line: string) => void
  /** @default HALF_OPEN_PROBE_AFTER_MS */
  probeAfterMs?: number
  /** @default HALF_OPEN_PROBE_TIMEOUT_MS */
  probeTimeoutMs?: number
  /** @default realClock */
  clock?: Clock
}

export class HalfOpenGuard {
  /** Links identify has answered on (libp2p's `peer:identify` names the connection). */
  private readonly identified = new WeakSet<Connection>()
  private readonly timers = new Map<Connection, TimerHandle>()
  private readonly clock: Clock
  private running = false
  /** Links closed by either rule (for logs and tests). */
  closed = 0

  constructor (private readonly node: HalfOpenNode, private readonly init: HalfOpenGuardInit) {
    this.clock = init.clock ?? realClock
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.node.addEventListener('connection:open', this.onOpen)
    this.node.addEventListener('connection:close', this.onClose)
    this.node.addEventListener('peer:identify', this.onIdentify)
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.node.removeEventListener('connection:open', this.onOpen)
    this.node.removeEventListener('connection:close', this.onClose)
    this.node.removeEventListener('peer:identify', this.onIdentify)
    for (const t of this.timers.values()) this.clock.clearTimeout(t)
    this.timers.clear()
  }

  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    this.identified.add(evt.detail.connection)
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    this.clock.clearTimeout(this.timers.get(evt.detail))
    this.timers.delete(evt.detail)
  }

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    if (!this.init.isDirect(conn)) return
    if (conn.direction === 'inbound') {
      const peer = conn.remotePeer.toString()
      const older = this.node.getConnections().filter(c => c !== conn && c.direction === 'inbound' && c.remotePeer.toString() === peer && this.init.isDirect(c) && !peerUses(c))
      for (const c of older) this.close(c, 'it dialled us again, so it no longer holds this one')
    }
    this.timers.set(conn, this.clock.setTimeout(() => { this.probe(conn) }, this.init.probeAfterMs ?? HALF_OPEN_PROBE_AFTER_MS))
  }

  /**
   * A link neither identified nor used by the peer after probeAfterMs gets probeTimeoutMs more
   * (a loaded tab answers late), then is closed. The guard opens no stream of its own: an identify
   * it asked itself ran beside the e2e echo's 2 MiB stream and its runs failed mid-transfer.
   */
  private probe (conn: Connection, second = false): void {
    this.timers.delete(conn)
    if (!this.running || conn.status !== 'open' || this.identified.has(conn) || peerUses(conn)) return
    if (!second) {
      this.timers.set(conn, this.clock.setTimeout(() => { this.probe(conn, true) }, this.init.probeTimeoutMs ?? HALF_OPEN_PROBE_TIMEOUT_MS))
      return
    }
    this.close(conn, `neither identified nor used by the peer ${Math.round(((this.init.probeAfterMs ?? HALF_OPEN_PROBE_AFTER_MS) + (this.init.probeTimeoutMs ?? HALF_OPEN_PROBE_TIMEOUT_MS)) / 1000)} s after it opened`)
  }

  private close (conn: Connection, why: string): void {
    this.closed++
    this.init.log(`peer ${conn.remotePeer.toString()}: closing a half-open ${conn.direction} direct link: ${why}`)
    // A close that fails is the transport's to finish; abort so no stream waits on a dead peer.
    try { conn.abort(new Error(`half-open link: ${why}`)) } catch { /* already closed */ }
  }
}
