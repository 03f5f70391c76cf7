/**
 * The libp2p node factory: one configuration for browser peers, Node peers and the relay.
 *
 * Peers: websockets (to reach the relay) + circuit relay v2 transport (reservation) + WebRTC
 * (direct peer links), noise, yamux, identify, ping, private kad-dht (client mode), gossipsub and
 * pubsub peer discovery. The relay adds a websocket listener, the circuit relay v2 server,
 * kad-dht in server mode and autonat.
 *
 * @example
 * ```ts
 * const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'] })
 * const peer = await createPeer({ swarm: 'default' })
 * await peer.dial(relay.getMultiaddrs()[0])
 * ```
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import type { ConnectionGater, Libp2p, PeerDiscovery, PeerInfo, PrivateKey, Startable } from '@libp2p/interface'
import { kadDHT, passthroughMapper, type KadDHT, type KadDHTInit } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { pubsubPeerDiscovery } from '@libp2p/pubsub-peer-discovery'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { isPrivate } from '@libp2p/utils'
import { WebSockets } from '@multiformats/multiaddr-matcher'
import { createLibp2p } from 'libp2p'
import type * as http from 'node:http'
import type * as https from 'node:https'
import { dhtSelectors, dhtValidators } from './dht/records.ts'
import { NetConfigError } from './errors.ts'
import { KAD_PROTOCOL, SWARM_NAME_PATTERN, discoveryTopic } from './protocols.ts'

/** Services every WebSwarm node runs; `node.services.dht` etc. */
type PeerServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

/** Services of the relay: the peer set plus the circuit relay v2 server and autonat. */
type RelayServices = PeerServices & {
  relay: CircuitRelayService
  autonat: unknown
}

export type WebSwarmNode = Libp2p<PeerServices>
export type RelayNode = Libp2p<RelayServices>

/** Public STUN server used when none are configured; one is enough for server-reflexive candidates. */
const DEFAULT_ICE_SERVERS: RTCIceServer[] = [{ urls: ['stun:stun.l.google.com:19302'] }]

/**
 * How often each node re-announces itself on the discovery topic, in ms. The module's default is
 * 10 s; a newcomer's first broadcast goes out before it has any gossip peer, so the second one is
 * what others see: 5 s halves the wait for a few tiny messages per peer.
 */
const DISCOVERY_INTERVAL_MS = 5_000

/**
 * How often the connection monitor pings every connection (both ends do), in ms; libp2p's default
 * is 10 s. Each ping is a new stream — on a WebRTC link a new data channel, opened, negotiated
 * and closed — and was the largest share of an idle node's CPU (bench:net --idle). 30 s still
 * keeps a websocket through a proxy's idle timeout (nginx's 60 s, Cloudflare's 100 s); the ping's
 * timeout is unchanged.
 */
const PING_INTERVAL_MS = 30_000

/** Default swarm name; one Y.Doc and one discovery topic per swarm. */
export const DEFAULT_SWARM = 'default'

/**
 * libp2p's connection monitor pings each peer every 10 s and by default aborts a connection whose
 * ping misses its adaptive timeout. A busy main thread (a tab running kernels, a loaded machine)
 * misses pings on healthy links, and the abort cut streams mid-transfer. Dead links are caught by
 * the transports (WebRTC / websocket close) and by every request's own timeout, so here pings
 * only measure round trips (`conn.rtt`, which nothing of ours reads) and keep idle websockets
 * alive through proxies.
 */
const CONNECTION_MONITOR = { abortConnectionOnPingFailure: false, pingInterval: PING_INTERVAL_MS } as const

