/**
 * A client's inference session over all blocks: a chain of server sessions, one per route
 * segment (hop-rpc.ts). A step goes through the hops in route order with STEPs, or by push
 * (push.ts); a hop whose server fails is replaced by a fresh chain over its blocks that replays
 * its stored inputs, and a late step is hedged on a spare (failover.ts).
 */
import { MAX_STEP_TOKENS } from '../constants.ts'
import { FailoverExhaustedError, NoRouteError, SessionRewoundError, SwarmArgumentError } from '../errors.ts'
import type { RouteSegment } from '../route.ts'
import type { InferMsg } from '../wire/infer.ts'
import type { FailoverEvent, InferenceClient } from './client.ts'
import { Failover } from './failover.ts'
import { HopRpc, isClientBug, record, type Hop } from './hop-rpc.ts'
import { Push } from './push.ts'
import { rows, Verifier } from './verify.ts'

export class InferenceSession {
  /** The route's hops; changed in place (open, failovers) as `failover` and `push` share it. */
  private readonly hops: Hop[] = []
  /** Positions processed, in tokens. */
  length = 0
  readonly failovers: FailoverEvent[] = []
  private closed = false
  private readonly rpc: HopRpc
  private readonly failover: Failover
  private readonly push: Push
  /** Spot checks of the hops' outputs, when the client verifies. */
  private readonly verifier?: Verifier

  constructor (private readonly client: InferenceClient, readonly maxTokens: number) {
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new SwarmArgumentError(`maxTokens must be ≥ 1, got ${maxTokens}`)
    this.rpc = new HopRpc(client, maxTokens)
    this.failover = new Failover(this.rpc, this.hops, this.failovers)
    this.push = new Push(this.rpc, this.failover, this.hops)
    if (client.verify !== undefined) this.verifier = new Verifier(this.rpc, this.failover, client.verify)
  }

  /** The current route. */
  get route (): RouteSegment[] {
    return this.hops.map(h => ({ peer: h.peer, start: h.start, end: h.end }))
  }

