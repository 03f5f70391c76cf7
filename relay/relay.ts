/**
 * The relay process: libp2p relay node (web/src/net/node.ts) + CRDT docs persisted to disk +
 * HTTP (page, /health, /bootstrap, /metrics) on the websocket listener's own port.
 *
 * @example
 * ```ts
 * const relay = await startRelay({ ...parseConfig([])!, port: 0, dataDir: tmp })
 * console.log(relay.httpUrl, relay.bootstrapAddrs)
 * await relay.stop()
 * ```
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Connection, PeerId, PrivateKey, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import * as fs from 'node:fs/promises'
import type * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'
import * as Y from 'yjs'
import { CrdtSync } from '../web/src/net/crdt/sync.ts'
import { SwarmDoc } from '../web/src/net/crdt/swarm-doc.ts'
import { formatGeneration, type RotationPolicy } from '../web/src/net/crdt/generation.ts'
import { PortInUseError } from '../web/src/cli/failures.ts'
import { createRelay, type RelayNode, type WebSwarmNode } from '../web/src/net/node.ts'
import { connectionKind, swarmRendezvousCid } from '../web/src/net/peers.ts'
import type { RelayConfig } from './config.ts'
import { CrdtStore, DEFAULT_COMPACT_INTERVAL_MS } from './crdt-store.ts'
import { createHttpHandler } from './http.ts'
import { RelayMetrics } from './metrics.ts'
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNS_PER_IP, RelayAdmission } from './limits.ts'
import { DEFAULT_POW_BITS } from '../web/src/net/pow.ts'
import { RelayFinder } from './discovery.ts'
import { RelayPeering } from './peering.ts'

export interface RelayHandle {
  config: RelayConfig
  node: RelayNode
  /** Swarm name → doc, sync provider and disk store. */
  swarms: Map<string, { sdoc: SwarmDoc, sync: CrdtSync, store: CrdtStore }>
  metrics: RelayMetrics
  /** Per-IP connection cap and stamped reservations (relay/limits.ts). */
  admission: RelayAdmission
  /** Links to the `--peer-relay` relays and those found, over which the swarm docs replicate (relay/peering.ts). */
  peering: RelayPeering
  /** Finds the other relays through the DHT and links to them (relay/discovery.ts). */
  finder: RelayFinder
  /** `http://host:port` (or https) of the page and endpoints. */
  httpUrl: string
  /** Multiaddrs peers dial (with /p2p/<relay id>). */
  bootstrapAddrs: string[]
  startedAt: number
  stop: () => Promise<void>
}