interface NodeInit {
  /** Identity key. @default a fresh Ed25519 key */
  privateKey?: PrivateKey
  /** Swarm name: scopes the discovery topic. @default 'default' */
  swarm?: string
  /**
   * STUN/TURN servers for WebRTC, e.g. `[{ urls: 'turn:turn.example:3478', username, credential }]`.
   * `[]` uses host candidates only (enough on one machine or LAN).
   * @default DEFAULT_ICE_SERVERS
   */
  iceServers?: RTCIceServer[]
  /**
   * Allow dialling private/loopback addresses and insecure `/ws`. Browsers refuse both by default;
   * a page served from 127.0.0.1 or a LAN relay needs this.
   * @default true
   */
  allowPrivateAddresses?: boolean
  /** How often to re-announce on the discovery topic, in ms. @default DISCOVERY_INTERVAL_MS */
  discoveryIntervalMs?: number
  /** Most open connections before libp2p prunes. @default 100 (peers), 1000 (relay) */
  maxConnections?: number
  /**
   * The time, ms since the epoch, against which this node's DHT checks a record's lifetime when
   * storing or selecting it (tests: a ManualClock's `now`, shared with SwarmDht's clock).
   * @default Date.now
   */
  now?: () => number
}

export interface PeerInit extends NodeInit {
  /**
   * Extra listen addresses. Peers always listen on `/p2p-circuit` (a relay reservation) and
   * `/webrtc` (direct links signalled through the relay).
   * @default []
   */
  listen?: string[]
  /** Run the DHT as a server (answer queries, store records). Browsers must stay clients. @default false */
  dhtServer?: boolean
  /**
   * Relays to hold a reservation on at once (capped at MAX_RELAY_RESERVATIONS): one
   * `/p2p-circuit` listener each; a listener whose relay dies re-reserves on another connected
   * relay. @default 1
   */
  relayReservations?: number
}

/**
 * Most relays a peer reserves on at once. Two: when one relay dies the peer is still reachable
 * (signalling for new WebRTC links goes through the other) while it re-reserves elsewhere; more
 * would cost every relay a reservation slot per peer for little more availability.
 */
export const MAX_RELAY_RESERVATIONS = 2

/** Limits the circuit relay v2 server applies to each reservation and relayed connection. */
export interface RelayLimits {
  /** Most simultaneous reservations. @default 128 */
  maxReservations: number
  /** How long a reservation lasts before the peer must refresh, in ms. @default 2 h (libp2p's) */
  reservationTtlMs: number
  /**
   * Most bytes per relayed connection (each direction). Sized for signalling (SDP + ICE ≈ 10 KiB);
   * ignored when `relayData` is on and `dataLimitBytes` is unset.
   * @default 128 KiB
   */
  dataLimitBytes: bigint
  /** Longest a relayed connection may stay open, in ms. @default 2 min */
  durationLimitMs: number
  /**
   * Explicit opt-in: relay application data for peers that cannot get a direct WebRTC path.
   * Off: relayed connections are limited (signalling only), libp2p refuses our protocols on them.
   * On: relayed connections are unlimited (or use `dataLimitBytes`/`durationLimitMs` if set).
   * @default false
   */
  relayData: boolean
}

/**
 * Shortest reservation TTL a relay may grant, in ms. libp2p's circuit-relay client refreshes a
 * reservation 5 min before it expires but never sooner than 30 s after making it: with a shorter
 * TTL every peer would sit unreserved (dialled → NO_RESERVATION) from expiry until its refresh.
 */
export const MIN_RESERVATION_TTL_MS = 60_000

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxReservations: 128,
  reservationTtlMs: 2 * 60 * 60_000,
  dataLimitBytes: 128n * 1024n,
  durationLimitMs: 2 * 60_000,
  relayData: false
}

export interface RelayInit extends NodeInit {
  /** Listen addresses, e.g. `/ip4/0.0.0.0/tcp/8080/ws` or `/ip4/0.0.0.0/tcp/443/tls/ws`. */
  listen: string[]
  /** Addresses to announce instead of the listen ones (behind a TLS proxy: `/dns4/host/tcp/443/tls/ws`). */
  announce?: string[]
  /** Relay limits; missing fields take DEFAULT_RELAY_LIMITS. */
  limits?: Partial<RelayLimits>
  /** TLS certificate and key (PEM) for a `/tls/ws` listener; handed to the https server. */
  tls?: { cert: string, key: string }
  /** Options for the plain http server of a `/ws` listener. */
  http?: http.ServerOptions
  /** Max new connections per second from one host before they are refused. @default 50 */
  inboundConnectionThreshold?: number
  /** Extra connection-gater hooks (relay/limits.ts: per-IP connections, stamped reservations), merged over the default gater. */
  gater?: Partial<ConnectionGater>
}

