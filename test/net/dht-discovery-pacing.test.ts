/**
 * PeerManager paces its DHT discovery: a round that finds no new member doubles the wait before
 * the next (15 s → DHT_DISCOVERY_MAX_INTERVAL_MS), one that finds a member or a relay reconnecting
 * brings it back to 15 s. At 15 s flat the rounds were most of an idle swarm's CPU (BENCHMARKS.md
 * § Scale, relay failover's steady state).
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DHT_DISCOVERY_MAX_INTERVAL_MS, PeerManager } from '../../web/src/net/peers.ts'
import type { WebSwarmNode } from '../../web/src/net/node.ts'

const SELF = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const R1 = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const P1 = '12D3KooWLHJ7Gn9twFvaj2BwG8mYr8tYAsyEBoLR9Z8VgnbVbJpS'
const P2 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const RELAY = `/ip4/127.0.0.1/tcp/1/ws/p2p/${R1}`

/** A node on one relay whose DHT answers `providers`; `rounds` holds each findProviders' time (ms since start). */
function fakeNode (providers: string[], rounds: number[], t0: number): { node: WebSwarmNode, drop: () => void } {
  const target = new EventTarget()
  const node = {
    peerId: peerIdFromString(SELF),
    dial: async () => {},
    getConnections: () => [],
    getMultiaddrs: (): Multiaddr[] => [multiaddr(`${RELAY}/p2p-circuit/p2p/${SELF}`)],
    services: {
      dht: {
        provide: async function * () {},
        findProviders: async function * () {
          rounds.push(Date.now() - t0)
          yield { name: 'PROVIDER', providers: providers.map(p => ({ id: peerIdFromString(p), multiaddrs: [] })) }
        }
      }
    },
    addEventListener: target.addEventListener.bind(target),
    removeEventListener: target.removeEventListener.bind(target)
  } as unknown as WebSwarmNode
  return { node, drop: () => { target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(R1) })) } }
}

afterEach(() => { vi.useRealTimers() })

describe('PeerManager: DHT discovery pacing', () => {
  it('doubles the wait after rounds that find no one new, up to the cap, and starts over on a new member or a reconnect', async () => {
    vi.useFakeTimers()
    const t0 = Date.now()
    const rounds: number[] = []
    const providers = [P1]
    const { node, drop } = fakeNode(providers, rounds, t0)
    const pm = new PeerManager(node, { bootstrap: [RELAY], swarm: 'default', targetPeers: 0, reservationPowBits: 0, log: () => {} })
    pm.start()
    await vi.advanceTimersByTimeAsync(16_000)
    // On connecting: at once (P1 is new) and the fast start (1, 3, 7 s); then the first paced round at 15 s.
    expect(rounds).toEqual([0, 1_000, 3_000, 7_000, 15_000])
    rounds.length = 0
    // Nothing new since: 30, 60, 120, 240 s apart, then the cap.
    await vi.advanceTimersByTimeAsync(15_000 + 30_000 + 60_000 + 120_000 + 240_000 + DHT_DISCOVERY_MAX_INTERVAL_MS - 16_000 + 1_000)
    expect(rounds).toEqual([45_000, 105_000, 225_000, 465_000, 465_000 + DHT_DISCOVERY_MAX_INTERVAL_MS])
    // A round that finds a new member: the next is 15 s later, and pacing starts over.
    providers.push(P2)
    rounds.length = 0
    await vi.advanceTimersByTimeAsync(DHT_DISCOVERY_MAX_INTERVAL_MS + 15_000 + 30_000)
    const capped = 465_000 + 2 * DHT_DISCOVERY_MAX_INTERVAL_MS
    expect(rounds).toEqual([capped, capped + 15_000, capped + 45_000])
    // The relay drops and comes back (redial after ~250 ms backoff): a round at once, then 15 s
    // later again; no fast start, which is for a newcomer (this peer knows two members).
    await vi.advanceTimersByTimeAsync(DHT_DISCOVERY_MAX_INTERVAL_MS)
    rounds.length = 0
    const before = Date.now() - t0
    drop()
    await vi.advanceTimersByTimeAsync(16_000)
    expect(rounds.length).toBe(2)
    expect(rounds[1] - rounds[0]).toBe(15_000)
    expect(rounds[0] - before).toBeLessThan(1_000)
    pm.stop()
  })
})
