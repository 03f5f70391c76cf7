/**
 * WebSwarm net layer: join a swarm and get a node, its peers, the DHT and the swarm CRDT.
 * Knows nothing of ML. The swarm layer builds roles on `handle`, `dht` and `doc`.
 *
 * @example
 * ```ts
 * const swarm = await joinSwarm({ bootstrapUrl: '/bootstrap' })       // browser
 * await swarm.setSelf({ gflops: 12 })                                   // signed peers entry
 * await swarm.handle(MY_PROTOCOL, async (stream, conn) => { … })      // limits + timeout enforced
 * await swarm.dht.put(modelKey('tiny'), bytes)                         // signed, expiring record
 * ```
 */
export * from './errors.ts'
export * from './protocols.ts'
export { createPeer, createRelay, DEFAULT_SWARM, DEFAULT_RELAY_LIMITS, type WebSwarmNode, type RelayNode, type PeerInit, type RelayInit, type RelayLimits } from './node.ts'
export { PeerManager, connectionKind, dialThroughRelay, directConnections, isNoReservation, waitForReservation, type ConnectionKind, type RelayDialOptions } from './peers.ts'
export { SwarmDht, blockKey, expertKey, modelKey, peerKey, type Announcement } from './dht/index.ts'
export { SwarmDoc, CrdtSync, type PeerEntry } from './crdt/index.ts'
export { joinSwarm, type JoinInit, type Swarm } from './swarm.ts'
