/**
 * N real libp2p nodes in one process, each running the swarm's own kad-dht configuration
 * (net/node.ts `swarmKadDht`, our record validators and selectors) and the real SwarmDht API
 * (net/dht), connected in-process (./latency-transport.ts: a pipelined one-way delay per link;
 * @libp2p/memory to compare) with yamux as on the wire and, by default, @libp2p/plaintext in place of noise (see `encrypter`). The seeded
 * NetModel gives every node its link latency, loses dials, and picks who leaves in a churn
 * round; joiners bootstrap by dialling a few live nodes and looking up their own id, as a kad
 * node does.
 *
 * It runs on virtual time only (`withVirtualTime`, ./virtual-time.ts): every latency, timeout and
 * churn interval is network time, and the CPU N nodes need on one machine costs none of it.
 *
 * Browsers run the DHT in client mode (they answer nobody); here every node is a DHT server so
 * that N nodes form one N-node DHT: it measures the DHT a swarm of N always-on Node peers and
 * relays would form.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import type { KadDHT, QueryEvent } from '@libp2p/kad-dht'
import { memory } from '@libp2p/memory'
import { ping } from '@libp2p/ping'
import { plaintext } from '@libp2p/plaintext'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { providerCid, SwarmDht } from '../net/dht/index.ts'
import { swarmKadDht, type KadTuning, type WebSwarmNode } from '../net/node.ts'
import { realClock } from '../util/clock.ts'
import { SimConfigError, SimStateError } from './errors.ts'
import { LatencyNetwork } from './latency-transport.ts'
import { NetModel } from './model.ts'
import { virtualTimeActive } from './virtual-time.ts'

/** A joiner's self-lookup is abandoned after this long, in ms (whoever answered has been added). */
const JOIN_LOOKUP_TIMEOUT_MS = 30_000
/** A find's default budget, ms. */
const FIND_TIMEOUT_MS = 30_000
/** Fresh bootstrap picks a joiner that reached nobody tries before it gives up. */
const BOOTSTRAP_RETRIES = 3

type SimServices = { identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>>, dht: KadDHT }

/** One simulated peer. */
export interface SimPeer {
  readonly index: number
  readonly id: string
  readonly addr: string
  readonly latencyMs: number
  readonly node: Libp2p<SimServices>
  readonly dht: SwarmDht
  alive: boolean
}

export interface DhtSwarmInit {
  /** The seeded world (latency, loss, churn picks). */
  model?: NetModel
  /** Swarm name (scopes the kad log prefix only). @default 'sim' */
  swarm?: string
  /** Live nodes a joiner dials before its self-lookup. @default 3 */
  bootstrapPeers?: number
  /** Nodes started (and bootstrapped) at once: bounds the burst of handshakes. @default 16 */
  startConcurrency?: number
  /** Most connections one node holds before libp2p prunes. @default 64 */
  maxConnections?: number
  /**
   * Budget of one provide (SwarmDht's query timeout) and one find, ms. N nodes share this
   * machine's cores, so a walk is far slower than among N devices; a longer budget tells a slow
   * query from one that cannot succeed. @default SwarmDht's DHT_QUERY_TIMEOUT_MS for a provide, 30 s for a find
   */
  queryTimeoutMs?: number
  /**
   * Connection encrypter. The sim measures DHT behaviour, not crypto: 'plaintext' (libp2p's own
   * @libp2p/plaintext: the same upgrade path, peer ids exchanged and checked against the keys,
   * no Diffie–Hellman or AEAD) spares every connection noise's handshake and per-frame
   * encryption, which were ~15 % of a node's CPU at start-up (web/src/sim/README.md). 'noise' is
   * what the swarm runs, kept to compare. @default 'plaintext'
   */
  encrypter?: 'plaintext' | 'noise'
  /**
   * In-process transport. 'latency' (./latency-transport.ts): each frame arrives one latency after
   * it was sent, frames in flight together. 'memory' (@libp2p/memory, the sim's transport until
   * session 11) delays chunks one after another, so a burst of k frames takes k latencies and
   * queues grow on busy links; kept to compare. @default 'latency'
   */
  transport?: 'latency' | 'memory'
  /**
   * Every node's uplink rate, bytes/s (latency transport only): a node's frames queue behind each
   * other on it, across all its connections. @default Infinity (no limit, as @libp2p/memory)
   */
  uplinkBytesPerS?: number
  /** kad-dht timing overrides for the sim's nodes (net/node.ts `KadTuning`). @default none: the swarm's own settings */
  kad?: KadTuning
  /**
   * Whether each joiner also walks towards its own id after dialling its bootstrap nodes. kad-dht
   * runs that walk itself (its initial self-query, `initialQuerySelfInterval` after start), so
   * this one is a duplicate kept to compare. @default false
   */
  selfWalk?: boolean
  /** Network time a start batch runs (its kad self-queries) before the next batch dials it, ms. @default 5000 */
  joinSettleMs?: number
  /** Called after each start batch has bootstrapped, with the nodes started so far (progress of a long start). */
  onBatch?: (started: number) => void
}

