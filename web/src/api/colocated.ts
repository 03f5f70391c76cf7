/**
 * Swarm peers that live in one process and talk without the network. `npm start` runs the API
 * client and the embedded peer (cli/api.ts) as two libp2p peers in the relay's Node process:
 * every token's STEP and its reply went through Noise, the stream framing and a WebRTC data
 * channel (SCTP in node-datachannel) only to arrive in the same process — the largest share of a
 * token's time once the block forward got cheaper (BENCHMARKS.md § API: the data channel's
 * send() alone ≈ 1.5 ms a token at 8 streams, more than the forward of 3 blocks).
 *
 * `ColocatedPeers.wrap` gives each such peer a transport that registers its handlers here and
 * hands a request for another registered peer straight to that peer's handler. Nothing else
 * changes: the same message (structured-cloned both ways, so the peers share no memory, as over
 * a wire), the same handler with the caller's peer id, the request's timeout and abort signal,
 * and the errors a network transport gives (PeerTimeoutError; PeerUnreachableError when the
 * handler throws — a stream reset — or the caller aborts). Requests to any other peer, and all
 * other transport duties, go to the wrapped transport. A peer that unhandles a protocol (it is
 * leaving) is reached over the network again.
 */
import { realClock, type Clock, type TimerHandle } from '../util/clock.ts'
import { PeerTimeoutError, PeerUnreachableError } from '../swarm/errors.ts'
import type { RequestOptions, RpcHandler, RpcTransport } from '../swarm/transport/index.ts'
import { InProcessServers } from '../swarm/server/in-process.ts'

/** Whatever a request or reply is on this transport (the message type of RpcTransport.request). */
type Body = Parameters<RpcTransport['request']>[2]

/** The peers of one process; wrap each one's transport. */
export class ColocatedPeers {
  /** peer id → protocol → handler. */
  private readonly handlers = new Map<string, Map<string, RpcHandler>>()
  /** Requests answered in-process, for tests and /metrics. */
  delivered = 0
  /**
   * Block servers of these peers, which their clients call without even this transport's encoding
   * and copies (swarm/server/in-process.ts); their pushes to one another still come through here.
   */
  readonly servers = new InProcessServers()

  /** @param clock times requests out (tests: a ManualClock). @default realClock */
  constructor (private readonly clock: Clock = realClock) {}

  /** `t`, with its handlers reachable in-process by the other wrapped peers, and theirs by it. */
  wrap (t: RpcTransport): RpcTransport {
    const peers = this
    const mine = (): Map<string, RpcHandler> => {
      let m = peers.handlers.get(t.self)
      if (m === undefined) peers.handlers.set(t.self, m = new Map())
      return m
    }
    const serves = (peer: string): boolean => (peers.handlers.get(peer)?.size ?? 0) > 0
    const wrapped: RpcTransport = {
      get self () { return t.self },
      request: async (peer, protocol, body, opts) => {
        const handler = peer === t.self ? undefined : peers.handlers.get(peer)?.get(protocol)
        return handler === undefined ? await t.request(peer, protocol, body, opts) : await peers.deliver(t.self, peer, handler, body, opts)
      },
      handle: (protocol, handler) => {
        mine().set(protocol, handler)
        t.handle(protocol, handler)
      },
      unhandle: (protocol) => {
        peers.handlers.get(t.self)?.delete(protocol)
        t.unhandle(protocol)
      },
      connected: (peer) => serves(peer) || (t.connected?.(peer) ?? true)
    }
    if (t.connect !== undefined) {
      const connect = t.connect.bind(t)
      wrapped.connect = async (peer, timeoutMs) => { if (!serves(peer)) await connect(peer, timeoutMs) }
    }
    return wrapped
  }

  /** One request to a co-located peer's handler, as the network would deliver it. */
  private async deliver (from: string, to: string, handler: RpcHandler, body: Body, opts: RequestOptions): Promise<Body> {
    if (opts.signal?.aborted === true) throw new PeerUnreachableError(to, 'request aborted')
    // A copy, as a wire would make: the handler may keep the request's arrays (a held PUSH).
    const request = structuredClone(body)
    let timer: TimerHandle | undefined
    let onAbort: (() => void) | undefined
    const cut = new Promise<never>((_resolve, reject) => {
      timer = this.clock.setTimeout(() => reject(new PeerTimeoutError(to, opts.timeoutMs)), opts.timeoutMs)
      onAbort = () => reject(new PeerUnreachableError(to, 'request aborted'))
      opts.signal?.addEventListener('abort', onAbort, { once: true })
    })
    const answer = (async () => {
      try {
        return await handler(from, request)
      } catch (e) {
        throw new PeerUnreachableError(to, `stream reset: ${(e as Error).name}: ${(e as Error).message}`)
      }
    })()
    // A handler still running when the request timed out finishes unobserved, as on a network.
    answer.catch(() => {})
    try {
      const reply = await Promise.race([answer, cut])
      this.delivered++
      return structuredClone(reply)
    } finally {
      if (timer !== undefined) this.clock.clearTimeout(timer)
      if (onAbort !== undefined) opts.signal?.removeEventListener('abort', onAbort)
    }
  }
}
