/** joinSwarm: the node, its peers, the DHT and the swarm CRDT, wired together. */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { CrdtSync } from './crdt/sync.ts'
import { SwarmDoc } from './crdt/swarm-doc.ts'
import { PEER_ENTRY_TTL_MS } from './crdt/entries.ts'
import { SwarmDht } from './dht/index.ts'
import { BootstrapUnreachableError, LimitExceededError, ProtocolTimeoutError } from './errors.ts'
import { createPeer, DEFAULT_SWARM, type WebSwarmNode } from './node.ts'
import { PeerManager, relayCount } from './peers.ts'
import { MAX_POW_BITS } from './pow.ts'
import type { ProtocolSpec } from './protocols.ts'
/** Fetching /bootstrap may take this long, in ms. */
const BOOTSTRAP_FETCH_TIMEOUT_MS = 10_000

export interface JoinInit {
  /** Relay multiaddrs (with /p2p/<id>). Either this or `bootstrapUrl`. */
  bootstrap?: string[]
  /** URL of a relay's `/bootstrap` JSON (browsers: `'/bootstrap'` on the page's own relay). */
  bootstrapUrl?: string
  /** @default DEFAULT_SWARM */
  swarm?: string
  /** STUN/TURN servers. @default those from /bootstrap, else node.ts defaults */
  iceServers?: RTCIceServer[]
  /** Stamp difficulty to present to relays before reserving; from the relay's `/bootstrap` when fetched. @default DEFAULT_RESERVATION_POW_BITS */
  reservationPowBits?: number
  /** Direct WebRTC peers to hold. @default DEFAULT_TARGET_PEERS */
  targetPeers?: number
  /** @default a fresh Ed25519 key (each tab is its own peer) */
  privateKey?: PrivateKey
  /** Persist the swarm doc in IndexedDB (browsers). @default true where indexedDB exists */
  persist?: boolean
  /** Allow private/loopback addresses and insecure /ws. @default true */
  allowPrivateAddresses?: boolean
  /** Log sink. @default console.info */
  log?: (line: string) => void
}

/** A joined swarm: the node plus the services built on it. */
export interface Swarm {
  readonly swarm: string
  readonly peerId: string
  readonly node: WebSwarmNode
  readonly peers: PeerManager
  readonly dht: SwarmDht
  readonly doc: SwarmDoc
  readonly crdt: CrdtSync
  /** Signs and writes this peer's entry in the peers map, and keeps it refreshed until stop(). */
  setSelf: (data: Record<string, unknown>) => Promise<void>
  /** Merges fields into this peer's entry (e.g. a role's summary beside the page's own fields). */
  updateSelf: (patch: Record<string, unknown>) => Promise<void>
  /**
   * Registers a stream handler with the spec's limits: stream counts, a read-buffer cap of one
   * message, and the whole-exchange timeout. A handler that throws or overruns gets its stream
   * reset with a log line naming the peer and the error.
   */
  handle: (spec: ProtocolSpec, handler: (stream: Stream, conn: Connection) => Promise<void>) => Promise<void>
  stop: () => Promise<void>
}

/** A relay's `/bootstrap` answer: its multiaddrs and the STUN/TURN servers its operator chose. */
export interface BootstrapInfo {
  multiaddrs: string[]
  iceServers?: RTCIceServer[]
  /** Difficulty of the identity stamp the relay asks before a reservation (absent: DEFAULT_RESERVATION_POW_BITS). */
  reservationPowBits?: number
}

