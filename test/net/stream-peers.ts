/**
 * Real libp2p peers for stream/shard tests and the net benchmark: a relay on 127.0.0.1 and Node
 * peers (NET-A's createRelay/createPeer) that hold a reservation and connect to each other over
 * direct WebRTC signalled through the relay.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createPeer, createRelay, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'

/** ICE on loopback, reservation and identify together take ~1–2 s here; 20 s is a hang. */
const READY_TIMEOUT_MS = 20_000

export async function startRelay (): Promise<{ relay: RelayNode, addr: Multiaddr }> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const addr = relay.getMultiaddrs().find(a => a.toString().includes('/ws'))
  if (addr === undefined) throw new Error('relay has no /ws address')
  return { relay, addr }
}

async function until (what: string, ok: () => boolean, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const t0 = Date.now()
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** A peer dialled to the relay, holding a reservation (it advertises a `/p2p-circuit/webrtc` address). */
export async function startPeer (relayAddr: Multiaddr): Promise<WebSwarmNode> {
  // Long discovery interval: these tests connect peers explicitly.
  const node = await createPeer({ discoveryIntervalMs: 600_000 })
  await node.dial(relayAddr)
  await until('a relay reservation', () => node.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit/webrtc')))
  return node
}

/** The address that makes `from` open a WebRTC connection to `to` signalled through the relay. */
export function webrtcAddr (relayAddr: Multiaddr, to: PeerId): Multiaddr {
  return multiaddr(`${relayAddr.toString()}/p2p-circuit/webrtc/p2p/${to.toString()}`)
}

/**
 * A direct WebRTC connection: not limited (relayed connections carry limits) and its transport is
 * WebRTC (the remote address ends in `/webrtc/p2p/<peer>`; the `/p2p-circuit` before it names the
 * signalling path, not the data path).
 */
export function isDirectWebRTC (conn: Connection): boolean {
  const addr = conn.remoteAddr.toString()
  return conn.limits === undefined && /\/webrtc\/p2p\/[^/]+$/.test(addr) && !addr.includes('/webrtc-direct')
}

/**
 * WebRTC dial attempts: libp2p-webrtc gives up on one after ~6 s, which a loaded 2-core machine
 * sometimes needs; a few attempts make set-up reliable without hiding a real failure.
 */
const DIAL_ATTEMPTS = 3

/** Dials `to` (a node or a peer id) over WebRTC through the relay; returns the direct connection. */
export async function connectDirect (from: WebSwarmNode, to: WebSwarmNode | PeerId, relayAddr: Multiaddr): Promise<Connection> {
  const id = 'peerId' in to ? to.peerId : to
  let last: unknown
  for (let i = 0; i < DIAL_ATTEMPTS; i++) {
    try {
      const conn = await from.dial(webrtcAddr(relayAddr, id), { signal: AbortSignal.timeout(READY_TIMEOUT_MS) })
      if (!isDirectWebRTC(conn)) throw new Error(`connection to ${id.toString()} is not direct WebRTC: ${conn.remoteAddr.toString()}`)
      return conn
    } catch (err) {
      last = err
    }
  }
  throw last
}

/** Connections of `node` to `peer` that carried a stream of `protocol` (open or recently closed ones still listed). */
export function connectionsWithProtocol (node: WebSwarmNode, peer: PeerId, protocol: string): Connection[] {
  return node.getConnections(peer).filter(c => c.streams.some(s => s.protocol === protocol))
}

export async function sha256Hex (data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>))
  return Array.from(d, b => b.toString(16).padStart(2, '0')).join('')
}
