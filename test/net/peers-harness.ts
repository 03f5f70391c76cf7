/**
 * Test harness: a relay and N Node peers on 127.0.0.1, each connected to the relay with a live
 * reservation. Everything is torn down by stop(); every wait is bounded.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { createPeer, createRelay, type PeerInit, type RelayInit, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'
import { waitForReservation } from '../../web/src/net/peers.ts'

export interface TestSwarm {
  relay: RelayNode
  /** The relay's ws multiaddr (with /p2p/<id>). */
  relayAddr: string
  peers: WebSwarmNode[]
  keys: PrivateKey[]
  stop: () => Promise<void>
}

/** Polls `cond` every `everyMs` until true or `timeoutMs` passes (then throws naming `what`). */
export async function until (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/**
 * Waits until the relay's gossip mesh for `topic` holds every peer and every peer's holds the
 * relay. Subscriptions alone are not enough: a message the relay accepts before its heartbeat has
 * grafted a peer is forwarded to nobody, and the IHAVE of that heartbeat skips the peer it has
 * just grafted, so a test with anti-entropy off would never see it (a CI failure, session 12).
 */
export async function untilMeshed (s: Pick<TestSwarm, 'relay' | 'peers'>, topic: string, timeoutMs = 20_000): Promise<void> {
  const relayId = s.relay.peerId.toString()
  // The implementation has getMeshPeers; the GossipSub interface node.ts exposes does not list it.
  const mesh = (n: WebSwarmNode | RelayNode): string[] => (n.services.pubsub as unknown as { getMeshPeers: (t: string) => string[] }).getMeshPeers(topic)
  await until('gossip meshes', () => s.peers.every(p => mesh(p).includes(relayId)) && mesh(s.relay).length === s.peers.length, timeoutMs)
}

export async function startSwarm (n: number, opts: { relay?: Partial<RelayInit>, peer?: PeerInit, connect?: boolean } = {}): Promise<TestSwarm> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [], ...opts.relay })
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const keys: PrivateKey[] = []
  const peers: WebSwarmNode[] = []
  for (let i = 0; i < n; i++) {
    const key = await generateKeyPair('Ed25519')
    keys.push(key)
    peers.push(await createPeer({ iceServers: [], ...opts.peer, privateKey: key }))
  }
  if (opts.connect ?? true) {
    await Promise.all(peers.map(async p => {
      await p.dial(relay.getMultiaddrs()[0])
      await waitForReservation(p)
    }))
  }
  return {
    relay,
    relayAddr,
    peers,
    keys,
    stop: async () => {
      await Promise.allSettled(peers.map(async p => { await p.stop() }))
      await relay.stop()
    }
  }
}
