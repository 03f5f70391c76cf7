import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { SwarmDht } from '../../web/src/net/dht/index.ts'
import { createPeer, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'
import { waitForReservation } from '../../web/src/net/peers.ts'
import { DhtDirectory } from '../../web/src/swarm/dht-directory.ts'
import { Libp2pTransport } from '../../web/src/swarm/transport/libp2p.ts'

export interface SwarmTestPeer {
  node: WebSwarmNode
  transport: Libp2pTransport
  directory: DhtDirectory
  /** The peer's identity key (signs its swarm-doc entries). */
  key: PrivateKey
}

/**
 * A Node peer on 127.0.0.1 holding a reservation on `relay` (the node, or its multiaddr from
 * another process), with the swarm's transport and DHT directory: what the libp2p swarm test and
 * bench:inference build servers and clients from.
 */
export async function joinTestPeer (relay: RelayNode | string, numBlocks: number): Promise<SwarmTestPeer> {
  const key = await generateKeyPair('Ed25519')
  const node = await createPeer({ privateKey: key, iceServers: [], discoveryIntervalMs: 600_000 })
  const relayAddr = typeof relay === 'string' ? relay : relay.getMultiaddrs()[0].toString()
  await node.dial(multiaddr(relayAddr))
  await waitForReservation(node)
  return { node, key, transport: new Libp2pTransport(node, { relayAddr }), directory: new DhtDirectory(new SwarmDht(node, key), node.peerId.toString(), { numBlocks }) }
}
