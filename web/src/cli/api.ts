/**
 * `webswarm api --bootstrap URL|MULTIADDR --model MODEL [--model-id ID] [--host H] [--port P]
 *  [--api-key KEY] [--rate-limit N] [--device cpu]`
 *
 * The OpenAI-compatible API (web/src/api) as its own process next to any relay: it joins the
 * swarm as an inference client (embedding, head and sampling here; blocks on the swarm's
 * servers) and answers /v1 on HOST:PORT until SIGINT/SIGTERM. The relay (`npm start`) mounts the
 * same thing on its own port, with an embedded peer serving every block of the default model
 * (startEmbeddedPeer), so the API answers with no tab open.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as os from 'node:os'
import { ColocatedPeers } from '../api/colocated.ts'
import { ApiServer } from '../api/server.ts'
import { loadSwarmModel, SwarmGenerator } from '../api/swarm-generator.ts'
import type { RateLimitOptions } from '../api/rate-limit.ts'
import type { Backend } from '../gpu/backend.ts'
import { loadConfig } from '../model/model.ts'
import { sourceFrom } from '../model/source.ts'
import { loadSpanBackend } from '../swarm/model-backend.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { UsageError, int, required, str, type Flags } from './args.ts'
import { DEFAULT_RATE_LIMIT_PER_MINUTE } from './command-table.ts'
import { openBackend } from './commands.ts'
import { PortInUseError } from './failures.ts'
import { resolveModelArg } from './model-plan.ts'
import { loadThreadSpan } from './span-thread.ts'
import { exitIfLingering, joinSwarm, joinSwarmWithDoc, modelId, resolveBootstrap, type Bootstrap, type SwarmPeer } from './swarm-node.ts'

/** How long leaving waits for libp2p to stop, ms. */
const LEAVE_TIMEOUT_MS = 5_000

/**
 * Leaves the swarm without swarm-node.ts leaveSwarm's exit timer: inside the relay process a
 * forced exit would cut the relay's own shutdown (CRDT flush) short.
 */
async function leave (peer: SwarmPeer): Promise<void> {
  peer.transport.close()
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    // A failing stop is not worth reporting: we are leaving either way, and the timer bounds the wait.
    Promise.resolve(peer.swarm !== undefined ? peer.swarm.stop() : peer.node.stop()).catch(() => {}),
    new Promise(resolve => { timer = setTimeout(resolve, LEAVE_TIMEOUT_MS) })
  ])
  clearTimeout(timer)
}

/** KV-cache positions the embedded peer offers: 32 sessions of the default model's full 256-token context. */
export const EMBEDDED_CACHE_TOKENS = 32 * 256

export interface SwarmApiOptions {
  bootstrap: Bootstrap
  /** Where the model's config, tokenizer, embedding and head are read from (file, folder, URL). */
  where: string
  /** The id the swarm's servers announce (and requests name). */
  id: string
  /** Device of the embedding, head and sampling. */
  backend: Backend
  apiKeys?: string[]
  /** Requests a minute per key / IP; 0 = no limit. @default DEFAULT_RATE_LIMIT_PER_MINUTE */
  ratePerMinute?: number
  log?: (line: string) => void
  /** Peers of this process reached without the network (the embedded peer of `npm start`). */
  colocated?: ColocatedPeers
  /**
   * A peer of this process already in the swarm (the embedded peer of `npm start`) whose libp2p
   * node the client uses instead of joining with one of its own; it stays up when the API stops.
   * One node fewer in the relay's process: each node's background (DHT, identify, websocket and
   * Noise traffic with the relay and the other node) runs on the thread that also writes every
   * token's SSE event (BENCHMARKS.md § API). @default a node of its own
   */
  peer?: SwarmPeer
}

export interface SwarmApi {
  api: ApiServer
  peer: SwarmPeer
  stop: () => Promise<void>
}

/** Joins the swarm as an inference client and builds the API over it (not yet listening: mount `api.handle`). */
export async function startSwarmApi (o: SwarmApiOptions): Promise<SwarmApi> {
  const source = sourceFrom(o.where)
  const config = await loadConfig(source)
  const shared = o.peer
  const peer = shared ?? await joinSwarm(o.bootstrap, { numBlocks: config.numLayers, numExperts: config.numExperts }, { log: o.log })
  // A shared node is its owner's to leave.
  const stop = async (): Promise<void> => { if (shared === undefined) await leave(peer) }
  try {
    const transport = o.colocated !== undefined ? o.colocated.wrap(peer.transport) : peer.transport
    const model = await loadSwarmModel({ transport, directory: peer.directory, id: o.id, source, backend: o.backend, log: o.log, inProcess: o.colocated?.servers })
    const rate = o.ratePerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE
    const rateLimit: RateLimitOptions | undefined = rate > 0 ? { perMinute: rate } : undefined
    const api = new ApiServer({ generator: new SwarmGenerator([model]), apiKeys: o.apiKeys, rateLimit, log: o.log })
    return { api, peer, stop }
  } catch (e) {
    await stop()
    throw e
  }
}

