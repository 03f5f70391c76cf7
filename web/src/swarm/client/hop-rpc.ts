/**
 * A session's requests to the servers of its hops (route segments): open, step, close. A server
 * that fails a request is banned, unless the client itself was wrong or gave up on it.
 */
import { hasErrorCode } from '../../util/errors.ts'
import { PeerProtocolError } from '../errors.ts'
import type { Commitment } from '../commitment.ts'
import type { RouteSegment } from '../route.ts'
import type { InferMsg } from '../wire/infer.ts'
import type { InferenceClient } from './client.ts'

export interface Hop extends RouteSegment {
  /** Server's session id. */
  session: string
  /** Inputs sent so far, in order: (T_i, C) each; together positions [0, length). */
  history: Float32Array[]
  /** The server's outputs for them, in the same order and shapes: what a verifier checks (verify.ts). */
  outputs: Float32Array[]
}

/** Records one step of `hop`: its input `x` (copied: callers reuse their buffers) and output `y`. */
export function record (hop: Hop, x: Float32Array, y: Float32Array): void {
  hop.history.push(x.slice())
  hop.outputs.push(y)
}

/** Errors that say the client itself is wrong: failing over would not help. */
export function isClientBug (e: unknown): boolean {
  return hasErrorCode(e, 'swarm.tensor-shape', 'swarm.position', 'net.malformed-message', 'swarm.message-too-large')
}

export class HopRpc {
  constructor (readonly client: InferenceClient, readonly maxTokens: number) {}

  /** Opens server sessions for each segment; on failure bans that peer, closes the rest, rethrows. */
  async open (route: RouteSegment[], signal?: AbortSignal): Promise<Hop[]> {
    const hops: Hop[] = []
    try {
      for (const seg of route) {
        const r = await this.callOrBan(seg.peer, { type: 'open', model: this.client.model, start: seg.start, end: seg.end, maxTokens: this.maxTokens }, signal)
        if (r.type !== 'opened') throw new PeerProtocolError(seg.peer, `expected opened, got ${r.type}`)
        hops.push({ ...seg, session: r.session, history: [], outputs: [] })
      }
      return hops
    } catch (e) {
      this.close(hops)
      throw e
    }
  }

  /** Best effort: a dead server frees its cache when it idles out. */
  close (hops: readonly Hop[]): void {
    for (const h of hops) void this.client.call(h.peer, { type: 'close', session: h.session }).catch(() => {}) // best effort, as above
  }

  /** One request; its server is banned if it fails, unless the client was wrong or gave up on it (`signal`). */
  private async callOrBan (peer: string, msg: Parameters<InferenceClient['call']>[1], signal?: AbortSignal): ReturnType<InferenceClient['call']> {
    try {
      const r = await this.client.call(peer, msg, undefined, signal)
      this.client.bans.clear(peer)
      return r
    } catch (e) {
      if (!isClientBug(e) && signal?.aborted !== true) this.ban(peer, e as Error)
      throw e
    }
  }

  ban (peer: string, e: Error): void {
    const ms = this.client.bans.ban(peer)
    this.client.log(`infer: ${peer} failed (${e.message}); banned for ${ms} ms`)
  }

  /** A reply's (T, C) output at `position`, or PeerProtocolError. */
  output (hop: Hop, r: InferMsg, type: 'output' | 'chained', tokens: number, position: number): Float32Array {
    if (r.type !== type) throw new PeerProtocolError(hop.peer, `expected ${type}, got ${r.type}`)
    const shape = r.hidden.shape
    if (shape.length !== 2 || shape[0] !== tokens || shape[1] !== this.client.hiddenSize || r.position !== position) {
      throw new PeerProtocolError(hop.peer, `server ${hop.peer} answered [${shape.join(', ')}] at ${r.position}, expected [${tokens}, ${this.client.hiddenSize}] at ${position}`)
    }
    return r.hidden.data
  }

  /** Sends (T, C) through one hop at `position`; returns the server's commitment to its (T, C) output (swarm/commitment.ts). */
  async stepCommit (hop: Hop, hidden: Float32Array, tokens: number, position: number, k: number): Promise<Commitment> {
    const r = await this.callOrBan(hop.peer, { type: 'stepCommit', session: hop.session, position, k, hidden: { shape: [tokens, this.client.hiddenSize], data: hidden } })
    if (r.type !== 'commitment') throw new PeerProtocolError(hop.peer, `expected commitment, got ${r.type}`)
    if (r.position !== position || r.rows !== tokens || r.k !== Math.min(k, this.client.hiddenSize)) throw new PeerProtocolError(hop.peer, `server ${hop.peer} committed to ${r.rows} rows × k ${r.k} at ${r.position}, expected ${tokens} × ${k} at ${position}`)
    return { k: r.k, rows: r.rows, bytes: r.data }
  }

  /** Sends (T, C) through one hop at `position`; returns (T, C). */
  async step (hop: Hop, hidden: Float32Array, tokens: number, position: number, signal?: AbortSignal): Promise<Float32Array> {
    const r = await this.callOrBan(hop.peer, { type: 'step', session: hop.session, position, hidden: { shape: [tokens, this.client.hiddenSize], data: hidden } }, signal)
    return this.output(hop, r, 'output', tokens, position)
  }
}