function checkSwarm (swarm: string): string {
  if (!SWARM_NAME_PATTERN.test(swarm)) throw new NetConfigError(`swarm name ${JSON.stringify(swarm)} must match ${SWARM_NAME_PATTERN}`)
  return swarm
}

/** Browser default gater refuses private addrs and /ws; ours lets tests and LAN relays through. */
function gater (allowPrivate: boolean): ConnectionGater {
  return {
    denyDialMultiaddr: (ma) => !allowPrivate && (WebSockets.matches(ma) || isPrivate(ma) === true)
  }
}

/** kad-dht settings the scale simulator may tune (its timing knobs); our protocol, validators and selectors are not among them. */
export type KadTuning = Pick<KadDHTInit, 'initialQuerySelfInterval' | 'querySelfInterval' | 'pingNewContactTimeout' | 'pingNewContactMaxQueueSize' | 'pingOldContactTimeout' | 'pingOldContactMaxQueueSize'>

/**
 * A DHT client's view of a peer some response named: one reachable only through a relay (all its
 * addresses `/p2p-circuit`: a fellow client, which serves no kad protocol) is no routing-table
 * contact, so it comes back without addresses and kad-dht leaves it alone. kad-dht adds every
 * peer a response names — each provider of the swarm's rendezvous key too — and pings it first:
 * with 30 peers, every discovery round (15 s) dialled WebRTC through a relay to every other peer
 * (the relay-failover bench's steady state, BENCHMARKS.md § Scale). On a client the mapper is read
 * only there; a server passes every address on (its answers to queries carry them).
 */
export function dhtClientPeerMapper (peer: PeerInfo): PeerInfo {
  return peer.multiaddrs.length > 0 && peer.multiaddrs.every(a => a.toString().includes('/p2p-circuit')) ? { ...peer, multiaddrs: [] } : peer
}

/**
 * The swarm's private kad-dht service exactly as every node runs it (also the scale simulator's,
 * web/src/sim: it measures this configuration, not a model of it). `tuning` is for the simulator
 * only; the swarm's nodes pass none and run kad-dht's defaults.
 */
export function swarmKadDht (swarm: string, dhtServer: boolean, now?: () => number, tuning: KadTuning = {}): ReturnType<typeof kadDHT> {
  return kadDHT({
    ...tuning,
    protocol: KAD_PROTOCOL,
    clientMode: !dhtServer,
    validators: dhtValidators(now),
    selectors: dhtSelectors(now),
    // Keep loopback/LAN addresses in routing: the swarm runs on 127.0.0.1 in tests and LANs.
    peerInfoMapper: dhtServer ? passthroughMapper : dhtClientPeerMapper,
    logPrefix: `libp2p:webswarm-kad:${swarm}`
  })
}

function sharedServices (swarm: string, dhtServer: boolean, now?: () => number) {
  return {
    identify: identify(),
    ping: ping(),
    dht: swarmKadDht(swarm, dhtServer, now),
    pubsub: gossipsub({
      // Publishing to a topic nobody has joined yet is normal during start-up (one tab open).
      allowPublishToZeroTopicPeers: true,
      // Re-publishing identical bytes (e.g. an awareness heartbeat) is not an error.
      ignoreDuplicatePublishError: true,
      // Loopback tests join within milliseconds; gossipsub's default 1 s heartbeat is fine.
      emitSelf: false,
      fastMsgIdFn: gossipFastMsgId
    })
  }
}

