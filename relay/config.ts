/**
 * Relay configuration from flags and environment (flags win). `--help` prints HELP.
 */
import { parseArgs } from 'node:util'
import { NetConfigError } from '../web/src/net/errors.ts'
import { parseIceServer } from '../web/src/net/ice.ts'
import { DEFAULT_RELAY_LIMITS, MIN_RESERVATION_TTL_MS } from '../web/src/net/node.ts'
import { SWARM_NAME_PATTERN } from '../web/src/net/protocols.ts'
import { DEFAULT_ROTATION_POLICY, GENERATION_EPOCH_MS, rotationPolicy, type RotationPolicy } from '../web/src/net/crdt/generation.ts'
import { DEFAULT_POW_BITS, DEFAULT_RESERVATION_POW_BITS, MAX_POW_BITS } from '../web/src/net/pow.ts'
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNS_PER_IP } from './limits.ts'
import { DEFAULT_COMPACT_INTERVAL_MS } from './crdt-store.ts'
import { FIND_RELAYS_INTERVAL_MS, MAX_RELAY_LINKS } from './discovery.ts'
import { parsePeerRelay } from './peering.ts'

export interface RelayConfig {
  host: string
  port: number
  /** Multiaddrs announced instead of the listen ones (e.g. behind a TLS proxy). */
  announce: string[]
  /** PEM paths: serve wss itself. */
  tlsCert?: string
  tlsKey?: string
  /** Identity key and CRDT logs live here. */
  dataDir: string
  /** Built page served over HTTP. */
  staticDir: string
  /** Served under /models/: its .gguf files and safetensors folders (range requests, for peers' weights). */
  modelsDir: string
  /** The model /models/default/ stands for (a folder of modelsDir). */
  defaultModel: string
  /** Swarms whose CRDT docs the relay keeps and persists. */
  swarms: string[]
  /** STUN/TURN servers handed to browsers in /bootstrap. */
  iceServers: RTCIceServer[]
  maxReservations: number
  reservationTtlMs: number
  relayDataLimitBytes?: bigint
  relayDurationLimitMs?: number
  relayData: boolean
  compactIntervalMs: number
  /** When a swarm doc starts a new generation (web/src/net/crdt/generation.ts RotationPolicy). */
  generationPolicy: RotationPolicy
  /** New connections per second allowed from one host. */
  connRateLimit: number
  /** Open connections allowed from one IP address (0: no cap; relay/limits.ts). */
  maxConnsPerIp?: number
  /** Open connections allowed in all (0: no cap; relay/limits.ts). */
  maxConnections?: number
  /** Identity-stamp difficulty a reservation needs (0: none; relay/limits.ts). */
  reservationPowBits?: number
  /** Identity-stamp difficulty of swarm-doc `peers` entries; must equal the swarm's peers' (web/src/net/crdt/swarm-doc.ts). */
  crdtPowBits?: number
  /** Other relays (multiaddrs ending in /p2p/<id>) this one links to and replicates the swarm docs with (relay/peering.ts). */
  peerRelays: string[]
  /** Period of finding other relays through the DHT, ms (0: off; relay/discovery.ts). */
  findRelaysIntervalMs?: number
}