/** Loads the relay's identity key from `<dataDir>/identity.key`, creating it (mode 0600) on first run. */
async function loadIdentity (dataDir: string): Promise<PrivateKey> {
  const file = path.join(dataDir, 'identity.key')
  try {
    return privateKeyFromProtobuf(await fs.readFile(file))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read relay identity ${file}: ${(e as Error).message}`)
  }
  await fs.mkdir(dataDir, { recursive: true })
  const key = await generateKeyPair('Ed25519')
  const tmp = `${file}.tmp`
  await fs.writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600, flush: true })
  await fs.rename(tmp, file)
  return key
}

interface WsListener { http?: http.Server, https?: http.Server, server?: net.Server }

/** The websocket transport's own HTTP server(s) and bound port: we answer plain requests on them. */
function wsHttpServers (node: RelayNode): { servers: http.Server[], port?: number } {
  // libp2p keeps its transport manager internal; its websocket listener exposes `http`/`https`.
  const tm = (node as unknown as { components?: { transportManager?: { getListeners: () => unknown[] } } }).components?.transportManager
  const servers: http.Server[] = []
  let port: number | undefined
  for (const l of tm?.getListeners() ?? []) {
    const ws = l as WsListener
    if (ws.http !== undefined) servers.push(ws.http)
    if (ws.https !== undefined) servers.push(ws.https)
    const addr = ws.server?.address()
    if (addr !== null && typeof addr === 'object') port ??= addr.port
  }
  if (servers.length === 0) throw new Error('relay: no websocket HTTP server found on the libp2p listeners (libp2p internals changed?)')
  return { servers, port }
}

/**
 * Counts relayed bytes and logs each circuit. The relay pipes each HOP stream (from the source)
 * to a STOP stream (to the destination) by async-iterating the HOP stream and `send`ing into it;
 * wrapping both on the HOP stream counts every relayed byte, once per direction.
 *
 * Why not `node.use()` middleware: in libp2p 3.3.11 `Connection.onIncomingStream` pushes the
 * handler into the array the registrar stores for the middleware, so from the second stream on
 * the handler runs several times on one stream (corrupting circuits). We re-register the relay's
 * own HOP handler wrapped instead.
 */
function instrumentRelay (node: RelayNode, metrics: RelayMetrics, relayData: boolean, log: (l: string) => void): void {
  const registrar = (node as unknown as { components?: { registrar?: { getHandler: (p: string) => { handler: StreamHandler, options: StreamHandlerOptions } } } }).components?.registrar
  if (registrar === undefined) throw new Error('relay: libp2p registrar not reachable (libp2p internals changed?)')
  const { handler, options } = registrar.getHandler(RELAY_V2_HOP_CODEC)
  const wrapped: StreamHandler = (stream: Stream, conn: Connection) => {
    metrics.circuits.inc()
    const send = stream.send.bind(stream)
    stream.send = (data) => {
      metrics.relayedBytes.inc(data.byteLength)
      return send(data)
    }
    const iterate = stream[Symbol.asyncIterator].bind(stream)
    stream[Symbol.asyncIterator] = async function * () {
      for await (const chunk of { [Symbol.asyncIterator]: iterate }) {
        metrics.relayedBytes.inc(chunk.byteLength)
        yield chunk
      }
    }
    if (relayData) log(`relay: circuit from ${conn.remotePeer.toString()} may carry data (relay-data opt-in): a peer without a direct path is falling back to the relay`)
    return handler(stream, conn)
  }
  void node.handle(RELAY_V2_HOP_CODEC, wrapped, { ...options, force: true })
}

/**
 * Forgets a peer's provider record for each swarm's rendezvous key when its last connection
 * closes. kad-dht keeps provider records 48 h (its reprovider's validity), so departed peers
 * (each CLI run and tab is a new peer id) were handed to every newcomer as swarm members and
 * dialled through the relay in vain (NO_RESERVATION) for two days. Live peers re-provide on every
 * discovery round (and right after reconnecting), so a peer that comes back is listed again
 * within seconds.
 */
function forgetDepartedMembers (node: RelayNode, swarmNames: string[], log: (l: string) => void): void {
  const providers = (node.services.dht as unknown as { providers?: { removeProvider?: (cid: CID, peer: PeerId) => Promise<void> } }).providers
  if (typeof providers?.removeProvider !== 'function') throw new Error('relay: kad-dht provider store not reachable (libp2p internals changed?)')
  const remove = providers.removeProvider.bind(providers)
  const cids = Promise.all(swarmNames.map(async (name) => await swarmRendezvousCid(name)))
  node.addEventListener('peer:disconnect', (evt) => {
    void cids.then(async (list) => {
      for (const cid of list) await remove(cid, evt.detail)
    }).catch((e: Error) => { log(`relay: could not drop the provider records of ${evt.detail.toString()}: ${e.message}`) })
  })
}

/** Connections libp2p allows past `--max-connections` before it prunes (see startRelay). */
const RELAY_CONNECTION_MARGIN = 32

export async function startRelay (config: RelayConfig, log: (line: string) => void = (l) => { console.info(l) }): Promise<RelayHandle> {
  const startedAt = Date.now()
  const privateKey = await loadIdentity(config.dataDir)
  const tls = config.tlsCert !== undefined && config.tlsKey !== undefined
    ? { cert: await fs.readFile(config.tlsCert, 'utf8'), key: await fs.readFile(config.tlsKey, 'utf8') }
    : undefined
  const ip = config.host.includes(':') ? 'ip6' : 'ip4'
  const listen = `/${ip}/${config.host}/tcp/${config.port}/${tls !== undefined ? 'tls/ws' : 'ws'}`
  const metrics = new RelayMetrics()
  const admission = new RelayAdmission({
    maxConnsPerIp: config.maxConnsPerIp ?? DEFAULT_MAX_CONNS_PER_IP,
    maxConnections: config.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    maxReservations: config.maxReservations,
    reservationPowBits: config.reservationPowBits ?? 0,
    maxStamped: 4 * config.maxReservations,
    onRefused: (reason) => { metrics.refused.inc({ reason }) },
    log
  })
  const node = await createRelay({
    privateKey,
    swarm: config.swarms[0],
    listen: [listen],
    announce: config.announce,
    tls,
    inboundConnectionThreshold: config.connRateLimit,
    // libp2p prunes past its own cap; ours (the gater) refuses newcomers first and counts them.
    // The margin: the relay's own dials (peer relays) and handshakes under way.
    maxConnections: (config.maxConnections ?? DEFAULT_MAX_CONNECTIONS) === 0 ? Number.MAX_SAFE_INTEGER : (config.maxConnections ?? DEFAULT_MAX_CONNECTIONS) + RELAY_CONNECTION_MARGIN,
    gater: admission.gater,
    limits: {
      maxReservations: config.maxReservations,
      reservationTtlMs: config.reservationTtlMs,
      relayData: config.relayData,
      ...(config.relayDataLimitBytes !== undefined ? { dataLimitBytes: config.relayDataLimitBytes } : {}),
      ...(config.relayDurationLimitMs !== undefined ? { durationLimitMs: config.relayDurationLimitMs } : {})
    }
  }).catch((e: Error) => {
    // libp2p says a port is taken only in the text of its UnsupportedListenAddressesError (no code, no cause).
    if (/EADDRINUSE/.test(e.message)) throw new PortInUseError(config.host, config.port, 'PORT=9000 npm start, or npm run relay -- --port 9000')
    throw e
  })
  await admission.attach(node as unknown as Parameters<RelayAdmission['attach']>[0], node.services.relay.reservations)
  instrumentRelay(node, metrics, config.relayData, log)
  forgetDepartedMembers(node, config.swarms, log)

  const swarms: RelayHandle['swarms'] = new Map()
  for (const name of config.swarms) {
    const doc = new Y.Doc()
    const store = await CrdtStore.open(path.join(config.dataDir, 'crdt'), name, doc, { compactIntervalMs: config.compactIntervalMs, log })
    const sdoc = new SwarmDoc(name, node.peerId.toString(), undefined, doc, { powBits: config.crdtPowBits ?? DEFAULT_POW_BITS, generation: store.generation, mirroredGenerations: 0 })
    // A new generation (ours, or one re-seeded from a peer relay or a peer): the log holds it alone.
    sdoc.onGeneration((g) => { void store.rebind(sdoc.doc, g).catch((e: Error) => { log(`crdt-store ${name}: compaction to generation failed: ${e.message}`) }) })
    // Before anyone syncs: entries stored by an older relay (no stamps) or expired while it was down.
    const stale = sdoc.pruneExpired()
    if (stale > 0) log(`crdt ${name}: pruned ${stale} stored entr${stale === 1 ? 'y' : 'ies'} (expired or unstamped) at load`)
    const sync = new CrdtSync(node as unknown as WebSwarmNode, sdoc, { log, beforeAck: async () => { await store.flush() } })
    await sync.start()
    swarms.set(name, { sdoc, sync, store })
  }

  const { servers, port: boundPort } = wsHttpServers(node)
  const port = boundPort ?? config.port
  const addrs = node.getMultiaddrs().map(String)
  const peering = new RelayPeering(node, config.peerRelays, log)
  const handle: RelayHandle = {
    config,
    node,
    swarms,
    metrics,
    admission,
    peering,
    finder: new RelayFinder(node, peering, { intervalMs: config.findRelaysIntervalMs, log }),
    httpUrl: `${tls !== undefined ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`,
    bootstrapAddrs: addrs,
    startedAt,
    stop: async () => {}
  }
  metrics.bind(handle)
  const onRequest = createHttpHandler(handle)
  for (const s of servers) {
    // Replace the transport's "only websockets" 400 responder with ours.
    s.removeAllListeners('request')
    s.on('request', onRequest)
  }

  // After the swarm docs' sync is registered: the link's first sync runs as soon as it opens.
  handle.peering.start()
  handle.finder.start()

  node.addEventListener('connection:open', (evt) => {
    const c = evt.detail
    if (config.relayData && connectionKind(c) === 'relayed') log(`relay: relayed connection ${c.remotePeer.toString()} (data relaying on)`)
  })

  // Entries their owners stopped refreshing are deleted (anyone may; peers accept it as expired),
  // and once the doc's history outweighs its live state a new generation starts (crdt/generation.ts).
  let rotating = false
  const prune = setInterval(() => {
    for (const [name, { sdoc }] of swarms) {
      const n = sdoc.pruneExpired()
      if (n > 0) log(`crdt ${name}: pruned ${n} expired peers entr${n === 1 ? 'y' : 'ies'}`)
    }
    if (rotating) return
    rotating = true
    void rotateDue(swarms, config.generationPolicy, log).finally(() => { rotating = false })
  }, Math.max(1000, config.compactIntervalMs || DEFAULT_COMPACT_INTERVAL_MS))

  let stopping: Promise<void> | undefined
  handle.stop = async () => {
    stopping ??= (async () => {
      clearInterval(prune)
      handle.finder.stop()
      handle.peering.stop()
      for (const { sync } of swarms.values()) await sync.stop()
      for (const { store } of swarms.values()) await store.close()
      await node.stop()
    })()
    await stopping
  }
  log(`relay ${node.peerId.toString()} listening: ${addrs.join(' ')}`)
  log(`page + /health /bootstrap /metrics at ${handle.httpUrl}`)
  return handle
}

/** Starts a new doc generation in every swarm whose history is due under `policy`. */
async function rotateDue (swarms: RelayHandle['swarms'], policy: RotationPolicy, log: (line: string) => void): Promise<void> {
  for (const [name, { sdoc }] of swarms) {
    try {
      if (!(await sdoc.rotationDue(policy))) continue
      const before = Y.encodeStateAsUpdate(sdoc.doc).byteLength
      const g = await sdoc.rotate()
      log(`crdt ${name}: started doc generation ${formatGeneration(g)}: ${before} B → ${Y.encodeStateAsUpdate(sdoc.doc).byteLength} B`)
    } catch (e) {
      log(`crdt ${name}: doc generation not started: ${(e as Error).message}`)
    }
  }
}

/** Open connections by kind (for /health and /metrics). */
export function connectionCounts (node: RelayNode): Record<string, number> {
  const out: Record<string, number> = { websocket: 0, webrtc: 0, relayed: 0, other: 0 }
  for (const c of node.getConnections()) out[connectionKind(c)]++
  return out
}
