/**
 * A DHT client never takes a fellow client (reachable only through a relay) as a routing-table
 * contact: kad-dht pinged every provider a lookup returned before adding it, so each swarm
 * discovery round dialled WebRTC through the relay to every other peer (BENCHMARKS.md § Scale,
 * relay failover's steady state).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { SwarmDht } from '../../web/src/net/dht/index.ts'
import { dhtClientPeerMapper, type WebSwarmNode } from '../../web/src/net/node.ts'
import { startSwarm, type TestSwarm } from './peers-harness.ts'

/** kad-dht's routing table, which its public type does not show. */
interface RoutingTable { size: number, routingTableUpdateQueue: { onIdle: () => Promise<void> }, pingNewContactQueue: { onIdle: () => Promise<void> } }
const routingTable = (p: WebSwarmNode): RoutingTable => (p.services.dht as unknown as { routingTable: RoutingTable }).routingTable

describe('dhtClientPeerMapper', () => {
  it('drops the addresses of a relay-only peer, keeps a directly dialable one whole', async () => {
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const relay = '/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWLRPJAA5o6W6pWv5m6uQxNHaqMdAd4cAGjvb7ZwYNAbCd'
    const relayOnly = [multiaddr(`${relay}/p2p-circuit`), multiaddr(`${relay}/p2p-circuit/webrtc`)]
    expect(dhtClientPeerMapper({ id, multiaddrs: relayOnly }).multiaddrs).toEqual([])
    const mixed = [multiaddr('/ip4/127.0.0.1/tcp/4002/ws'), ...relayOnly]
    expect(dhtClientPeerMapper({ id, multiaddrs: mixed }).multiaddrs).toEqual(mixed)
    expect(dhtClientPeerMapper({ id, multiaddrs: [] }).multiaddrs).toEqual([])
  })
})

describe('a DHT lookup across relay + 3 Node peers', () => {
  let s: TestSwarm
  beforeAll(async () => { s = await startSwarm(3) })
  afterAll(async () => { await s?.stop() })

  it('finds the other peers as providers without dialling them or taking them as contacts', async () => {
    const dhts = s.peers.map((p, i) => new SwarmDht(p, s.keys[i]))
    await Promise.all(dhts.slice(0, 2).map(async d => { await d.provide('/ws-blocks/tiny/9') }))
    const reader = s.peers[2]
    const found = await dhts[2].findProviders('/ws-blocks/tiny/9')
    expect(found.sort()).toEqual(s.peers.slice(0, 2).map(p => p.peerId.toString()).sort())
    // Every contact kad-dht queued from the lookup's answers has been pinged and added (or not).
    await routingTable(reader).routingTableUpdateQueue.onIdle()
    await routingTable(reader).pingNewContactQueue.onIdle()
    const relayId = s.relay.peerId.toString()
    expect(reader.getConnections().map(c => c.remotePeer.toString()).filter(p => p !== relayId)).toEqual([])
    expect(routingTable(reader).size).toBe(1) // the relay, the one DHT server
  })
})