export const HELP = `webswarm relay — bootstrap, circuit relay v2, DHT server, CRDT persistence and the page, on one port.

Usage: npm run relay -- [options]        (npm start builds the page first)

Network
  --host <addr>            Listen address                         [env HOST, default 127.0.0.1]
  --port <n>               TCP port for HTTP + websockets (0 = any) [env PORT, default 8080]
  --announce <multiaddr>   Address to announce instead of the listen one; repeatable. Behind a
                           TLS proxy: /dns4/relay.example.com/tcp/443/tls/ws
                                                                    [env ANNOUNCE, comma-separated]
  --tls-cert <file>        PEM certificate: serve wss:// and https:// itself  [env TLS_CERT]
  --tls-key <file>         PEM private key for --tls-cert                      [env TLS_KEY]
  --ice-servers <url,…>    STUN/TURN servers handed to browsers (/bootstrap); comma-separated
                           or repeated. turn:user:pass@host:3478 carries credentials; \`none\`
                           = host candidates only (one machine or a LAN).
                                          [env ICE_SERVERS, comma-separated; default Google STUN]
  --conn-rate-limit <n>    New connections per second from one host [env CONN_RATE_LIMIT, default 50]
  --max-conns-per-ip <n>   Open connections from one IP address, 0 = no cap
                                                          [env MAX_CONNS_PER_IP, default ${DEFAULT_MAX_CONNS_PER_IP}]
  --max-connections <n>    Open connections in all; newcomers past it are refused, 0 = no cap
                                                          [env MAX_CONNECTIONS, default ${DEFAULT_MAX_CONNECTIONS}]
  --reservation-pow-bits <n>  Proof of work (bits) a peer's identity stamp needs before it gets
                           a reservation (/webswarm/pow/1.0.0), 0 = none; peers (PeerManager) present
                           ${DEFAULT_RESERVATION_POW_BITS}  [env RESERVATION_POW_BITS, default ${DEFAULT_RESERVATION_POW_BITS}]
  --crdt-pow-bits <n>      Proof of work (bits) of the swarm doc's peers entries; the swarm's
                           peers use ${DEFAULT_POW_BITS}     [env CRDT_POW_BITS, default ${DEFAULT_POW_BITS}]
  --peer-relay <multiaddr> Another relay of the swarm (…/p2p/<its id>); repeatable. This relay
                           keeps a link to it (redialled with backoff), replicates every swarm
                           doc over it, and lists it in /bootstrap  [env PEER_RELAYS, comma-separated]
  --find-relays-interval <ms>  How often to provide and look up the relays' DHT key and link to
                           the relays found (≤ ${MAX_RELAY_LINKS} links), 0 = off
                                       [env FIND_RELAYS_INTERVAL_MS, default ${FIND_RELAYS_INTERVAL_MS}]

Relay limits (defaults sized for WebRTC signalling)
  --max-reservations <n>   Simultaneous reservations      [env MAX_RESERVATIONS, default ${DEFAULT_RELAY_LIMITS.maxReservations}]
  --reservation-ttl <ms>   Reservation lifetime, ≥ ${MIN_RESERVATION_TTL_MS} (peers refresh no sooner than 30 s)
                                                          [env RESERVATION_TTL_MS, default ${DEFAULT_RELAY_LIMITS.reservationTtlMs}]
  --relay-data-limit <B>   Bytes per relayed connection   [env RELAY_DATA_LIMIT, default ${DEFAULT_RELAY_LIMITS.dataLimitBytes} unless --relay-data]
  --relay-duration <ms>    Lifetime of a relayed connection [env RELAY_DURATION_MS, default ${DEFAULT_RELAY_LIMITS.durationLimitMs} unless --relay-data]
  --relay-data             Opt in: relay application data for peers with no direct WebRTC
                           path (unlimited unless the two limits above are given) [env RELAY_DATA=1]

State
  --data-dir <dir>         Identity key + CRDT logs      [env DATA_DIR, default .webswarm/relay]
  --swarm <name>           Swarm whose CRDT doc is kept and persisted; repeatable [env SWARM, default default]
  --compact-interval <ms>  CRDT log compaction period     [env COMPACT_INTERVAL_MS, default ${DEFAULT_COMPACT_INTERVAL_MS}]
  --generation-min-history <bytes>
                           A swarm doc starts a new generation (dropping departed peers' history;
                           every peer then downloads it whole) once its history is this large and
                           passes half the doc or the generation is --generation-every old
                                            [env GENERATION_MIN_HISTORY, default ${DEFAULT_ROTATION_POLICY.minHistoryBytes}]
  --generation-every <ms>  (see above; at least ${GENERATION_EPOCH_MS})  [env GENERATION_EVERY_MS, default ${DEFAULT_ROTATION_POLICY.everyMs}]
  --static-dir <dir>       Built page to serve            [env STATIC_DIR, default dist]
  --models-dir <dir>       Models served with range requests (peers load only the blocks they
                           serve): every .gguf file at /models/<file>.gguf (one folder down:
                           /models/<folder>/<file>.gguf) and Hugging Face safetensors folders at
                           /models/<folder>/; /models lists them (JSON)
                                                          [env MODELS_DIR, default models]
  --default-model <name>   Folder of --models-dir that /models/default/ serves
                                                          [env DEFAULT_MODEL, default byte-llama]

  -h, --help               Show this help

HTTP (same port): /  the page · /health  JSON status · /bootstrap  relay multiaddrs + ICE servers
for browsers · /metrics  Prometheus text · /models  the served models (JSON). Stops gracefully on SIGINT/SIGTERM (CRDT flushed and
compacted, connections closed).`

function list (flag: string[] | undefined, env: string | undefined): string[] {
  if (flag !== undefined && flag.length > 0) return flag
  return (env ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
}

function int (name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) throw new NetConfigError(`${name}: expected an integer ≥ ${min}, got ${JSON.stringify(v)}`)
  return n
}

function bits (name: string, v: string | undefined, dflt: number): number {
  const n = int(name, v, dflt)
  if (n > MAX_POW_BITS) throw new NetConfigError(`${name}: at most ${MAX_POW_BITS} bits, got ${n}`)
  return n
}

