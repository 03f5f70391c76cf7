import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PeerManager, directConnections, connectionKind } from '../../web/src/net/peers.ts'
import { startSwarm, until, type TestSwarm } from './peers-harness.ts'

describe('PeerManager: relay + 4 Node peers', () => {
  let s: TestSwarm
  let managers: PeerManager[]
  const logs: string[] = []

  beforeAll(async () => {
    s = await startSwarm(4, { connect: false, peer: { discoveryIntervalMs: 1000 } })
    managers = s.peers.map(p => new PeerManager(p, { bootstrap: [s.relayAddr], swarm: 'default', targetPeers: 3, log: l => logs.push(l) }))
    for (const m of managers) m.start()
  })
  afterAll(async () => {
    for (const m of managers ?? []) m.stop()
    await s?.stop()
  })

  it('every peer reaches the relay, takes a reservation, and holds direct WebRTC links to all others', async () => {
    await Promise.all(managers.map(async m => { await m.ready() }))
    await until('full direct mesh', () => managers.every(m => m.directPeers().length === 3), 20_000)
    for (const p of s.peers) {
      for (const c of directConnections(p)) {
        expect(connectionKind(c)).toBe('webrtc')
        expect(c.limits).toBeUndefined()
      }
    }
  })

  it('a lost direct link is redialled', async () => {
    const [a, b] = s.peers
    await a.hangUp(b.peerId)
    await until('link a-b restored', () => managers[0].directPeers().includes(b.peerId.toString()), 15_000)
  })
})