export interface EmbeddedPeerOptions {
  bootstrap: Bootstrap
  where: string
  id: string
  backend: Backend
  /** KV-cache positions for sessions. @default EMBEDDED_CACHE_TOKENS */
  cacheTokens?: number
  log?: (line: string) => void
  /** Peers of this process that reach this one's blocks without the network (the API client). */
  colocated?: ColocatedPeers
  /**
   * Run the blocks on a worker thread (span-thread.ts) when `backend` is the CPU twins: a second
   * core for the forward while this thread serves HTTP, the API's ends and the swarm. @default true
   */
  thread?: boolean
  /**
   * Copies of the blocks, each on a thread of its own, when `thread` (span-thread.ts): at 8
   * streams one thread's forward is the floor while the relay's thread idles (BENCHMARKS.md §
   * API). Each copy holds the weights. Two copies only where each thread gets a core: on 2 cores
   * the relay's thread, two span threads and the clients would share them, and a 2-core profile
   * did not show that they gain. @default 2 with ≥ 3 cores, else 1
   */
  threads?: number
}

/** A headless peer serving every block of a model (what `webswarm serve` does, in-process); resolves once it is online. */
export async function startEmbeddedPeer (o: EmbeddedPeerOptions): Promise<{ role: ServerRole, peer: SwarmPeer, stop: () => Promise<void> }> {
  const source = sourceFrom(o.where)
  const config = await loadConfig(source)
  const log = o.log ?? (() => {})
  const peer = await joinSwarmWithDoc(o.bootstrap, { numBlocks: config.numLayers, numExperts: config.numExperts }, log)
  await peer.swarm.setSelf({ agent: 'node', joinedAt: Date.now() })
  const cacheTokens = o.cacheTokens ?? EMBEDDED_CACHE_TOKENS
  const role: ServerRole = new ServerRole({
    transport: o.colocated !== undefined ? o.colocated.wrap(peer.transport) : peer.transport,
    directory: peer.directory,
    model: o.id,
    numBlocks: config.numLayers,
    span: { start: 0, end: config.numLayers },
    loadSpan: async (s, e) => {
      if (o.backend.kind === 'cpu' && (o.thread ?? true)) {
        try {
          return await loadThreadSpan(o.where, o.id, s, e, o.threads ?? (os.availableParallelism() >= 3 ? 2 : 1))
        } catch (err) {
          log(`embedded peer: blocks stay on the main thread (the worker thread failed: ${(err as Error).message})`)
        }
      }
      return await loadSpanBackend(source, o.backend, o.id, s, e, {}, { config })
    },
    cacheBudgetBytes: cacheTokens * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
    // The API's steps come in-process, together with the batch they follow: no timer to wait on.
    batchWindowMs: o.colocated !== undefined ? 0 : undefined,
    inProcess: o.colocated?.servers,
    log,
    // The page's Network and Chat panels read who serves what from the peers map.
    onAnnounce: () => { void peer.swarm.updateSelf({ serving: role.servingEntry() }).catch(() => {}) }
  })
  try {
    await role.start()
  } catch (e) {
    await leave(peer)
    throw e
  }
  return { role, peer, stop: async () => { await role.stop(); await leave(peer) } }
}

/** `webswarm api`. */
export async function apiCmd (f: Flags): Promise<number> {
  const where = await resolveModelArg(required(f, 'model'))
  const id = modelId(where, str(f, 'model-id'))
  const host = required(f, 'host')
  const port = int(f, 'port')
  if (port > 65535) throw new UsageError(`--port: ${port} is not a TCP port`)
  const keys = (str(f, 'api-key') ?? process.env.WEBSWARM_API_KEY ?? '').split(',').map(k => k.trim()).filter(k => k !== '')
  const log = (l: string): void => { if (f.quiet !== true) process.stderr.write(`${l}\n`) }
  let s: SwarmApi | undefined
  const server = http.createServer((req, res) => {
    if (!ApiServer.owns(new URL(req.url ?? '/', 'http://api').pathname)) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: `not found: ${req.url ?? ''}; the API is under /v1`, type: 'invalid_request_error', param: null, code: 'unknown_url' } }))
    } else if (s !== undefined) void s.api.handle(req, res)
    else {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' })
      res.end(JSON.stringify({ error: { message: 'the API is starting (joining the swarm); retry in a few seconds', type: 'server_error', param: null, code: 'starting' } }))
    }
  })
  // The port first: a busy one fails in one line before the device opens or the swarm is joined.
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => { reject(e.code === 'EADDRINUSE' ? new PortInUseError(host, port, '--port 9000 (0: any free one)') : e) })
    server.listen(port, host, resolve)
  })
  try {
    s = await startSwarmApi({ bootstrap: await resolveBootstrap(f), where, id, backend: await openBackend(f), apiKeys: keys, ratePerMinute: int(f, 'rate-limit'), log })
  } catch (e) {
    server.close()
    throw e
  }
  const a = server.address() as AddressInfo
  const url = `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/v1`
  log(`api: ${id} at ${url}${keys.length > 0 ? ' (Bearer key required)' : ''}`)
  process.stdout.write(`${JSON.stringify({ url, model: id, peer: s.peer.transport.self })}\n`)
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  server.closeAllConnections()
  server.close()
  await s.stop()
  // Standalone only (never inside the relay's process): seen after SIGTERM, no exit.
  exitIfLingering()
  return 0
}

