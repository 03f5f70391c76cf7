/**
 * In-process harness for stream tests: a minimal "node" whose dialProtocol returns one end of a
 * @libp2p/utils streamPair (real AbstractStream flow: send()/drain, close, reset) and runs the
 * handler registered for the protocol on the other end. No sockets; deterministic and fast.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import type { Connection, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import type { StreamNode } from '../../web/src/net/stream/rpc.ts'

export async function randomPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

export interface MemoryNode extends StreamNode {
  peerId: PeerId
  /** Streams this node opened (outbound) and accepted (inbound), for assertions. */
  streams: Stream[]
  /** The promise of every handler run on this node's inbound streams, in order. */
  served: Array<Promise<void>>
  /** Bytes this node's streams have sent / received so far (see `quiet`). */
  traffic: { sent: number, received: number }
}

/** Counts what `stream` sends and receives into `owner.traffic` (before anyone else uses the stream). */
function meter (stream: Stream, owner: MemoryNode): void {
  const send = stream.send.bind(stream)
  stream.send = (bytes) => { owner.traffic.sent += bytes.byteLength; return send(bytes) }
  stream.addEventListener('message', (evt) => { owner.traffic.received += evt.data.byteLength })
}

/** Nodes that can dial each other by peer id; `capacity` messages in flight before backpressure. */
export async function memoryNetwork (count: number, capacity = 16): Promise<MemoryNode[]> {
  const nodes = new Map<string, { node: MemoryNode, handlers: Map<string, StreamHandler> }>()
  const out: MemoryNode[] = []
  for (let i = 0; i < count; i++) {
    const peerId = await randomPeerId()
    const handlers = new Map<string, StreamHandler>()
    const node: MemoryNode = {
      peerId,
      streams: [],
      served: [],
      traffic: { sent: 0, received: 0 },
      handle: async (protocol, handler) => { for (const p of [protocol].flat()) handlers.set(p, handler) },
      unhandle: async (protocol) => { for (const p of [protocol].flat()) handlers.delete(p) },
      dialProtocol: async (target, protocols) => {
        const remote = nodes.get((target as PeerId).toString())
        const protocol = [protocols].flat()[0]
        const handler = remote?.handlers.get(protocol)
        if (remote === undefined || handler === undefined) throw new Error(`no handler for ${protocol} at ${String(target)}`)
        const [outbound, inbound] = await streamPair({ capacity, delay: 0, protocol })
        meter(outbound, node)
        meter(inbound, remote.node)
        node.streams.push(outbound)
        remote.node.streams.push(inbound)
        const connection = { remotePeer: peerId } as unknown as Connection
        remote.node.served.push(Promise.resolve(handler(inbound, connection)).catch((err: Error) => { inbound.abort(err) }))
        return outbound
      }
    }
    nodes.set(peerId.toString(), { node, handlers })
    out.push(node)
  }
  return out
}

/** Deterministic bytes (xorshift32) so both ends can check content without sharing buffers. */
export function patternBytes (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed | 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/**
 * Resolves once the network is quiet: every byte any node sent has been received, and still so
 * after the receivers ran (one more macrotask, in which they could answer). What a test asserts
 * then cannot change until it acts again — an event, not an amount of time.
 */
export async function quiet (nodes: readonly MemoryNode[]): Promise<void> {
  const totals = (): [number, number] => [nodes.reduce((s, n) => s + n.traffic.sent, 0), nodes.reduce((s, n) => s + n.traffic.received, 0)]
  for (;;) {
    await waitFor(() => { const [sent, received] = totals(); return sent === received })
    const before = totals()[0]
    await new Promise(resolve => setImmediate(resolve))
    const [sent, received] = totals()
    if (sent === before && sent === received) return
  }
}

/** Only to pace a fake (a handler that stays busy); never to wait for something to happen. */
export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Resolves once `cond()` holds, checking after each macrotask: waits for an event, not for an
 * amount of time, so a loaded machine cannot fail it (the test's own timeout bounds a wait that never ends).
 */
export async function waitFor (cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise(resolve => setImmediate(resolve))
}