/** Parses argv (without node/script) and env; returns null when --help was asked. */
export function parseConfig (argv: string[], env: NodeJS.ProcessEnv = process.env): RelayConfig | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      announce: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'ice-servers': { type: 'string', multiple: true },
      // The spelling of older docs (and the CLI's alias): taken as --ice-servers.
      'ice-server': { type: 'string', multiple: true },
      'conn-rate-limit': { type: 'string' },
      'max-conns-per-ip': { type: 'string' },
      'max-connections': { type: 'string' },
      'reservation-pow-bits': { type: 'string' },
      'crdt-pow-bits': { type: 'string' },
      'max-reservations': { type: 'string' },
      'reservation-ttl': { type: 'string' },
      'relay-data-limit': { type: 'string' },
      'relay-duration': { type: 'string' },
      'relay-data': { type: 'boolean' },
      'data-dir': { type: 'string' },
      swarm: { type: 'string', multiple: true },
      'compact-interval': { type: 'string' },
      'generation-min-history': { type: 'string' },
      'generation-every': { type: 'string' },
      'static-dir': { type: 'string' },
      'models-dir': { type: 'string' },
      'default-model': { type: 'string' },
      'peer-relay': { type: 'string', multiple: true },
      'find-relays-interval': { type: 'string' },
      help: { type: 'boolean', short: 'h' }
    }
  })
  if (values.help === true) return null
  const tlsCert = values['tls-cert'] ?? env.TLS_CERT
  const tlsKey = values['tls-key'] ?? env.TLS_KEY
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new NetConfigError('--tls-cert and --tls-key go together')
  const swarms = list(values.swarm, env.SWARM)
  for (const s of swarms) if (!SWARM_NAME_PATTERN.test(s)) throw new NetConfigError(`--swarm ${JSON.stringify(s)} must match ${SWARM_NAME_PATTERN}`)
  const iceList = list([...(values['ice-servers'] ?? []), ...(values['ice-server'] ?? [])].flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== ''), env.ICE_SERVERS)
  const dataLimit = values['relay-data-limit'] ?? env.RELAY_DATA_LIMIT
  const duration = values['relay-duration'] ?? env.RELAY_DURATION_MS
  const peerRelays = list(values['peer-relay'], env.PEER_RELAYS)
  // Refused at start, naming the bad address, rather than logged forever by the redial loop.
  for (const a of peerRelays) parsePeerRelay(a)
  return {
    host: values.host ?? env.HOST ?? '127.0.0.1',
    port: int('--port', values.port ?? env.PORT, 8080),
    announce: list(values.announce, env.ANNOUNCE),
    tlsCert,
    tlsKey,
    dataDir: values['data-dir'] ?? env.DATA_DIR ?? '.webswarm/relay',
    staticDir: values['static-dir'] ?? env.STATIC_DIR ?? 'dist',
    modelsDir: values['models-dir'] ?? env.MODELS_DIR ?? 'models',
    defaultModel: values['default-model'] ?? env.DEFAULT_MODEL ?? 'byte-llama',
    swarms: swarms.length > 0 ? swarms : ['default'],
    iceServers: iceList.length === 0 ? [{ urls: 'stun:stun.l.google.com:19302' }] : iceList.includes('none') ? [] : iceList.map(parseIceServer),
    maxReservations: int('--max-reservations', values['max-reservations'] ?? env.MAX_RESERVATIONS, DEFAULT_RELAY_LIMITS.maxReservations, 1),
    reservationTtlMs: int('--reservation-ttl', values['reservation-ttl'] ?? env.RESERVATION_TTL_MS, DEFAULT_RELAY_LIMITS.reservationTtlMs, MIN_RESERVATION_TTL_MS),
    relayDataLimitBytes: dataLimit === undefined ? undefined : BigInt(int('--relay-data-limit', dataLimit, 0, 1)),
    relayDurationLimitMs: duration === undefined ? undefined : int('--relay-duration', duration, 0, 1),
    relayData: values['relay-data'] ?? (env.RELAY_DATA === '1' || env.RELAY_DATA === 'true'),
    compactIntervalMs: int('--compact-interval', values['compact-interval'] ?? env.COMPACT_INTERVAL_MS, DEFAULT_COMPACT_INTERVAL_MS),
    generationPolicy: rotationPolicy({
      minHistoryBytes: int('--generation-min-history', values['generation-min-history'] ?? env.GENERATION_MIN_HISTORY, DEFAULT_ROTATION_POLICY.minHistoryBytes),
      everyMs: int('--generation-every', values['generation-every'] ?? env.GENERATION_EVERY_MS, DEFAULT_ROTATION_POLICY.everyMs, GENERATION_EPOCH_MS)
    }),
    connRateLimit: int('--conn-rate-limit', values['conn-rate-limit'] ?? env.CONN_RATE_LIMIT, 50, 1),
    maxConnsPerIp: int('--max-conns-per-ip', values['max-conns-per-ip'] ?? env.MAX_CONNS_PER_IP, DEFAULT_MAX_CONNS_PER_IP),
    maxConnections: int('--max-connections', values['max-connections'] ?? env.MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS),
    reservationPowBits: bits('--reservation-pow-bits', values['reservation-pow-bits'] ?? env.RESERVATION_POW_BITS, DEFAULT_RESERVATION_POW_BITS),
    crdtPowBits: bits('--crdt-pow-bits', values['crdt-pow-bits'] ?? env.CRDT_POW_BITS, DEFAULT_POW_BITS),
    peerRelays,
    findRelaysIntervalMs: int('--find-relays-interval', values['find-relays-interval'] ?? env.FIND_RELAYS_INTERVAL_MS, FIND_RELAYS_INTERVAL_MS)
  }
}
