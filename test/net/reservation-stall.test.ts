/**
 * PeerManager re-reserves when libp2p's circuit transport gave up: a relay we are connected to but
 * hold no reservation on (while we hold fewer than we want) is hung up after RESERVATION_STALL_MS,
 * so the redial reserves again; a relay we do not need a reservation on is left alone.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { PeerManager, RESERVATION_STALL_MS } from '../../web/src/net/peers.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'

const SELF = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const R1 = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const R2 = '12D3KooWLHJ7Gn9twFvaj2BwG8mYr8tYAsyEBoLR9Z8VgnbVbJpS'
const R3 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const addr = (id: string, port: number): string => `/ip4/127.0.0.1/tcp/${port}/ws/p2p/${id}`

/** A node that connects to every relay at once and holds reservations on `reserved`. */
function fakeNode (reserved: Set<string>): { node: WebSwarmNode, hungUp: string[], dead: Set<string>, drop: (id: string) => void } {
  const target = new EventTarget()
  const hungUp: string[] = []
  const dead = new Set<string>()
  const node = {
    peerId: peerIdFromString(SELF),
    dial: async (addrs: Multiaddr[]) => { if (addrs.some(a => dead.has(a.getComponents().findLast(c => c.name === 'p2p')?.value ?? ''))) throw new Error('gone') },
    getConnections: () => [],
    getMultiaddrs: (): Multiaddr[] => [...reserved].map(r => multiaddr(`${addr(r, 1)}/p2p-circuit/p2p/${SELF}`)),
    hangUp: async (peer: { toString: () => string }) => {
      hungUp.push(peer.toString())
      target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peer }))
    },
    services: { dht: { provide: async function * () {}, findProviders: async function * () {} } },
    addEventListener: target.addEventListener.bind(target),
    removeEventListener: target.removeEventListener.bind(target)
  } as unknown as WebSwarmNode
  const drop = (id: string): void => { dead.add(id); target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(id) })) }
  return { node, hungUp, dead, drop }
}

afterEach(() => { vi.useRealTimers() })

describe('PeerManager: stalled relay reservations', () => {
  it('hangs up a connected relay it holds no reservation on once RESERVATION_STALL_MS pass, while short of reservations', async () => {
    vi.useFakeTimers()
    const reserved = new Set([R1])
    const { node, hungUp } = fakeNode(reserved)
    const pm = new PeerManager(node, { bootstrap: [addr(R1, 1), addr(R2, 2)], swarm: 'default', targetPeers: 0, log: () => {} })
    pm.start()
    await vi.advanceTimersByTimeAsync(RESERVATION_STALL_MS - 2_000)
    expect(hungUp).toEqual([])
    await vi.advanceTimersByTimeAsync(3_000)
    expect(hungUp).toEqual([R2])
    // Redialled (backoff) and reserved this time: left alone from then on.
    reserved.add(R2)
    await vi.advanceTimersByTimeAsync(3 * RESERVATION_STALL_MS)
    expect(hungUp).toEqual([R2])
    pm.stop()
  })

  it('does not count a reservation on a relay that disconnected (its address may linger)', async () => {
    vi.useFakeTimers()
    const reserved = new Set([R1, R2])
    const { node, hungUp, drop } = fakeNode(reserved)
    const pm = new PeerManager(node, { bootstrap: [addr(R1, 1), addr(R2, 2), addr(R3, 3)], swarm: 'default', targetPeers: 0, log: () => {} })
    pm.start()
    await vi.advanceTimersByTimeAsync(RESERVATION_STALL_MS + 2_000)
    expect(hungUp).toEqual([])
    // R1 dies; its circuit address is still listed. R3, connected for long without a
    // reservation, is first left to libp2p's own re-reservation (hanging it up at once cut that
    // attempt short), and redialled only once we have been short for RESERVATION_STALL_MS.
    drop(R1)
    await vi.advanceTimersByTimeAsync(RESERVATION_STALL_MS - 2_000)
    expect(hungUp).toEqual([])
    await vi.advanceTimersByTimeAsync(3_000)
    expect(hungUp).toEqual([R3])
    pm.stop()
  })

  it('leaves a third relay alone once two reservations are held', async () => {
    vi.useFakeTimers()
    const { node, hungUp } = fakeNode(new Set([R1, R2]))
    const pm = new PeerManager(node, { bootstrap: [addr(R1, 1), addr(R2, 2), addr(R3, 3)], swarm: 'default', targetPeers: 0, log: () => {} })
    pm.start()
    await vi.advanceTimersByTimeAsync(3 * RESERVATION_STALL_MS)
    expect(hungUp).toEqual([])
    pm.stop()
  })
})