/** How one lookup went: found or not, in how many hops (depth of the query tree). */
export interface LookupResult {
  found: boolean
  /** Hops to the first peer that answered with the provider; the deepest hop when not found. */
  hops: number
  ms: number
}

/** A simulated DHT swarm; start with `DhtSwarm.create`, end with `stop()`. */
export class DhtSwarm {
  readonly peers: SimPeer[] = []
  private readonly bootstrapPeers: number
  private readonly startConcurrency: number
  private readonly maxConnections: number
  private readonly queryTimeoutMs: number | undefined
  private readonly encrypter: 'plaintext' | 'noise'
  private readonly transport: 'latency' | 'memory'
  private readonly network = new LatencyNetwork()
  private readonly uplinkBytesPerS: number
  private readonly onBatch: ((started: number) => void) | undefined
  private readonly kad: KadTuning
  private readonly selfWalk: boolean
  private readonly joinSettleMs: number
  private started = 0

  private constructor (readonly model: NetModel, private readonly swarm: string, init: DhtSwarmInit) {
    this.bootstrapPeers = init.bootstrapPeers ?? 3
    this.startConcurrency = init.startConcurrency ?? 16
    this.maxConnections = init.maxConnections ?? 64
    this.queryTimeoutMs = init.queryTimeoutMs
    this.encrypter = init.encrypter ?? 'plaintext'
    this.transport = init.transport ?? 'latency'
    this.uplinkBytesPerS = init.uplinkBytesPerS ?? Infinity
    if (!(this.uplinkBytesPerS > 0)) throw new SimConfigError(`uplinkBytesPerS ${this.uplinkBytesPerS} must be > 0`)
    if (this.transport === 'memory' && this.uplinkBytesPerS !== Infinity) throw new SimConfigError("uplinkBytesPerS needs transport 'latency' (@libp2p/memory has no rate limit)")
    this.onBatch = init.onBatch
    this.kad = init.kad ?? {}
    this.selfWalk = init.selfWalk ?? false
    this.joinSettleMs = init.joinSettleMs ?? 5000
    if (!(this.joinSettleMs >= 0)) throw new SimConfigError(`joinSettleMs ${this.joinSettleMs} must be ≥ 0`)
  }

  /** Starts `n` nodes and bootstraps them into one DHT. */
  static async create (n: number, init: DhtSwarmInit = {}): Promise<DhtSwarm> {
    if (!Number.isInteger(n) || n < 2) throw new SimConfigError(`a DHT swarm needs at least 2 nodes, got ${n}`)
    // On real time N nodes sharing one event loop trip network timeouts with CPU lag (sessions 6–8).
    if (!virtualTimeActive()) throw new SimStateError('DhtSwarm runs on virtual time only: call it inside withVirtualTime (web/src/sim/virtual-time.ts)')
    const s = new DhtSwarm(init.model ?? new NetModel(), init.swarm ?? 'sim', init)
    await s.join(n)
    return s
  }

  get live (): SimPeer[] {
    return this.peers.filter(p => p.alive)
  }

