/**
 * dialThroughRelay when both peers dial each other at once: our WebRTC set-up may time out while
 * theirs went through; the open direct connection they made is returned instead of a retry or an
 * error. A failure with no such connection is still retried, then thrown.
 */
import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { dialThroughRelay } from '../../web/src/net/peers.ts'

const RELAY = '/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const PEER = '12D3KooWHiPAyWeWrQbMBrWiA1TfMw7DT32y8dy7xvuXa3UtfmfL'

function conn (remotePeer: string, addr: string, status = 'open'): Connection {
  return { remotePeer: { toString: () => remotePeer }, remoteAddr: { toString: () => addr }, status, limits: undefined } as unknown as Connection
}

describe('dialThroughRelay and simultaneous dials', () => {
  it("returns the peer's own direct connection when ours timed out meanwhile", async () => {
    const conns: Connection[] = [conn(PEER, `${RELAY}/p2p-circuit/p2p/${PEER}`, 'open')] // a relayed one does not count
    let dials = 0
    const node = {
      dial: async () => { dials++; conns.push(conn(PEER, `/ip4/127.0.0.1/udp/5000/webrtc/p2p/${PEER}`)); throw new Error('signal timed out') },
      getConnections: () => conns
    }
    const c = await dialThroughRelay(node as never, RELAY, PEER)
    expect(dials).toBe(1)
    expect(c.remoteAddr.toString()).toContain('/webrtc/')
  })

  it('returns their direct connection as soon as it opens (our own set-up runs on)', async () => {
    const target = new EventTarget()
    let ourSignal: AbortSignal | undefined
    const node = {
      dial: async (_addr: unknown, o: { signal: AbortSignal }) => {
        ourSignal = o.signal
        return await new Promise<Connection>((_resolve, reject) => { o.signal.addEventListener('abort', () => { reject(o.signal.reason as Error) }) })
      },
      getConnections: () => [],
      addEventListener: (type: string, fn: EventListener) => { listening++; target.addEventListener(type, fn) },
      removeEventListener: target.removeEventListener.bind(target)
    }
    let listening = 0
    const controller = new AbortController()
    const dialing = dialThroughRelay(node as never, RELAY, PEER, { signal: controller.signal })
    // the events below go out once dialThroughRelay listens for them (not after a fixed 10 ms)
    while (listening === 0) await new Promise(resolve => setImmediate(resolve))
    target.dispatchEvent(new CustomEvent('connection:open', { detail: conn('12D3KooWOther', '/ip4/127.0.0.1/udp/5000/webrtc/p2p/12D3KooWOther') })) // not theirs
    target.dispatchEvent(new CustomEvent('connection:open', { detail: conn(PEER, `${RELAY}/p2p-circuit/p2p/${PEER}`) })) // relayed: not direct
    expect(ourSignal?.aborted).toBe(false)
    target.dispatchEvent(new CustomEvent('connection:open', { detail: conn(PEER, `/ip4/127.0.0.1/udp/5001/webrtc/p2p/${PEER}`) }))
    const c = await dialing
    expect(c.remoteAddr.toString()).toContain('udp/5001/webrtc')
    expect(ourSignal?.aborted).toBe(false) // aborting a set-up midway left half-open connections
    controller.abort()
  })

  it('without one, a failure is retried and then thrown', async () => {
    let dials = 0
    const node = {
      dial: async () => { dials++; throw new Error('signal timed out') },
      getConnections: () => [conn('12D3KooWOther', '/ip4/127.0.0.1/udp/5000/webrtc/p2p/12D3KooWOther'), conn(PEER, `/ip4/127.0.0.1/udp/5001/webrtc/p2p/${PEER}`, 'closed')]
    }
    await expect(dialThroughRelay(node as never, RELAY, PEER, { attempts: 2 })).rejects.toThrow('signal timed out')
    expect(dials).toBe(2)
  })
})
