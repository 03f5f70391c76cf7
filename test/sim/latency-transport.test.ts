/**
 * The simulator's in-process transport (web/src/sim/latency-transport.ts) delays each frame one
 * latency on a pipelined path: frames in flight together arrive together, a burst is not
 * serialised behind itself (@libp2p/memory's per-chunk delay), order holds, close and reset
 * arrive after the data sent before them, and an optional uplink rate queues a node's frames. Bad use is refused with the error that names it.
 * Driven on virtual time, with a stand-in upgrader that hands back the raw connection ends.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { ConnectionFailedError, ListenError, type ComponentLogger, type Connection, type CreateListenerOptions, type Logger, type MultiaddrConnection, type PeerId, type Upgrader } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { LatencyNetwork } from '../../web/src/sim/latency-transport.ts'
import { withVirtualTime } from '../../web/src/sim/virtual-time.ts'

const silent: Logger = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => silent })
const logger: ComponentLogger = { forComponent: () => silent }

/** An upgrader that does no upgrading: the test reads and writes the raw connection ends. */
function rawUpgrader (inbound: MultiaddrConnection[]): Upgrader {
  return {
    upgradeInbound: async (maConn: MultiaddrConnection) => { inbound.push(maConn) },
    upgradeOutbound: async (maConn: MultiaddrConnection) => maConn as unknown as Connection
  } as unknown as Upgrader
}

async function peer (): Promise<{ peerId: PeerId, logger: ComponentLogger }> {
  return { peerId: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), logger }
}

/** A listener at /memory/NAME with `latencyMs`, and a dialled pair of connection ends. */
async function pair (net: LatencyNetwork, name: string, latencyMs: number): Promise<{ dialer: MultiaddrConnection, listener: MultiaddrConnection, close: () => Promise<void> }> {
  const inbound: MultiaddrConnection[] = []
  const upgrader = rawUpgrader(inbound)
  const l = net.transport(latencyMs)(await peer()).createListener({ upgrader } as unknown as CreateListenerOptions)
  await l.listen(multiaddr(`/memory/${name}`))
  const dialer = await net.transport(0)(await peer()).dial(multiaddr(`/memory/${name}`), { upgrader, signal: new AbortController().signal } as never) as unknown as MultiaddrConnection
  expect(inbound).toHaveLength(1)
  return { dialer, listener: inbound[0], close: async () => { await l.close() } }
}

/** Every message event on `end`, with the virtual time it came at. */
function record (end: MultiaddrConnection): Array<{ at: number, bytes: number[] }> {
  const got: Array<{ at: number, bytes: number[] }> = []
  end.addEventListener('message', e => { got.push({ at: Date.now(), bytes: [...e.data.subarray()] }) })
  return got
}

const sleep = async (ms: number): Promise<void> => { await new Promise<void>(resolve => setTimeout(resolve, ms)) }