/**
 * gossipsub's duplicate check ahead of the signature check: a message's author and sequence number
 * (which its id is made of under StrictSign, gossipsub's default). Without it every copy of a
 * message — one from each mesh neighbour: a peer on 3 relays gets each about 3 times, a relay
 * once from its author and again from every linked relay — had its Ed25519 signature verified
 * before being found a duplicate. An id is cached only once its message passed validation, so a
 * forged first copy caches nothing; a later copy with a forged body is dropped as a duplicate,
 * as the seen-cache did after verifying it.
 */
export function gossipFastMsgId (msg: { from?: Uint8Array, seqno?: Uint8Array }): string {
  // The author's length first: one string per (author, seqno) pair, whatever bytes they hold.
  const from = msg.from ?? new Uint8Array(0)
  return String.fromCharCode(from.length, ...from, ...(msg.seqno ?? []))
}

type DiscoveryComponents = Parameters<ReturnType<typeof pubsubPeerDiscovery>>[0]

/**
 * pubsub peer discovery whose stop leaves an unstarted gossipsub alone. When any component's
 * start() rejects, libp2p stops the half-started node before rethrowing; the stock discovery's
 * beforeStop then calls `pubsub.unsubscribe`, which throws "Pubsub is not started" if gossipsub's
 * own (async) start had not finished, and that error replaces the one that made the start fail.
 */
export function swarmDiscovery (init: Parameters<typeof pubsubPeerDiscovery>[0]): (components: DiscoveryComponents) => PeerDiscovery {
  const make = pubsubPeerDiscovery(init)
  return (components) => {
    const d = make(components) as PeerDiscovery & Partial<Startable>
    const beforeStop = d.beforeStop?.bind(d)
    if (beforeStop !== undefined) {
      d.beforeStop = () => {
        const pubsub = components.pubsub as { isStarted?: () => boolean } | undefined
        if (pubsub?.isStarted?.() === false) return
        return beforeStop()
      }
    }
    return d
  }
}

/** One `/p2p-circuit` listen address per relay reservation wanted (1 to MAX_RELAY_RESERVATIONS). */
function circuitListeners (wanted = 1): string[] {
  const n = Math.max(1, Math.min(MAX_RELAY_RESERVATIONS, Math.floor(wanted)))
  return Array.from({ length: n }, () => '/p2p-circuit')
}

/**
 * How long a peer's dial of one address (websocket open + noise + yamux) may take, in ms; libp2p's
 * default is 6 s. A relay that has just restarted re-admits every peer at once (handshakes,
 * identify, a CRDT sync and DHT queries each) and was CPU-bound for ~30 s at load 15-18 in the
 * failover bench: at 6 s the peers gave up on handshakes it had half done (75 inbound connections
 * for 30 peers), each abandoned one costing it again on the retry 10 s later, so the last peers
 * got back 40-55 s after it listened (BENCHMARKS.md § relay_failover_s). peers.ts bounds a whole
 * relay or WebRTC dial at 15 s anyway.
 */
export const PEER_ADDRESS_DIAL_TIMEOUT_MS = 15_000

