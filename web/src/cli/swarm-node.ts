/**
 * What `serve` and `generate --bootstrap` share: a libp2p peer dialled to the bootstrap relay,
 * holding a reservation, with the swarm's transport and DHT directory on it (and, for `serve`,
 * the swarm CRDT).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { SwarmDht } from '../net/dht/index.ts'
import { joinSwarm as joinNetSwarm, type Swarm } from '../net/swarm.ts'
import { createPeer, type WebSwarmNode } from '../net/node.ts'
import { NetConfigError } from '../net/errors.ts'
import { parseIceServerList } from '../net/ice.ts'
import { waitForReservation } from '../net/peers.ts'
import { fetchBootstrap } from '../net/swarm.ts'
import { DhtDirectory } from '../swarm/dht-directory.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import { required, str, UsageError, type Flags } from './args.ts'

/** Where a CLI peer joins: the relay's multiaddr, and the STUN/TURN servers to use (undefined: node.ts defaults). */
export interface Bootstrap { addr: string, iceServers?: RTCIceServer[] }

/**
 * `--bootstrap MULTIADDR | URL` and `--ice-servers LIST|none`. A URL (the relay's page, e.g.
 * `http://relay:8080`) is asked for `/bootstrap`: its first websocket multiaddr, and the STUN/TURN
 * servers the relay's operator chose. With a multiaddr the defaults apply (a public STUN server,
 * for NAT traversal). `--ice-servers` wins over both; `none` suits loopback and LANs, where host
 * candidates are enough and an unreachable STUN server only slows ICE.
 */
export async function resolveBootstrap (f: Flags): Promise<Bootstrap> {
  const b = required(f, 'bootstrap')
  const list = str(f, 'ice-servers')
  let iceServers: RTCIceServer[] | undefined
  try {
    iceServers = list === undefined ? undefined : parseIceServerList(list)
  } catch (e) {
    if (e instanceof NetConfigError) throw new UsageError(e.message)
    throw e
  }
  if (/^https?:\/\//i.test(b)) {
    let url: URL
    try { url = new URL(b) } catch { throw new UsageError(`--bootstrap: '${b}' is not a URL`) }
    if (!url.pathname.endsWith('/bootstrap')) url.pathname = url.pathname.replace(/\/?$/, '/bootstrap')
    const info = await fetchBootstrap(url.toString())
    const addr = info.multiaddrs.find(a => /\/wss?\//.test(a) && a.includes('/p2p/')) ?? info.multiaddrs.find(a => a.includes('/p2p/'))
    if (addr === undefined) throw new UsageError(`--bootstrap: ${url.toString()} lists no multiaddr with /p2p/<relay id>: ${info.multiaddrs.join(', ')}`)
    return { addr, iceServers: iceServers ?? info.iceServers }
  }
  checkBootstrap(b)
  return { addr: b, iceServers }
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
  const bootstrap = boot.addr
  const swarm = await joinNetSwarm({ bootstrap: [bootstrap], persist: false, iceServers: boot.iceServers, log })
  await swarm.peers.ready()
  return {
    swarm,
    node: swarm.node,
    transport: new Libp2pTransport(swarm.node, { relayAddr: bootstrap }),
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

export async function joinSwarm (boot: Bootstrap, shape: { numBlocks: number, numExperts: number }): Promise<SwarmPeer> {
  const bootstrap = boot.addr
  const addr = multiaddr(bootstrap)
  const key = await generateKeyPair('Ed25519')
  const node = await createPeer({ privateKey: key, iceServers: boot.iceServers })
  await node.dial(addr)
  await waitForReservation(node)
  return {
    node,
    transport: new Libp2pTransport(node, { relayAddr: bootstrap }),
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
  setTimeout(() => process.exit(process.exitCode ?? 0), STOP_TIMEOUT_MS).unref()
}