  /**
   * Starts `count` new nodes in batches; each dials a few nodes live before its batch and looks
   * up its own id. A batch is never larger than the live swarm it joins (1, 1, 2, 4, … up to
   * `startConcurrency` for a new swarm), so every joiner has someone to dial and each live node
   * takes about `bootstrapPeers` dials per batch. (Bootstrapping a batch from its own members
   * instead split a new swarm into separate DHTs of `startConcurrency` nodes, and more than 10
   * joiners dialling the same node at once were refused by libp2p's
   * `maxIncomingPendingConnections`, leaving them alone: their queries then waited for a first
   * routing-table peer until they timed out — the "stall" measured in session 6.)
   */
  async join (count: number): Promise<SimPeer[]> {
    const fresh: SimPeer[] = []
    while (fresh.length < count) {
      const live = this.live
      const size = Math.min(count - fresh.length, this.startConcurrency, Math.max(1, live.length))
      // Latency and bootstrap picks in order, before any start: the seed decides them, not the
      // order in which concurrent starts finish.
      const plans = Array.from({ length: size }, () => ({ index: this.started++, latencyMs: this.model.latencyMs(), boot: this.model.pick(live.length, this.bootstrapPeers).map(i => live[i]) }))
      const keySeeds = plans.map(p => this.model.keySeed(p.index))
      const started = await Promise.all(plans.map(async (p, j) => await this.startNode(p.index, p.latencyMs, keySeeds[j])))
      fresh.push(...started)
      this.peers.push(...started)
      await Promise.all(started.map(async (peer, j) => { await this.dialAll(peer, plans[j].boot) }))
      // A joiner that reached none of its picks (lost or refused dials) tries others, as a node
      // works down its bootstrap list; one that still reaches nobody stays alone.
      for (let retry = 0; retry < BOOTSTRAP_RETRIES && live.length > 0; retry++) {
        const alone = started.filter(p => p.node.getConnections().length === 0)
        if (alone.length === 0) break
        const picks = alone.map(() => this.model.pick(live.length, this.bootstrapPeers).map(i => live[i]))
        await Promise.all(alone.map(async (peer, j) => { await this.dialAll(peer, picks[j]) }))
      }
      // Each joiner's kad-dht walks towards its own id (its initial self-query): it learns its
      // neighbours and they learn it. The batch gets `joinSettleMs` of network time for that
      // before the next one bootstraps from it (free on virtual time: nothing else runs).
      // `selfWalk` adds the walk the sim ran itself before session 9, to compare.
      if (this.selfWalk) {
        await Promise.all(started.filter(p => p.node.getConnections().length > 0).map(async p => {
          await drain(p.node.services.dht.getClosestPeers(p.node.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(JOIN_LOOKUP_TIMEOUT_MS) }))
        }))
      }
      await sleep(this.joinSettleMs)
      this.onBatch?.(this.started)
    }
    return fresh
  }

  private async startNode (index: number, latencyMs: number, keySeed: Uint8Array): Promise<SimPeer> {
    const privateKey = await generateKeyPairFromSeed('Ed25519', keySeed)
    const addr = `/memory/${this.swarm}-${index}`
    const model = this.model
    const node = await createLibp2p({
      privateKey,
      addresses: { listen: [addr] },
      transports: [this.transport === 'memory' ? memory({ latency: latencyMs }) : this.network.transport(latencyMs, this.uplinkBytesPerS)],
      connectionEncrypters: [this.encrypter === 'noise' ? noise() : plaintext()],
      streamMuxers: [yamux()],
      // A lost dial never opens, as a SYN lost beyond every retry would.
      connectionGater: { denyDialPeer: () => model.dialLost() },
      connectionManager: { maxConnections: this.maxConnections },
      connectionMonitor: { enabled: false },
      services: { identify: identify(), ping: ping(), dht: swarmKadDht(this.swarm, true, undefined, this.kad) }
    }).catch((e: Error) => { throw new SimStateError(`sim node ${index} did not start: ${e.message}`) })
    const dht = new SwarmDht(node as unknown as WebSwarmNode, privateKey, realClock, { queryTimeoutMs: this.queryTimeoutMs })
    return { index, id: node.peerId.toString(), addr: `${addr}/p2p/${node.peerId.toString()}`, latencyMs, node, dht, alive: true }
  }

  private async dialAll (peer: SimPeer, boot: SimPeer[]): Promise<void> {
    // A lost or refused bootstrap dial leaves the others; a node that reached none stays alone
    // (its lookups then fail, and are counted as failures).
    await Promise.all(boot.map(async b => await peer.node.dial(multiaddr(b.addr), { signal: AbortSignal.timeout(10_000) }).catch(() => undefined)))
  }

  /** Stops `fraction` of the live nodes (seeded pick) and starts as many new ones. */
  async churn (fraction: number): Promise<{ left: SimPeer[], joined: SimPeer[] }> {
    if (!(fraction >= 0 && fraction <= 1)) throw new SimConfigError(`churn fraction ${fraction} must be in [0, 1]`)
    const live = this.live
    const left = this.model.pick(live.length, Math.round(live.length * fraction)).map(i => live[i])
    await this.leave(left)
    const joined = await this.join(left.length)
    return { left, joined }
  }

  /** Stops these nodes (they vanish: no goodbye, as a closed tab). */
  async leave (peers: SimPeer[]): Promise<void> {
    for (const p of peers) p.alive = false
    await Promise.all(peers.map(async p => { await p.node.stop() }))
  }

  /** `by` provides `key` through SwarmDht; false when no DHT server stored it. */
  async provide (by: SimPeer, key: string): Promise<boolean> {
    try {
      await by.dht.provide(key)
      return true
    } catch {
      return false
    }
  }

  /**
   * `by` looks for a provider of `key` through kad-dht's findProviders (what SwarmDht.findProviders
   * runs) and reports the query depth at which `want` was first returned. Depth: a peer from the
   * node's own routing table is hop 1; a peer first named by a hop-h peer is hop h + 1.
   */
  async findProvider (by: SimPeer, key: string, want: string): Promise<LookupResult> {
    const cid = await providerCid(key)
    const depth = new Map<string, number>()
    let deepest = 0
    const t0 = Date.now()
    try {
      for await (const ev of by.node.services.dht.findProviders(cid, { signal: AbortSignal.timeout(this.queryTimeoutMs ?? FIND_TIMEOUT_MS) }) as AsyncIterable<QueryEvent>) {
        if (ev.name === 'SEND_QUERY' && !depth.has(ev.to.toString())) depth.set(ev.to.toString(), 1)
        if (ev.name === 'PEER_RESPONSE') {
          const d = depth.get(ev.from.toString()) ?? 1
          deepest = Math.max(deepest, d)
          for (const c of ev.closer) if (!depth.has(c.id.toString())) depth.set(c.id.toString(), d + 1)
        }
        if (ev.name === 'PROVIDER' && ev.providers.some(p => p.id.toString() === want)) {
          // Answered from the local provider store: zero hops.
          const hops = ev.from.equals(by.node.peerId) ? 0 : depth.get(ev.from.toString()) ?? 1
          return { found: true, hops, ms: Date.now() - t0 }
        }
      }
    } catch {
      // A timed-out or failed query counts as not found.
    }
    return { found: false, hops: deepest, ms: Date.now() - t0 }
  }

  /** Live nodes each node's routing table holds, averaged (a health figure for reports). */
  meanRoutingTableSize (): number {
    const live = this.live
    let sum = 0
    for (const p of live) sum += (p.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
    return live.length === 0 ? 0 : sum / live.length
  }

  /**
   * Groups of live nodes joined by open connections (1 for one swarm): a node that reached nobody
   * is a group of its own, and a swarm bootstrapped in pieces shows several.
   */
  connectedGroups (): number {
    const live = this.live
    const at = new Map(live.map((p, i) => [p.id, i]))
    const parent = live.map((_, i) => i)
    const root = (i: number): number => { while (parent[i] !== i) i = parent[i] = parent[parent[i]]; return i }
    for (const [i, p] of live.entries()) {
      for (const c of p.node.getConnections()) {
        const j = at.get(c.remotePeer.toString())
        if (j !== undefined) parent[root(i)] = root(j)
      }
    }
    return new Set(live.map((_, i) => root(i))).size
  }

  async stop (): Promise<void> {
    await this.leave(this.live)
  }
}

/** Waits `ms` of the (virtual) clock. */
async function sleep (ms: number): Promise<void> {
  await new Promise<void>(resolve => setTimeout(resolve, ms))
}

async function drain (it: AsyncIterable<unknown>): Promise<void> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    for await (const _ of it) { /* the walk fills the routing table */ }
  } catch {
    // A bootstrap walk that times out has still added whoever answered.
  }
}

