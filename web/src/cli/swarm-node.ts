/**
 * What `serve` and `generate --bootstrap` share: a libp2p peer dialled to the bootstrap relay,
 * holding a reservation, with the swarm's transport and DHT directory on it (and, for `serve`,
 * the swarm CRDT).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { SwarmDht } from '../net/dht/index.ts'
import { joinSwarm as joinNetSwarm, type Swarm } from '../net/swarm.ts'
import { createPeer, type WebSwarmNode } from '../net/node.ts'
import { BootstrapUnreachableError, NetConfigError } from '../net/errors.ts'
import { parseIceServerList } from '../net/ice.ts'
import { dialAnyRelay, relayCount, waitForReservation } from '../net/peers.ts'
import { DEFAULT_RESERVATION_POW_BITS } from '../net/pow.ts'
import { presentStamp } from '../net/pow-protocol.ts'
import { RelayStamps } from '../net/stamp-renewal.ts'
import { fetchBootstrap, type BootstrapInfo } from '../net/swarm.ts'
import { DhtDirectory } from '../swarm/dht-directory.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import type { Clock } from '../util/clock.ts'
import { strings, UsageError, type Flags } from './args.ts'

/**
 * Where a CLI peer joins: the relays' multiaddrs (any of them signals its WebRTC dials), and the
 * STUN/TURN servers to use (undefined: node.ts defaults).
 */
export interface Bootstrap {
  addrs: string[]
  iceServers?: RTCIceServer[]
  /** Stamp difficulty the relay asks before a reservation (its /bootstrap says; undefined: DEFAULT_RESERVATION_POW_BITS). */
  reservationPowBits?: number
}

/**
 * `--bootstrap MULTIADDR | URL` (repeatable) and `--ice-servers LIST|none` (repeatable; `--ice-server` too). A URL (a relay's page,
 * e.g. `http://relay:8080`) is asked for `/bootstrap`: its multiaddrs and its peer relays' (each
 * relay's websocket ones first), and the STUN/TURN servers the relay's operator chose (the first
 * URL's). Every relay named by any --bootstrap is merged into one list; the peer reserves on up to
 * two of them (net/node.ts). With multiaddrs only the ICE defaults apply (a public STUN server,
 * for NAT traversal). `--ice-servers` wins over both; `none` suits loopback and LANs, where host
 * candidates are enough and an unreachable STUN server only slows ICE.
 */