describe('sim latency transport (pipelined one-way delay)', () => {
  it('a dial takes one latency; a burst of 20 frames arrives one latency later, together and in order', async () => {
    await withVirtualTime(async vt => {
      const net = new LatencyNetwork()
      const t0 = vt.now()
      const { dialer, listener, close } = await pair(net, 'burst', 50)
      expect(vt.now() - t0).toBe(50)
      const got = record(listener)
      const sent = vt.now()
      for (let i = 0; i < 20; i++) dialer.send(Uint8Array.of(i))
      await sleep(200)
      // @libp2p/memory would deliver frame k at k × 50 ms; here all 20 at 50, as one buffer.
      expect(got.map(g => g.at - sent)).toEqual([50])
      expect(got.flatMap(g => g.bytes)).toEqual(Array.from({ length: 20 }, (_, i) => i))
      await close()
    })
  })

  it('frames sent at different times keep their own delay (no queueing behind earlier ones), both ways', async () => {
    await withVirtualTime(async vt => {
      const net = new LatencyNetwork()
      const { dialer, listener, close } = await pair(net, 'spaced', 30)
      const atListener = record(listener)
      const atDialer = record(dialer)
      const t0 = vt.now()
      dialer.send(Uint8Array.of(1))
      await sleep(10)
      dialer.send(Uint8Array.of(2))
      listener.send(Uint8Array.of(9))
      await sleep(100)
      expect(atListener.map(g => [g.at - t0, ...g.bytes])).toEqual([[30, 1], [40, 2]])
      // The reverse path takes the listener's latency too (as @libp2p/memory).
      expect(atDialer.map(g => [g.at - t0, ...g.bytes])).toEqual([[40, 9]])
      await close()
    })
  })

  it('close arrives after the data sent before it; reset reaches the far end one latency later', async () => {
    await withVirtualTime(async vt => {
      const net = new LatencyNetwork()
      const a = await pair(net, 'close', 20)
      const got = record(a.listener)
      const t0 = vt.now()
      a.dialer.send(Uint8Array.of(7, 8))
      await a.dialer.close()
      expect(a.listener.status).toBe('open')
      await sleep(20)
      expect(got.flatMap(g => g.bytes)).toEqual([7, 8])
      expect(vt.now() - t0).toBe(20)
      expect(a.listener.status).toBe('closed')

      const b = await pair(net, 'reset', 20)
      b.dialer.abort(new Error('test abort'))
      expect(b.listener.status).toBe('open')
      await sleep(20)
      expect(b.listener.status).toBe('reset')
      // Frames sent towards an end that was reset are dropped, not delivered late.
      const late = record(b.dialer)
      await sleep(50)
      expect(late).toEqual([])
      await a.close()
      await b.close()
    })
  })

  it("bandwidth: a frame leaves once the sender's uplink has sent what was queued before it, shared by all its connections", async () => {
    await withVirtualTime(async vt => {
      const net = new LatencyNetwork()
      const inbound: MultiaddrConnection[] = []
      const upgrader = rawUpgrader(inbound)
      const listeners = await Promise.all(['bw-a', 'bw-b'].map(async name => {
        const l = net.transport(10)(await peer()).createListener({ upgrader } as unknown as CreateListenerOptions)
        await l.listen(multiaddr(`/memory/${name}`))
        return l
      }))
      // One node (one transport, one uplink of 1,000 bytes/s = 1 byte/ms) with a connection to each listener.
      const node = net.transport(0, 1000)(await peer())
      const toA = await node.dial(multiaddr('/memory/bw-a'), { upgrader, signal: new AbortController().signal } as never) as unknown as MultiaddrConnection
      const toB = await node.dial(multiaddr('/memory/bw-b'), { upgrader, signal: new AbortController().signal } as never) as unknown as MultiaddrConnection
      const [atA, atB] = inbound.map(record)
      const back = record(toA)
      const t0 = vt.now()
      toA.send(new Uint8Array(100))
      toA.send(new Uint8Array(50))
      toB.send(new Uint8Array(100))
      inbound[0].send(new Uint8Array(500)) // the listener's uplink is unlimited
      await sleep(400)
      // 100 B leave at 100 ms, the next 50 B at 150, B's 100 B at 250 (queued behind A's); + 10 ms latency.
      expect(atA.map(g => [g.at - t0, g.bytes.length])).toEqual([[110, 100], [160, 50]])
      expect(atB.map(g => [g.at - t0, g.bytes.length])).toEqual([[260, 100]])
      expect(back.map(g => [g.at - t0, g.bytes.length])).toEqual([[10, 500]])
      for (const l of listeners) await l.close()
    })
  })

  it('a closed listener aborts its connections and frees its address', async () => {
    await withVirtualTime(async () => {
      const net = new LatencyNetwork()
      const { dialer, listener, close } = await pair(net, 'gone', 5)
      await close()
      expect(listener.status).toBe('aborted')
      expect(dialer.status).toBe('aborted')
      expect(net.listeners.has('/memory/gone')).toBe(false)
      await expect(net.transport(0)(await peer()).dial(multiaddr('/memory/gone'), { upgrader: rawUpgrader([]), signal: new AbortController().signal } as never)).rejects.toThrow(ConnectionFailedError)
    })
  })

  it('bad use: unknown address, address in use, bad latency or uplink rate, non-memory addresses filtered', async () => {
    await withVirtualTime(async () => {
      const net = new LatencyNetwork()
      await expect(net.transport(0)(await peer()).dial(multiaddr('/memory/nobody'), { upgrader: rawUpgrader([]), signal: new AbortController().signal } as never)).rejects.toThrow(/no simulated listener at \/memory\/nobody/)
      const { close } = await pair(net, 'taken', 1)
      const again = net.transport(1)(await peer()).createListener({ upgrader: rawUpgrader([]) } as unknown as CreateListenerOptions)
      await expect(again.listen(multiaddr('/memory/taken'))).rejects.toThrow(ListenError)
      expect(() => net.transport(-1)).toThrow(RangeError)
      expect(() => net.transport(Number.NaN)).toThrow(/latency NaN ms/)
      expect(() => net.transport(Infinity)).toThrow(/must be finite/)
      expect(() => net.transport(1, 0)).toThrow(/uplink 0 bytes\/s must be > 0/)
      expect(() => net.transport(1, -5)).toThrow(RangeError)
      expect(() => net.transport(1, Number.NaN)).toThrow(RangeError)
      const t = net.transport(0)(await peer())
      expect(t.dialFilter([multiaddr('/ip4/127.0.0.1/tcp/1'), multiaddr('/memory/x'), multiaddr('/memory/x/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')]).map(String)).toEqual(['/memory/x', '/memory/x/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'])
      // A separate network does not see this one's listeners.
      await expect(new LatencyNetwork().transport(0)(await peer()).dial(multiaddr('/memory/taken'), { upgrader: rawUpgrader([]), signal: new AbortController().signal } as never)).rejects.toThrow(ConnectionFailedError)
      await close()
    })
  })
})
