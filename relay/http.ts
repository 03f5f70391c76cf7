/**
 * HTTP routes on the relay's port: the built page (static, no directory escape), /health,
 * /bootstrap, /metrics, and model files under /models/ (models.ts).
 */
import * as fs from 'node:fs/promises'
import type * as http from 'node:http'
import * as path from 'node:path'
import { countDhtRecords } from './metrics.ts'
import { MODELS_PREFIX, serveModels } from './models.ts'
import { connectionCounts, type RelayHandle } from './relay.ts'

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wgsl': 'text/plain; charset=utf-8',
  '.map': 'application/json'
}

function json (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'access-control-allow-origin': '*' })
  res.end(JSON.stringify(body, null, 2))
}

/** Multiaddr a browser at `hostHeader` can dial: same host and port as the page it loaded. */
function addrForRequest (handle: RelayHandle, req: http.IncomingMessage): string | undefined {
  const host = req.headers.host
  if (host === undefined) return undefined
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host)
  if (m === null) return undefined
  // Behind a TLS proxy the page is https even though the relay itself speaks plain http.
  const forwarded = req.headers['x-forwarded-proto']
  const secure = handle.httpUrl.startsWith('https:') || (typeof forwarded === 'string' && forwarded.split(',')[0].trim() === 'https')
  const name = m[1].replace(/^\[|\]$/g, '')
  const port = m[2] ?? (secure ? '443' : '80')
  const proto = /^\d+\.\d+\.\d+\.\d+$/.test(name) ? 'ip4' : name.includes(':') ? 'ip6' : 'dns'
  return `/${proto}/${name}/tcp/${port}/${secure ? 'tls/ws' : 'ws'}/p2p/${handle.node.peerId.toString()}`
}

/** A handler for a path prefix mounted after start-up (the OpenAI API at /v1: relay/main.ts). */
export interface HttpMount {
  owns: (pathname: string) => boolean
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>
}

const mounts = new WeakMap<RelayHandle, HttpMount[]>()

/** Adds `mount` to the relay's HTTP routes; its paths take precedence over the page's files. */
export function mountHttp (handle: RelayHandle, mount: HttpMount): void {
  mounts.set(handle, [...mounts.get(handle) ?? [], mount])
}

export function createHttpHandler (handle: RelayHandle): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const root = path.resolve(handle.config.staticDir)
  return (req, res) => {
    void route(handle, root, req, res).catch((e: Error) => {
      if (!res.headersSent) json(res, 500, { error: e.message })
      else res.destroy()
    })
  }
}

async function route (handle: RelayHandle, root: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://relay')
  const mount = mounts.get(handle)?.find(m => m.owns(url.pathname))
  if (mount !== undefined) {
    await mount.handle(req, res)
    return
  }
  const models = url.pathname === '/models' || url.pathname.startsWith(MODELS_PREFIX)
  if (req.method !== 'GET' && req.method !== 'HEAD' && !(models && req.method === 'OPTIONS')) {
    json(res, 405, { error: `${req.method} not allowed` })
    return
  }
  switch (url.pathname) {
    case '/health': {
      const swarms: Record<string, unknown> = {}
      for (const [name, s] of handle.swarms) {
        swarms[name] = { peers: (await s.sdoc.peers()).size, store: s.store.stats, sync: s.sync.stats }
      }
      json(res, 200, {
        status: 'ok',
        peerId: handle.node.peerId.toString(),
        addrs: handle.node.getMultiaddrs().map(String),
        connections: connectionCounts(handle.node),
        peers: handle.node.getPeers().length,
        reservations: handle.node.services.relay.reservations.size,
        dhtRecords: await countDhtRecords(handle),
        uptimeS: Math.round((Date.now() - handle.startedAt) / 1000),
        swarms
      })
      return
    }
    case '/bootstrap': {
      const fromRequest = addrForRequest(handle, req)
      const announced = handle.node.getMultiaddrs().map(String)
      // Announced addresses are the operator's word (e.g. behind a proxy): they go first.
      const ordered = handle.config.announce.length > 0
        ? [...announced, ...(fromRequest !== undefined ? [fromRequest] : [])]
        : [...(fromRequest !== undefined ? [fromRequest] : []), ...announced]
      json(res, 200, {
        peerId: handle.node.peerId.toString(),
        // Then the peer relays, configured and found through the DHT (discovery.ts): pages and
        // peers learn every relay of the swarm from any one.
        multiaddrs: [...new Set([...ordered, ...handle.peering.addrs()])],
        swarms: [...handle.swarms.keys()],
        iceServers: handle.config.iceServers,
        // The stamp a reservation here needs (pages mint it before they reserve: net/peers.ts).
        reservationPowBits: handle.admission.opts.reservationPowBits
      })
      return
    }
    case '/metrics': {
      res.writeHead(200, { 'content-type': handle.metrics.registry.contentType })
      res.end(await handle.metrics.registry.metrics())
      return
    }
  }
  if (models) {
    await serveModels({ modelsDir: handle.config.modelsDir, defaultModel: handle.config.defaultModel, stats: handle.metrics.modelServe }, url.pathname, req, res)
    return
  }
  await serveStatic(root, url.pathname, res)
}

async function serveStatic (root: string, pathname: string, res: http.ServerResponse): Promise<void> {
  let rel: string
  try {
    rel = decodeURIComponent(pathname)
  } catch {
    json(res, 400, { error: 'bad path encoding' })
    return
  }
  if (rel.endsWith('/')) rel += 'index.html'
  const file = path.resolve(root, `.${rel}`)
  if (file !== root && !file.startsWith(root + path.sep)) {
    json(res, 403, { error: 'outside the static root' })
    return
  }
  let body: Buffer
  try {
    body = await fs.readFile(file)
  } catch {
    if (rel === '/index.html') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`No page built in ${root}: run \`npm run build\` (or \`npm start\`, which builds first).\n`)
    } else {
      json(res, 404, { error: `not found: ${pathname}` })
    }
    return
  }
  res.writeHead(200, { 'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': body.length })
  res.end(body)
}
