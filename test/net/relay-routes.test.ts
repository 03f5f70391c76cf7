/**
 * Any relay, not the first: WebRTC dials are signalled through whichever relay works
 * (dialThroughRelay over signallingRelays' routes), a CLI peer joins through any relay that
 * answers (dialAnyRelay), and a --bootstrap URL that is down does not stop the others. Stand-in
 * nodes: each relay's behaviour is scripted, nothing waits on real time (a ManualClock times the
 * NO_RESERVATION backoff and the tests never advance it).
 */
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { BootstrapUnreachableError } from '../../web/src/net/errors.ts'
import { dialAnyRelay, dialThroughRelay, signallingRelays } from '../../web/src/net/peers.ts'
import { resolveBootstrap } from '../../web/src/cli/swarm-node.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const A = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const B = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const C = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const PEER = '12D3KooWHiPAyWeWrQbMBrWiA1TfMw7DT32y8dy7xvuXa3UtfmfL'
const addr = (id: string, port: number): string => `/ip4/127.0.0.1/tcp/${port}/ws/p2p/${id}`
const RA = addr(A, 9001)
const RB = addr(B, 9002)
const RC = addr(C, 9003)

function wsConn (id: string, port: number): Connection {
  return { remotePeer: { toString: () => id }, remoteAddr: { toString: () => addr(id, port) }, status: 'open', limits: undefined, streams: [] } as unknown as Connection
}
function webrtcConn (id: string): Connection {
  return { remotePeer: { toString: () => id }, remoteAddr: { toString: () => `/ip4/127.0.0.1/udp/5000/webrtc/p2p/${id}` }, status: 'open', limits: undefined, streams: [] } as unknown as Connection
}

/** A node whose dial through relay `id` does what `through[id]` says; records the relays tried. */
function scripted (through: Record<string, 'ok' | 'no-reservation' | 'dead'>, conns: Connection[] = [], peerCircuits: string[] = []) {
  const tried: string[] = []
  const node = {
    dial: async (ma: Multiaddr | Multiaddr[]) => {
      const s = (Array.isArray(ma) ? ma[0] : ma).toString()
      const relay = s.split('/p2p-circuit')[0].split('/p2p/')[1]
      tried.push(relay)
      const what = through[relay] ?? 'dead'
      if (what === 'ok') return webrtcConn(PEER)
      if (what === 'no-reservation') throw new Error('failed to connect via relay with status NO_RESERVATION')
      throw new Error('connect ECONNREFUSED 127.0.0.1')
    },
    getConnections: () => conns,
    peerStore: { get: async () => ({ addresses: peerCircuits.map(a => ({ multiaddr: { toString: () => a } })) }) }
  }
  return { node, tried }
}

describe('signallingRelays', () => {
  it('puts connected relays first, those the peer is reserved on first among them, then the given order', async () => {
    const { node } = scripted({}, [wsConn(C, 9003), wsConn(B, 9002), webrtcConn(PEER)], [`${RB}/p2p-circuit/p2p/${PEER}`])
    // A is given but not connected: last. B and C are connected; the peer advertises B.
    expect(await signallingRelays(node as never, PEER, [RA, RC])).toEqual([RB, RC, RA])
    // Not reserved anywhere we know: connected in the given order (C given), then B (not given).
    const { node: n2 } = scripted({}, [wsConn(B, 9002), wsConn(C, 9003)])
    expect(await signallingRelays(n2 as never, PEER, [RA, RC])).toEqual([RC, RB, RA])
  })

  it('finds no route without a relay: dialThroughRelay says so', async () => {
    const { node } = scripted({})
    expect(await signallingRelays(node as never, PEER, [])).toEqual([])
    await expect(dialThroughRelay(node as never, [], PEER)).rejects.toThrow(/no relay to signal a dial/)
  })
})

describe('dialThroughRelay over several relays', () => {
  it('skips the first relay when it is dead and signals through the next in the same round', async () => {
    const { node, tried } = scripted({ [A]: 'dead', [B]: 'ok' })
    const c = await dialThroughRelay(node as never, [RA, RB], PEER, { attempts: 1, clock: new ManualClock() })
    expect(c.remotePeer.toString()).toBe(PEER)
    expect(tried).toEqual([A, B])
  })

  it('tries the next relay at once after NO_RESERVATION (the peer is reserved elsewhere), without backoff', async () => {
    const { node, tried } = scripted({ [A]: 'no-reservation', [C]: 'ok' }, [wsConn(A, 9001), wsConn(C, 9003)])
    // Given only A: C is found among our relay connections. The clock is never advanced, so a backoff would hang.
    await dialThroughRelay(node as never, RA, PEER, { clock: new ManualClock() })
    expect(tried).toEqual([A, C])
  })

  it('backs off only after every relay answered NO_RESERVATION, and throws after the retries', async () => {
    const clock = new ManualClock()
    const { node, tried } = scripted({ [A]: 'no-reservation', [B]: 'no-reservation' })
    let settled = false
    const dialing = dialThroughRelay(node as never, [RA, RB], PEER, { noReservationRetries: 1, clock }).finally(() => { settled = true })
    dialing.catch(() => {})
    while (tried.length < 2) await new Promise(resolve => setImmediate(resolve))
    for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
    expect(settled).toBe(false) // waiting out the 250 ms backoff on the manual clock
    expect(tried).toEqual([A, B])
    clock.advance(250)
    await expect(dialing).rejects.toThrow(/NO_RESERVATION/)
    expect(tried).toEqual([A, B, A, B])
  })
})

describe('dialAnyRelay', () => {
  it('joins through the second relay when the first is down', async () => {
    const dialled: string[] = []
    const node = { dial: async (ma: Multiaddr[]) => { const s = ma[0].toString(); dialled.push(s); if (s === RA) throw new Error('connect ECONNREFUSED'); return wsConn(B, 9002) } }
    await dialAnyRelay(node as never, [RA, RB])
    expect(dialled).toEqual([RA, RB])
  })

  it('throws BootstrapUnreachableError naming every relay when none answers', async () => {
    const node = { dial: async () => { throw new Error('connect ECONNREFUSED') } }
    const err = await dialAnyRelay(node as never, [RA, RB]).catch((e: Error) => e)
    expect(err).toBeInstanceOf(BootstrapUnreachableError)
    expect((err as Error).message).toContain(A)
    expect((err as Error).message).toContain(B)
  })
})

describe('resolveBootstrap with a relay down', () => {
  it('keeps the relays that answered when one --bootstrap URL does not, and fails only when none does', async () => {
    const down = 'http://127.0.0.1:9/' // discard port: nothing listens
    const boot = await resolveBootstrap({ bootstrap: [down, RB], 'ice-servers': 'none' } as never)
    expect(boot.addrs).toEqual([RB])
    await expect(resolveBootstrap({ bootstrap: [down] } as never)).rejects.toThrow(BootstrapUnreachableError)
  })
})
