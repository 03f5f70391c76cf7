import { afterEach, describe, expect, it } from 'vitest'
import { createPeer, createRelay, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'

/**
 * An idle node's periodic work (bench:net --idle): the connection monitor's pings were the largest
 * share, one new stream per connection and end every 10 s (a new data channel on a WebRTC link).
 * Peers and relays ping every 30 s, and a missed ping never aborts a connection.
 */
interface MonitorFields { pingIntervalMs: number, abortConnectionOnPingFailure: boolean }

function monitorOf (node: WebSwarmNode | RelayNode): MonitorFields {
  // libp2p's ConnectionMonitor keeps its settings in private fields; the component is registered as 'connectionMonitor'.
  const m = (node as unknown as { components: { connectionMonitor?: MonitorFields } }).components.connectionMonitor
  if (m === undefined) throw new Error('the node runs no connection monitor')
  return m
}

describe('idle timers', () => {
  const nodes: Array<WebSwarmNode | RelayNode> = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

  it('peers and relays ping each connection every 30 s and never abort on a missed ping', async () => {
    const peer = await createPeer({ iceServers: [] })
    nodes.push(peer)
    const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
    nodes.push(relay)
    for (const n of [peer, relay]) {
      expect(monitorOf(n).pingIntervalMs).toBe(30_000)
      expect(monitorOf(n).abortConnectionOnPingFailure).toBe(false)
    }
  })
})