export async function resolveBootstrap (f: Flags): Promise<Bootstrap> {
  const given = strings(f, 'bootstrap').filter(b => b !== '')
  if (given.length === 0) throw new UsageError('--bootstrap is required')
  // Repeated (the relay's way) or comma-separated: one list either way.
  const iceGiven = strings(f, 'ice-servers')
  const list = iceGiven.length === 0 ? undefined : iceGiven.join(',')
  let iceServers: RTCIceServer[] | undefined
  try {
    iceServers = list === undefined ? undefined : parseIceServerList(list)
  } catch (e) {
    if (e instanceof NetConfigError) throw new UsageError(e.message)
    throw e
  }
  const addrs: string[] = []
  let relayIce: RTCIceServer[] | undefined
  let powBits: number | undefined
  const unreachable: Error[] = []
  for (const b of given) {
    if (/^https?:\/\//i.test(b)) {
      let url: URL
      try { url = new URL(b) } catch { throw new UsageError(`--bootstrap: '${b}' is not a URL`) }
      if (!url.pathname.endsWith('/bootstrap')) url.pathname = url.pathname.replace(/\/?$/, '/bootstrap')
      let info: BootstrapInfo
      try {
        info = await fetchBootstrap(url.toString())
      } catch (e) {
        // A relay that is down is one of several: the others' lists name the rest.
        if (!(e instanceof BootstrapUnreachableError)) throw e
        unreachable.push(e)
        continue
      }
      const withId = info.multiaddrs.filter(a => a.includes('/p2p/'))
      if (withId.length === 0) throw new UsageError(`--bootstrap: ${url.toString()} lists no multiaddr with /p2p/<relay id>: ${info.multiaddrs.join(', ')}`)
      // Websocket addresses first: the ones a Node peer can dial.
      addrs.push(...withId.filter(a => /\/wss?\//.test(a)), ...withId.filter(a => !/\/wss?\//.test(a)))
      relayIce ??= info.iceServers
      // Relays may ask different difficulties: one stamp strength that every one of them takes.
      if (info.reservationPowBits !== undefined) powBits = Math.max(powBits ?? 0, info.reservationPowBits)
    } else {
      checkBootstrap(b)
      addrs.push(b)
    }
  }
  if (addrs.length === 0) throw new BootstrapUnreachableError(`no --bootstrap relay answered: ${unreachable.map(e => e.message).join('; ')}`)
  return { addrs: [...new Set(addrs)], iceServers: iceServers ?? relayIce, reservationPowBits: powBits }
}

export interface SwarmPeer {
  node: WebSwarmNode
  transport: Libp2pTransport
  directory: DhtDirectory
  /** The whole swarm membership (CRDT doc, peer manager) when joined with joinSwarmWithDoc. */
  swarm?: Swarm
}

/**
 * Joins like the page does (net/swarm.ts: peer manager, DHT and the swarm CRDT), so this peer's
 * entry in the peers map — what the page's Network and Chat panels read — can carry a summary of
 * what it serves. `serve` uses this; `generate` needs no CRDT and uses joinSwarm.
 */
export async function joinSwarmWithDoc (boot: Bootstrap, shape: { numBlocks: number, numExperts: number }, log: (line: string) => void): Promise<SwarmPeer & { swarm: Swarm }> {
  const swarm = await joinNetSwarm({ bootstrap: boot.addrs, persist: false, iceServers: boot.iceServers, reservationPowBits: boot.reservationPowBits, log })
  await swarm.peers.ready()
  return {
    swarm,
    node: swarm.node,
    transport: new Libp2pTransport(swarm.node, { relayAddr: boot.addrs }),
    directory: new DhtDirectory(swarm.dht, swarm.peerId, shape)
  }
}

function checkBootstrap (bootstrap: string): void {
  try {
    multiaddr(bootstrap)
  } catch (e) {
    throw new UsageError(`--bootstrap: '${bootstrap}' is not a multiaddr (${(e as Error).message})`)
  }
  if (!bootstrap.includes('/p2p/')) throw new UsageError(`--bootstrap must end in /p2p/<relay peer id>, got ${bootstrap}`)
}

/**
 * A peer that dials others and is dialled by none (`generate`, the API): connected to every
 * relay of `boot` that answers (at least one must; a dead one is skipped), so its DHT lookups and
 * WebRTC signalling go on through another when one dies (net's dialThroughRelay, which also
 * redials a listed relay it lost).
 */
export async function joinSwarm (boot: Bootstrap, shape: { numBlocks: number, numExperts: number }, o: { clock?: Clock, log?: (line: string) => void } = {}): Promise<SwarmPeer> {
  const log = o.log ?? (() => {})
  const key = await generateKeyPair('Ed25519')
  const node = await createPeer({ privateKey: key, iceServers: boot.iceServers, relayReservations: relayCount(boot.addrs) })
  const bits = boot.reservationPowBits ?? DEFAULT_RESERVATION_POW_BITS
  const relayIds = [...new Set(boot.addrs.map(a => a.slice(a.lastIndexOf('/p2p/') + 5).split('/')[0]))] // checked by resolveBootstrap
  const refused: Error[] = []
  // Relays shown our stamp on their current connection: a relay we reconnect to (the API runs for
  // days) asks again before it grants the new reservation.
  const shown = new Set<string>()
  // Each relay's identity stamp, minted while dialling (a relay holds our reservation request
  // until it comes) and renewed every UTC day on the relays still connected (stamp-renewal.ts).
  const stamps = bits > 0
    ? new RelayStamps({
      peer: node.peerId.toString(),
      bits,
      clock: o.clock,
      onRenew: (id, st) => {
        if (!shown.has(id)) return // not connected: presented on the next connect
        presentStamp(node, peerIdFromString(id), st).then(
          () => { log(`relay ${id}: presented the identity stamp of UTC day ${st.split(':')[0]}`) },
          (e: Error) => { log(`relay ${id}: the new day's identity stamp was not taken (${e.message}); presented again on the next connect`) })
      }
    })
    : undefined
  for (const id of relayIds) stamps?.stampFor(id).catch(() => {}) // a failed mint is reported when presenting
  const present = (id: string): void => {
    if (stamps === undefined || shown.has(id)) return
    shown.add(id)
    // A refusal is reported if no relay grants a reservation (below).
    stamps.stampFor(id).then(async st => { await presentStamp(node, peerIdFromString(id), st) }).catch((e: Error) => { refused.push(new Error(`relay ${id}: ${e.message}`)) })
  }
  // Every relay connection, the first dial's and later ones, gets the stamp as it opens.
  const onConnect = (evt: CustomEvent<{ toString: () => string }>): void => { present(evt.detail.toString()) }
  const onDisconnect = (evt: CustomEvent<{ toString: () => string }>): void => { shown.delete(evt.detail.toString()) }
  node.addEventListener('peer:connect', onConnect)
  node.addEventListener('peer:disconnect', onDisconnect)
  try {
    await dialAnyRelay(node, boot.addrs)
    // In case the connection opened before our listener saw it (shown makes this a no-op otherwise).
    for (const id of relayIds) if (node.getConnections(peerIdFromString(id)).length > 0) present(id)
    try {
      await waitForReservation(node)
    } catch (e) {
      throw refused.length === 0 ? e : new BootstrapUnreachableError(`${(e as Error).message} (identity stamp not taken: ${refused.map(r => r.message).join('; ')})`)
    }
  } catch (e) {
    stamps?.stop()
    node.removeEventListener('peer:connect', onConnect)
    node.removeEventListener('peer:disconnect', onDisconnect)
    await node.stop()
    throw e
  }
  if (stamps !== undefined) node.addEventListener('stop', () => { stamps.stop() }, { once: true })
  return {
    node,
    transport: new Libp2pTransport(node, { relayAddr: boot.addrs }),
    directory: new DhtDirectory(new SwarmDht(node, key), node.peerId.toString(), shape)
  }
}

/** Model id as announced in the DHT: `--model-id`, else the last path segment of `--model`. */
export function modelId (model: string, explicit?: string): string {
  if (explicit !== undefined && explicit !== '') return explicit
  const id = model.replace(/[/\\]+$/, '').split(/[/\\]/).at(-1) ?? ''
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new UsageError(`cannot derive a model id from '${model}'; pass --model-id`)
  return id
}

/** How long a leaving peer waits for libp2p to stop gracefully, ms, before the process moves on. */
const STOP_TIMEOUT_MS = 5_000

/**
 * Leaves the swarm: resets pooled channels, stops the node (bounded), and makes sure lingering
 * libp2p timers cannot keep a finished command alive (an unref'd timer exits if they would).
 */
export async function leaveSwarm (peer: SwarmPeer): Promise<void> {
  peer.transport.close()
  await Promise.race([peer.swarm !== undefined ? peer.swarm.stop() : peer.node.stop(), new Promise(resolve => setTimeout(resolve, STOP_TIMEOUT_MS).unref())])
  exitIfLingering()
}

/**
 * After a command has stopped its node: exits in STOP_TIMEOUT_MS if libp2p timers left running
 * (a WebRTC dial's retries, a stop that timed out) would keep the process alive. Unref'd, so it
 * fires only when something else still holds the process.
 */
export function exitIfLingering (): void {
  setTimeout(() => process.exit(process.exitCode ?? 0), STOP_TIMEOUT_MS).unref()
}