/** Creates and starts a swarm peer (browser or Node). Dialling the relay is the caller's (see peers.ts). */
export async function createPeer (init: PeerInit = {}): Promise<WebSwarmNode> {
  const swarm = checkSwarm(init.swarm ?? DEFAULT_SWARM)
  const allowPrivate = init.allowPrivateAddresses ?? true
  const iceServers = init.iceServers ?? DEFAULT_ICE_SERVERS
  const node = await createLibp2p({
    privateKey: init.privateKey ?? await generateKeyPair('Ed25519'),
    addresses: {
      listen: [...circuitListeners(init.relayReservations), '/webrtc', ...(init.listen ?? [])]
    },
    transports: [
      webSockets(),
      webRTC({ rtcConfiguration: { iceServers } }),
      // One reservation ask per relay at once (libp2p's default is one in all): after a relay dies the
      // others are asked in parallel, not one 10 s timeout after another (net/reservation-keeper.ts).
      circuitRelayTransport({ reservationCompletionTimeout: 10_000, reservationConcurrency: MAX_RELAY_RESERVATIONS + 1 })
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: gater(allowPrivate),
    connectionManager: {
      maxConnections: init.maxConnections ?? 100,
      addressDialTimeout: PEER_ADDRESS_DIAL_TIMEOUT_MS
    },
    connectionMonitor: CONNECTION_MONITOR,
    peerDiscovery: [
      swarmDiscovery({ topics: [discoveryTopic(swarm)], interval: init.discoveryIntervalMs ?? DISCOVERY_INTERVAL_MS })
    ],
    services: sharedServices(swarm, init.dhtServer ?? false, init.now)
  })
  return node
}

/** Creates and starts the relay/bootstrap libp2p node (Node only: the relay server needs sockets). */
export async function createRelay (init: RelayInit): Promise<RelayNode> {
  const swarm = checkSwarm(init.swarm ?? DEFAULT_SWARM)
  const limits = { ...DEFAULT_RELAY_LIMITS, ...init.limits }
  if (init.listen.length === 0) throw new NetConfigError('relay needs at least one listen address')
  if (!(limits.reservationTtlMs >= MIN_RESERVATION_TTL_MS)) throw new NetConfigError(`relay reservation TTL ${limits.reservationTtlMs} ms is below ${MIN_RESERVATION_TTL_MS} ms: peers refresh no sooner than 30 s and would be unreachable in between`)
  const https: https.ServerOptions | undefined = init.tls === undefined ? undefined : { cert: init.tls.cert, key: init.tls.key }
  const dataLimitSet = init.limits?.dataLimitBytes !== undefined || init.limits?.durationLimitMs !== undefined
  const node = await createLibp2p({
    privateKey: init.privateKey ?? await generateKeyPair('Ed25519'),
    addresses: {
      listen: init.listen,
      ...(init.announce !== undefined && init.announce.length > 0 ? { announce: init.announce } : {})
    },
    transports: [
      webSockets({ http: init.http, https }),
      circuitRelayTransport()
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { ...gater(init.allowPrivateAddresses ?? true), ...init.gater },
    connectionManager: {
      maxConnections: init.maxConnections ?? 1000,
      inboundConnectionThreshold: init.inboundConnectionThreshold ?? 50,
      maxIncomingPendingConnections: 64
    },
    connectionMonitor: CONNECTION_MONITOR,
    peerDiscovery: [
      swarmDiscovery({ topics: [discoveryTopic(swarm)], interval: init.discoveryIntervalMs ?? DISCOVERY_INTERVAL_MS })
    ],
    services: {
      ...sharedServices(swarm, true, init.now),
      autonat: autoNAT(),
      relay: circuitRelayServer({
        reservations: {
          maxReservations: limits.maxReservations,
          reservationTtl: limits.reservationTtlMs,
          // relayData without explicit limits → no limits; otherwise the configured ones.
          applyDefaultLimit: !(limits.relayData && !dataLimitSet),
          defaultDataLimit: limits.dataLimitBytes,
          defaultDurationLimit: limits.durationLimitMs
        }
      })
    }
  })
  dropReservationsOnDisconnect(node as RelayNode)
  return node as RelayNode
}

/**
 * circuit-relay-v2's server keeps a reservation for its whole TTL (2 h) after the peer's last
 * connection closed. Every departed peer then holds one of `maxReservations` slots (each CLI run
 * and each tab is a fresh peer id, so a busy relay refuses newcomers with RESERVATION_REFUSED),
 * and its circuit address still looks reserved. Like go-libp2p's relay, drop a reservation when
 * its peer disconnects: a peer that reconnects reserves again (its transport removed the
 * reservation with the connection and re-reserves on identify).
 */
function dropReservationsOnDisconnect (node: RelayNode): void {
  node.addEventListener('peer:disconnect', (evt) => {
    const reservations = node.services.relay.reservations
    const r = reservations.get(evt.detail) as { signal?: { clear?: () => void } } | undefined
    if (r === undefined) return
    r.signal?.clear?.() // its expiry timer would only delete the entry again
    reservations.delete(evt.detail)
  })
}