  async open (): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const route = await this.client.plan(0, this.client.numBlocks, this.maxTokens)
      try {
        this.hops.splice(0, this.hops.length, ...await this.rpc.open(route))
        return
      } catch (e) {
        if (isClientBug(e) || attempt >= this.client.maxFailovers) throw e
      }
    }
  }

  /**
   * Runs all blocks on hidden states (T, C) for positions [length, length + T); returns (T, C).
   * Steps longer than MAX_STEP_TOKENS are sent in chunks.
   */
  async step (hidden: Float32Array, tokens: number): Promise<Float32Array> {
    if (this.closed) throw new SwarmArgumentError('session is closed')
    const C = this.client.hiddenSize
    if (hidden.length !== tokens * C || tokens < 1) throw new SwarmArgumentError(`hidden must be (T=${tokens}, C=${C}): ${tokens * C} values, got ${hidden.length}`)
    if (this.length + tokens > this.maxTokens) throw new SwarmArgumentError(`positions [${this.length}, ${this.length + tokens}) exceed the session's ${this.maxTokens} tokens`)
    const out = new Float32Array(tokens * C)
    for (let t0 = 0; t0 < tokens; t0 += MAX_STEP_TOKENS) {
      const n = Math.min(MAX_STEP_TOKENS, tokens - t0)
      out.set(await this.stepChunk(hidden.subarray(t0 * C, (t0 + n) * C), n), t0 * C)
    }
    return out
  }

  private async stepChunk (hidden: Float32Array, tokens: number): Promise<Float32Array> {
    const position = this.length
    let x = hidden
    let failures = 0
    let i = 0
    let calls: Map<Hop, Promise<InferMsg>> | undefined
    let hopError: Error | undefined
    let pushed = false
    if (this.push.canChain()) {
      ({ done: i, x, calls, error: hopError } = await this.push.step(hidden, tokens, position))
      pushed = i === this.hops.length
    }
    while (i < this.hops.length) {
      const hop = this.hops[i]
      try {
        if (hopError !== undefined) {
          const e = hopError
          hopError = undefined
          throw e
        }
        const r = await this.hedgedStep(i, x, tokens, position, calls?.get(hop))
        x = r.y
        i += r.hops
      } catch (e) {
        if (isClientBug(e)) throw e
        // Re-plan until a replacement holds the cache again (a replacement may fail during replay too).
        for (let cause = e as Error; ;) {
          if (++failures > this.client.maxFailovers) throw new FailoverExhaustedError(`step at position ${position}: ${failures - 1} failovers did not get through blocks [${hop.start}, ${hop.end}): ${cause.message}`)
          try {
            await this.failover.replace(i, cause)
            break
          } catch (e2) {
            if (isClientBug(e2) || e2 instanceof NoRouteError) throw e2
            cause = e2 as Error
          }
        }
        // hops[i] is now the first hop of the replacement; retry the step from there.
      }
    }
    this.length += tokens
    await this.verify(false)
    // Arm the next step only when this one went through cleanly by push (the route is warm).
    if (pushed && this.client.armAhead) this.push.arm(this.length)
    return x
  }

  /**
   * Checks every position not checked yet (a no-op without verification): a caller calls it
   * before it hands out a completion, so no step escapes a windowed or sampled check. Throws
   * SessionRewoundError, as `step` does, when a server is outvoted.
   */
  async settle (): Promise<void> {
    if (this.closed) throw new SwarmArgumentError('session is closed')
    await this.verify(true)
  }

  private async verify (final: boolean): Promise<void> {
    const caught = await this.verifier?.afterStep(this.hops, final)
    if (caught !== undefined) {
      await this.rewind(caught.position, caught.avoid === true ? caught.liar : undefined)
      throw new SessionRewoundError(caught.position, caught.liar)
    }
  }

  /**
   * Rebuilds the whole route holding positions [0, keep) only: a liar's wrong outputs reached
   * every later hop's cache and the caller's tokens, and a server cannot drop positions, so fresh
   * sessions (avoiding the banned liar, and `avoid` too: Verifier.outvotedAt) replay the first
   * hop's inputs up to `keep`.
   */
  private async rewind (keep: number, avoid?: string): Promise<void> {
    const C = this.client.hiddenSize
    const inputs = rows(this.hops[0].history, C, 0, keep)
    this.push.disarm()
    this.verifier?.reset()
    this.rpc.close(this.hops)
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.failover.replacement({ start: 0, end: this.client.numBlocks, history: keep > 0 ? [inputs] : [] }, undefined, avoid)
        this.hops.splice(0, this.hops.length, ...r.fresh)
        break
      } catch (e) {
        if (isClientBug(e) || e instanceof NoRouteError || attempt >= this.client.maxFailovers) throw e
      }
    }
    this.length = keep
  }

  /**
   * Steps hops[i] (see Push.stepOrCollect), hedging a late step on a spare (failover.ts).
   * Returns the output and how many route hops it took: 1, or the replacement's length when that
   * won and took hops[i]'s place. Each hop that ran records `x` as its input.
   */
  private async hedgedStep (i: number, x: Float32Array, tokens: number, position: number, chained?: Promise<InferMsg>): Promise<{ y: Float32Array, hops: number }> {
    const hop = this.hops[i]
    const t0 = performance.now()
    const primary = this.push.stepOrCollect(hop, x, tokens, position, chained)
    const deadline = this.client.hedge ? this.client.stepDeadline(hop.peer, tokens) : undefined
    // HopRpc.step has banned a failed original already.
    const raced = deadline === undefined ? { won: 'primary' as const, v: await primary } : await this.failover.raceHedge(i, primary, deadline, x, tokens, position, () => {})
    if (raced.won === 'hedge') return raced
    this.client.sampleStep(hop.peer, tokens, performance.now() - t0)
    record(hop, x, raced.v)
    return { y: raced.v, hops: 1 }
  }

  /** Closes every server session (best effort: a dead server frees its cache when it idles out). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.push.disarm() // their servers fail them as the sessions close
    this.verifier?.reset()
    // Best effort: a server that misses the CLOSE frees the session when it idles out (60 s).
    await Promise.all(this.hops.map(h => this.client.call(h.peer, { type: 'close', session: h.session }).catch(() => {})))
  }
}