/** GET a relay's `/bootstrap` JSON (bounded by BOOTSTRAP_FETCH_TIMEOUT_MS). */
export async function fetchBootstrap (url: string): Promise<BootstrapInfo> {
  let res: Response
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(BOOTSTRAP_FETCH_TIMEOUT_MS) })
  } catch (e) {
    throw new BootstrapUnreachableError(`GET ${url}: ${(e as Error).message}`)
  }
  if (!res.ok) throw new BootstrapUnreachableError(`GET ${url}: HTTP ${res.status}`)
  const body = await res.json() as Partial<BootstrapInfo>
  if (!Array.isArray(body.multiaddrs) || body.multiaddrs.length === 0 || !body.multiaddrs.every(a => typeof a === 'string')) throw new BootstrapUnreachableError(`GET ${url}: no multiaddrs in the answer`)
  const ice = body.iceServers
  if (ice !== undefined && !(Array.isArray(ice) && ice.every(s => typeof s === 'object' && s !== null && (typeof s.urls === 'string' || Array.isArray(s.urls))))) throw new BootstrapUnreachableError(`GET ${url}: iceServers is not a list of {urls}`)
  const bits = body.reservationPowBits
  if (bits !== undefined && !(Number.isInteger(bits) && bits >= 0 && bits <= MAX_POW_BITS)) throw new BootstrapUnreachableError(`GET ${url}: reservationPowBits must be an integer in [0, ${MAX_POW_BITS}]`)
  return { multiaddrs: body.multiaddrs, iceServers: ice, reservationPowBits: bits }
}

/** Starts a peer, connects it to the relay, and brings up discovery, DHT and the swarm doc. */
export async function joinSwarm (init: JoinInit): Promise<Swarm> {
  const swarm = init.swarm ?? DEFAULT_SWARM
  const log = init.log ?? ((l: string) => { console.info(l) })
  let bootstrap = init.bootstrap
  let iceServers = init.iceServers
  let reservationPowBits = init.reservationPowBits
  if (bootstrap === undefined) {
    if (init.bootstrapUrl === undefined) throw new BootstrapUnreachableError('joinSwarm needs `bootstrap` addresses or a `bootstrapUrl`')
    const info = await fetchBootstrap(init.bootstrapUrl)
    bootstrap = info.multiaddrs
    iceServers ??= info.iceServers
    reservationPowBits ??= info.reservationPowBits
  }
  const privateKey = init.privateKey ?? await generateKeyPair('Ed25519')
  const node = await createPeer({ privateKey, swarm, iceServers, allowPrivateAddresses: init.allowPrivateAddresses, relayReservations: relayCount(bootstrap) })
  const peerId = node.peerId.toString()
  const doc = new SwarmDoc(swarm, peerId, privateKey)
  const crdt = new CrdtSync(node, doc, { log })
  let stored: { stop: () => void } | undefined
  if (init.persist ?? typeof indexedDB !== 'undefined') {
    const { persistInIndexedDb } = await import('./crdt/idb.ts')
    stored = await persistInIndexedDb(crdt, { log })
  }
  await crdt.start()
  const peers = new PeerManager(node, { bootstrap, swarm, targetPeers: init.targetPeers, log, reservationPowBits })
  peers.start()
  const dht = new SwarmDht(node, privateKey)

  let selfData: Record<string, unknown> | undefined
  const refresh = setInterval(() => {
    if (selfData !== undefined) void doc.setSelf(selfData).catch((e: Error) => { log(`crdt: refreshing own entry failed: ${e.message}`) })
  }, PEER_ENTRY_TTL_MS / 2)

  return {
    swarm,
    peerId,
    node,
    peers,
    dht,
    doc,
    crdt,
    setSelf: async (data) => {
      selfData = data
      await doc.setSelf(data)
    },
    updateSelf: async (patch) => {
      selfData = { ...(selfData ?? {}), ...patch }
      await doc.setSelf(selfData)
    },
    handle: async (spec, handler) => {
      await node.handle(spec.id, (stream, conn) => {
        stream.maxReadBufferLength = spec.maxMessageBytes
        const timer = setTimeout(() => { stream.abort(new ProtocolTimeoutError(spec.id, spec.timeoutMs)) }, spec.timeoutMs)
        handler(stream, conn).catch((e: Error) => {
          log(`${spec.id}: reset stream from ${conn.remotePeer.toString()}: ${e.name}: ${e.message}`)
          stream.abort(e instanceof Error ? e : new LimitExceededError(spec.id, String(e)))
        }).finally(() => { clearTimeout(timer) })
      }, {
        maxInboundStreams: spec.maxInboundStreams,
        maxOutboundStreams: spec.maxOutboundStreams,
        runOnLimitedConnection: spec.runOnLimitedConnection
      })
    },
    stop: async () => {
      clearInterval(refresh)
      peers.stop()
      stored?.stop()
      await crdt.stop()
      await node.stop()
    }
  }
}
