/**
 * PeerManager's redial of a lost relay: a dial refused outright (the relay's port is closed while
 * it restarts) is retried within RELAY_DOWN_REDIAL_MAX_MS however many failed before, so a
 * restarted relay gets its peers back within ~2 s of listening; a dial that timed out (the relay
 * is up but swamped) still backs off to the 10 s ceiling, which spreads the crowd; and a peer
 * gives one address 15 s, not libp2p's 6 s, so a restarted relay re-admitting everyone at once
 * finishes the handshakes it started instead of seeing them abandoned and redone.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import { PeerManager, RELAY_DOWN_REDIAL_MAX_MS, RELAY_REFUSED_WITHIN_MS, relayRedialDelay } from '../../web/src/net/peers.ts'
import { createPeer, PEER_ADDRESS_DIAL_TIMEOUT_MS, type WebSwarmNode } from '../../web/src/net/node.ts'

const SELF = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const R1 = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const R2 = '12D3KooWLHJ7Gn9twFvaj2BwG8mYr8tYAsyEBoLR9Z8VgnbVbJpS'
const addr = (id: string, port: number): string => `/ip4/127.0.0.1/tcp/${port}/ws/p2p/${id}`
/** The old (and still the timed-out) ceiling, ms; the jitter is ±20 %. */
const TIMED_OUT_MAX_MS = 10_000

/**
 * A node whose dials to R1 fail as `mode` says (refused at once, or timed out after `hangMs` of the
 * fake clock) and succeed once `up`; R2 always answers. Records when each R1 dial began.
 */
function fakeNode (hangMs: number): { node: WebSwarmNode, r1Dials: number[], setUp: (up: boolean) => void, drop: () => void } {
  const target = new EventTarget()
  const r1Dials: number[] = []
  let up = false
  const node = {
    peerId: peerIdFromString(SELF),
    dial: async (addrs: Multiaddr[]) => {
      if (!addrs.some(a => a.toString().includes(R1))) return
      r1Dials.push(Date.now())
      if (up) return
      if (hangMs > 0) await new Promise(resolve => setTimeout(resolve, hangMs))
      throw new Error(hangMs > 0 ? 'The operation was aborted due to timeout' : 'Received network error or non-101 status code.')
    },
    getConnections: () => [],
    getMultiaddrs: (): Multiaddr[] => [],
    hangUp: async () => {}, // R2 holds no reservation: after RESERVATION_STALL_MS it is hung up (not this test's subject)
    services: { dht: { provide: async function * () {}, findProviders: async function * () {} } },
    addEventListener: target.addEventListener.bind(target),
    removeEventListener: target.removeEventListener.bind(target)
  } as unknown as WebSwarmNode
  const drop = (): void => { target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(R1) })) }
  return { node, r1Dials, setUp: (u) => { up = u }, drop }
}

const gaps = (t: number[]): number[] => t.slice(1).map((x, i) => x - t[i])

afterEach(() => { vi.useRealTimers() })

describe('relayRedialDelay', () => {
  it('caps a refused dial at RELAY_DOWN_REDIAL_MAX_MS and a timed-out one at the usual ceiling, ±20 % jitter', () => {
    const low = (): number => 0
    const high = (): number => 1
    expect(relayRedialDelay(1, 5, high)).toBeCloseTo(250 * 1.2)
    expect(relayRedialDelay(3, 5, low)).toBeCloseTo(1000 * 0.8)
    for (const failures of [4, 10, 50]) {
      expect(relayRedialDelay(failures, RELAY_REFUSED_WITHIN_MS - 1, high)).toBeCloseTo(RELAY_DOWN_REDIAL_MAX_MS * 1.2)
      expect(relayRedialDelay(failures, RELAY_REFUSED_WITHIN_MS - 1, low)).toBeCloseTo(RELAY_DOWN_REDIAL_MAX_MS * 0.8)
    }
    expect(relayRedialDelay(10, RELAY_REFUSED_WITHIN_MS, low)).toBeCloseTo(TIMED_OUT_MAX_MS * 0.8)
    expect(relayRedialDelay(10, 6_000, high)).toBeCloseTo(TIMED_OUT_MAX_MS * 1.2)
  })
})