export interface RelayApiOptions {
  /** The relay's own websocket multiaddr (…/p2p/<relay id>). */
  bootstrapAddr: string
  /** The stamp difficulty the relay asks before a reservation. @default DEFAULT_RESERVATION_POW_BITS */
  reservationPowBits?: number
  where: string
  id: string
  /** Start a peer serving every block of the model. @default true */
  embeddedPeer?: boolean
  apiKeys?: string[]
  ratePerMinute?: number
  /** Device of the embedded peer and of the API's ends. @default the CPU twins (the default model is tiny) */
  device?: 'cpu' | 'webgpu'
  log?: (line: string) => void
}

/**
 * The API on the relay's own port (npm start): answers /v1 at once (503 `starting` until the
 * client has joined), starts the embedded peer unless told not to, then the API client. Start-up
 * failures are logged and answered as 503s; the relay keeps running without them.
 */
export function startRelayApi (o: RelayApiOptions): { owns: (pathname: string) => boolean, handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>, ready: Promise<void>, stop: () => Promise<void> } {
  const log = o.log ?? (() => {})
  const boot: Bootstrap = { addrs: [o.bootstrapAddr], iceServers: [], reservationPowBits: o.reservationPowBits } // one machine: host candidates suffice
  let api: SwarmApi | undefined
  let peer: { peer: SwarmPeer, stop: () => Promise<void> } | undefined
  let failure: string | undefined
  // The API client's steps reach the embedded peer in-process (colocated.ts); tabs and other
  // peers that serve blocks are reached over the network as before.
  const colocated = new ColocatedPeers()
  const ready = (async () => {
    const backend = await openBackend({ device: o.device ?? 'cpu' })
    if (o.embeddedPeer ?? true) {
      // WEBSWARM_SPAN_THREAD=0 keeps the blocks on the relay's thread (to compare: bench/api.ts --no-thread).
      // WEBSWARM_SPAN_THREADS=N: N copies of the blocks on N threads (1 = the layout before 2026-12-05 12:00).
      const threads = process.env.WEBSWARM_SPAN_THREADS !== undefined && process.env.WEBSWARM_SPAN_THREADS !== '' ? Number(process.env.WEBSWARM_SPAN_THREADS) : undefined
      peer = await startEmbeddedPeer({ bootstrap: boot, where: o.where, id: o.id, backend, log, colocated, thread: process.env.WEBSWARM_SPAN_THREAD !== '0', threads })
      log(`embedded peer: serving every block of ${o.id} (opt out: --no-embedded-peer or WEBSWARM_NO_EMBEDDED_PEER=1)`)
    }
    // The client rides on the embedded peer's node (its in-process server is found by that
    // node's peer id); WEBSWARM_API_OWN_NODE=1 gives it a node of its own (to compare: bench/api.ts --own-node).
    const own = process.env.WEBSWARM_API_OWN_NODE === '1'
    api = await startSwarmApi({ bootstrap: boot, where: o.where, id: o.id, backend, apiKeys: o.apiKeys, ratePerMinute: o.ratePerMinute, log, colocated, peer: own ? undefined : peer?.peer })
    log(`api: OpenAI-compatible /v1 for model '${o.id}'${(o.apiKeys ?? []).length > 0 ? ' (Bearer key required)' : ''}`)
  })().catch((e: Error) => {
    failure = e.message
    log(`api: could not start: ${e.stack ?? e.message}`)
  })
  return {
    owns: p => ApiServer.owns(p),
    handle: async (req, res) => {
      if (api !== undefined) return await api.api.handle(req, res)
      const message = failure === undefined ? 'the API is starting (joining the swarm); retry in a few seconds' : `the API failed to start: ${failure}`
      res.writeHead(503, { 'content-type': 'application/json', 'access-control-allow-origin': '*', 'retry-after': '2' })
      res.end(JSON.stringify({ error: { message, type: 'server_error', param: null, code: failure === undefined ? 'starting' : 'api_unavailable' } }))
    },
    ready,
    stop: async () => {
      await ready
      await api?.stop()
      await peer?.stop()
    }
  }
}
