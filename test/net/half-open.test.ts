/**
 * HalfOpenGuard: a direct link only this side holds is closed — at once when the peer dials us
 * again, or when identify never answers on it and the peer uses it for nothing — and a healthy link is left alone, including the
 * two links of a simultaneous dial, a link whose first identify was missed under load, and a link
 * the peer has opened a stream on (it holds it, however slow its identify).
 */
import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { HalfOpenGuard, HALF_OPEN_PROBE_AFTER_MS, HALF_OPEN_PROBE_TIMEOUT_MS, type HalfOpenNode } from '../../web/src/net/half-open.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const A = '12D3KooWHiPAyWeWrQbMBrWiA1TfMw7DT32y8dy7xvuXa3UtfmfL'
const B = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

type FakeConn = Connection & { aborted: boolean }

function conn (peer: string, direction: 'inbound' | 'outbound', kind: 'webrtc' | 'relayed' = 'webrtc', peerStreams = 0): FakeConn {
  const c = {
    streams: Array.from({ length: peerStreams }, () => ({ direction: 'inbound', protocol: '/meshsub/1.1.0' })),
    remotePeer: { toString: () => peer },
    remoteAddr: { toString: () => kind === 'webrtc' ? `/webrtc/p2p/${peer}` : `/ip4/127.0.0.1/tcp/1/ws/p2p/R/p2p-circuit/p2p/${peer}` },
    direction,
    status: 'open',
    aborted: false,
    abort: () => { c.aborted = true; c.status = 'closed' }
  }
  return c as unknown as FakeConn
}

/** A node that reports connections opening and identify answering on them. */
function fakeNode (): { node: HalfOpenNode, conns: FakeConn[], open: (c: FakeConn) => void, identified: (c: FakeConn) => void } {
  const target = new EventTarget()
  const conns: FakeConn[] = []
  const node = {
    addEventListener: target.addEventListener.bind(target),
    removeEventListener: target.removeEventListener.bind(target),
    getConnections: () => conns.filter(c => c.status === 'open')
  } as unknown as HalfOpenNode
  return {
    node,
    conns,
    open: (c) => { conns.push(c); target.dispatchEvent(new CustomEvent('connection:open', { detail: c })) },
    identified: (c) => { target.dispatchEvent(new CustomEvent('peer:identify', { detail: { connection: c } })) }
  }
}

const isDirect = (c: Connection): boolean => c.status === 'open' && c.remoteAddr.toString().startsWith('/webrtc')

/** A started guard over a fake node, on a ManualClock. */
function started (log: (line: string) => void = () => {}): { clock: ManualClock, f: ReturnType<typeof fakeNode>, g: HalfOpenGuard } {
  const clock = new ManualClock()
  const f = fakeNode()
  const g = new HalfOpenGuard(f.node, { isDirect, log, clock })
  g.start()
  return { clock, f, g }
}


describe('HalfOpenGuard', () => {
  it('closes an older inbound link when the same peer dials us again; leaves other peers and the new link alone', () => {
    const logs: string[] = []
    const { f, g } = started(l => logs.push(l))
    const first = conn(A, 'inbound')
    const other = conn(B, 'inbound')
    f.open(first)
    f.open(other)
    const second = conn(A, 'inbound')
    f.open(second)
    expect(first.aborted).toBe(true)
    expect(second.aborted).toBe(false)
    expect(other.aborted).toBe(false)
    expect(logs.join('\n')).toMatch(/closing a half-open inbound direct link: it dialled us again/)
    g.stop()
  })

  it('keeps both links of a simultaneous dial (one outbound, one inbound) and relayed links', () => {
    const { clock, f, g } = started()
    const ours = conn(A, 'outbound')
    const relayed = conn(A, 'inbound', 'relayed')
    f.open(ours)
    f.open(relayed)
    const theirs = conn(A, 'inbound')
    f.open(theirs)
    expect([ours.aborted, relayed.aborted, theirs.aborted]).toEqual([false, false, false])
    g.stop()
  })

  it('closes a link identify never answered on and the peer opened no stream on, after both waits; not before', () => {
    const { clock, f, g } = started()
    const c = conn(A, 'inbound')
    f.open(c)
    clock.advance(HALF_OPEN_PROBE_AFTER_MS + HALF_OPEN_PROBE_TIMEOUT_MS - 1)
    expect(c.aborted).toBe(false)
    clock.advance(1)
    expect(c.aborted).toBe(true)
    expect(g.closed).toBe(1)
    g.stop()
  })

  it('leaves a link alone once identify answered on it, even late (between the two looks)', () => {
    const { clock, f, g } = started()
    const answered = conn(A, 'outbound')
    const late = conn(B, 'outbound')
    f.open(answered)
    f.open(late)
    f.identified(answered)
    clock.advance(HALF_OPEN_PROBE_AFTER_MS + 1)
    f.identified(late)
    clock.advance(HALF_OPEN_PROBE_TIMEOUT_MS)
    expect([answered.aborted, late.aborted]).toEqual([false, false])
    expect(g.closed).toBe(0)
    g.stop()
  })

  it('stop() cancels pending probes', () => {
    const { clock, f, g } = started()
    const c = conn(A, 'inbound')
    f.open(c)
    g.stop()
    expect(clock.pending).toBe(0)
    clock.advance(HALF_OPEN_PROBE_AFTER_MS + HALF_OPEN_PROBE_TIMEOUT_MS)
    expect(c.aborted).toBe(false)
  })

  it('leaves links the peer has opened a stream on, whatever identify says, and when it dials again', () => {
    const { clock, f, g } = started()
    const used = conn(A, 'inbound', 'webrtc', 1)
    f.open(used)
    f.open(conn(A, 'inbound')) // dialled again: the old link carries its gossip stream, so it holds it
    expect(used.aborted).toBe(false)
    const slow = conn(B, 'outbound', 'webrtc', 1)
    f.open(slow)
    clock.advance(HALF_OPEN_PROBE_AFTER_MS + HALF_OPEN_PROBE_TIMEOUT_MS)
    expect(slow.aborted).toBe(false)
    g.stop()
  })
})