describe('PeerManager: redialling a lost relay', () => {
  it('redials a relay that refuses every dial within RELAY_DOWN_REDIAL_MAX_MS (+20 %) however long it is down, and reconnects when it listens again', async () => {
    vi.useFakeTimers()
    const { node, r1Dials, setUp, drop } = fakeNode(0)
    const log: string[] = []
    const pm = new PeerManager(node, { bootstrap: [addr(R1, 1), addr(R2, 2)], swarm: 'default', targetPeers: 0, reservationPowBits: 0, log: l => { log.push(l) } })
    pm.start()
    await vi.advanceTimersByTimeAsync(10)
    expect(r1Dials).toHaveLength(1) // the start's dial: refused
    // Down for 60 s: the gaps grow 250 → 500 → 1000 → 2000 ms and stay there.
    await vi.advanceTimersByTimeAsync(60_000)
    const g = gaps(r1Dials)
    expect(g.length).toBeGreaterThan(25)
    expect(Math.max(...g)).toBeLessThanOrEqual(RELAY_DOWN_REDIAL_MAX_MS * 1.2 + 1)
    expect(Math.max(...g.slice(-5))).toBeGreaterThanOrEqual(RELAY_DOWN_REDIAL_MAX_MS * 0.8)
    // It listens again: the next try connects, within the ceiling.
    setUp(true)
    const n = r1Dials.length
    await vi.advanceTimersByTimeAsync(RELAY_DOWN_REDIAL_MAX_MS * 1.2 + 1)
    expect(r1Dials.length).toBe(n + 1)
    expect(log.some(l => l.includes(`relay ${R1}: reconnected after`))).toBe(true)
    // Dropped again later: the first redial comes after the initial delay (failures were reset).
    setUp(false)
    drop()
    await vi.advanceTimersByTimeAsync(250 * 1.2 + 1)
    expect(r1Dials.length).toBe(n + 2)
    pm.stop()
  })

  it('backs off to the 10 s ceiling from a relay whose dials time out (up but swamped)', async () => {
    vi.useFakeTimers()
    const { node, r1Dials } = fakeNode(6_000)
    const pm = new PeerManager(node, { bootstrap: [addr(R1, 1), addr(R2, 2)], swarm: 'default', targetPeers: 0, reservationPowBits: 0, log: () => {} })
    pm.start()
    await vi.advanceTimersByTimeAsync(200_000)
    // Each gap: 6 s of the hanging dial plus the backoff, which reaches 8-12 s by the 6th failure.
    const g = gaps(r1Dials).slice(6)
    expect(g.length).toBeGreaterThan(3)
    for (const x of g) {
      expect(x).toBeGreaterThanOrEqual(6_000 + TIMED_OUT_MAX_MS * 0.8)
      expect(x).toBeLessThanOrEqual(6_000 + TIMED_OUT_MAX_MS * 1.2 + 1)
    }
    pm.stop()
  })
})

describe('createPeer: a dial of one address', () => {
  it('may take PEER_ADDRESS_DIAL_TIMEOUT_MS (15 s), not libp2p\'s 6 s default', async () => {
    expect(PEER_ADDRESS_DIAL_TIMEOUT_MS).toBeGreaterThan(6_000)
    const peer = await createPeer({ iceServers: [] })
    try {
      // libp2p's dial queue applies it to each address (connection-manager/dial-queue.js).
      const queue = (peer as unknown as { components: { connectionManager: { dialQueue: { addressDialTimeout: number } } } }).components.connectionManager.dialQueue
      expect(queue.addressDialTimeout).toBe(PEER_ADDRESS_DIAL_TIMEOUT_MS)
    } finally {
      await peer.stop()
    }
  })
})
