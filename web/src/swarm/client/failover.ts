/**
 * Failover and hedging for a session's hops (session.ts). Each hop keeps the inputs it was sent,
 * so when its server fails (error or timeout) the session bans that peer, re-plans only that
 * hop's blocks, replays the stored inputs into the replacement chain to rebuild its KV cache, and
 * carries on (planned over the directory records the client last fetched when at most
 * RECORD_REFRESH_MS old, else a fresh lookup: a spare found there is usually still up).
 * Deterministic servers give the same outputs, so greedy decoding is unchanged by a failover.
 *
 * Hedged steps: a STEP not answered by its server's deadline (client/latency.ts; for a prefill of
 * T tokens, T × the server's per-token time in earlier prefills) starts
 * that hop's failover path in parallel — plan a replacement chain for its blocks (not through the
 * late server, over the directory records the client last fetched when they are at most
 * RECORD_REFRESH_MS old), replay the hop's stored inputs, run the step there — while the original is still
 * awaited. The first answer wins. If the original wins, the replacement is aborted and its
 * sessions closed; it was never part of the route. If the replacement wins, it takes the hop's
 * place; the original's late reply is dropped (never recorded, so never applied twice), its
 * session closed once that reply or the hard timeout comes, and it is banned only if it errs or
 * times out. One hedge per hop and step; none when no spare covers the blocks (NoRouteError).
 */
import { MAX_STEP_TOKENS, RECORD_REFRESH_MS } from '../constants.ts'
import type { RouteSegment } from '../route.ts'
import type { FailoverEvent } from './client.ts'
import { isClientBug, record, type Hop, type HopRpc } from './hop-rpc.ts'

/** A replacement chain for a hop's blocks, holding the hop's cache again. */
export interface Replacement { fresh: Hop[], route: RouteSegment[], replayed: number }

export class Failover {
  /** `hops`: the session's route, where a replacement takes the failed hop's place; `failovers`: its record of them. */
  constructor (private readonly rpc: HopRpc, private readonly hops: Hop[], private readonly failovers: FailoverEvent[]) {}

  /**
   * Awaits hops[i]'s answer `primary`; past `deadline` ms, races it against a hedge on a spare.
   * The original winning: its value (the caller records it). The spare winning: it has taken
   * hops[i]'s place, with its output and length. `banFailed` bans the original for an error that
   * comes after the spare took over (unless the primary bans by itself). Throws the original's
   * error when the spare cannot take over.
   */
  async raceHedge<T> (i: number, primary: Promise<T>, deadline: number, x: Float32Array, tokens: number, position: number, banFailed: (e: Error) => void): Promise<{ won: 'primary', v: T } | { won: 'hedge', y: Float32Array, hops: number }> {
    const hop = this.hops[i]
    const first = await lateAfter(primary, deadline)
    if (first !== 'late') return { won: 'primary', v: first }

    this.rpc.client.log(`infer: ${hop.peer} has not answered blocks [${hop.start}, ${hop.end}) at ${position} in ${deadline.toFixed(0)} ms; hedging on a spare`)
    const abort = new AbortController()
    const hedge = this.hedge(hop, x, tokens, position, abort.signal)
    const dropHedge = (): void => {
      abort.abort()
      hedge.then(h => this.rpc.close(h.fresh), () => {})
    }
    type Outcome = { k: 'primary', v: T } | { k: 'primaryError', e: Error } | { k: 'hedge', h: Replacement & { y: Float32Array, ms: number } } | { k: 'hedgeError', e: Error }
    const outcome: Outcome = await Promise.race([
      primary.then(v => ({ k: 'primary' as const, v }), (e: unknown) => ({ k: 'primaryError' as const, e: e as Error })),
      hedge.then(h => ({ k: 'hedge' as const, h }), (e: unknown) => ({ k: 'hedgeError' as const, e: e as Error }))
    ])
    switch (outcome.k) {
      case 'primary':
        // The late server answered first: drop the replacement (it never joined the route).
        dropHedge()
        return { won: 'primary', v: outcome.v }
      case 'hedge':
        // The spare won. The original is still awaited in the background and banned if it errs
        // or hits the hard timeout; its reply, whatever it is, is dropped here.
        // banFailed handled the failure; the trailing catch only covers close()'s own (best effort).
        primary.catch((e: unknown) => banFailed(e as Error)).finally(() => this.rpc.close([hop])).catch(() => {})
        this.adopt(i, outcome.h, new Error(`no answer in ${deadline.toFixed(0)} ms (hedged)`))
        return { won: 'hedge', y: outcome.h.y, hops: outcome.h.fresh.length }
      case 'primaryError': {
        // The original failed; the hedge already under way is its failover.
        if (isClientBug(outcome.e)) {
          dropHedge()
          throw outcome.e
        }
        let h: Replacement & { y: Float32Array, ms: number }
        try {
          h = await hedge
        } catch {
          throw outcome.e // the caller takes it from here (failover loop, CHAIN error handling)
        }
        banFailed(outcome.e)
        this.rpc.close([hop])
        this.adopt(i, h, outcome.e)
        return { won: 'hedge', y: h.y, hops: h.fresh.length }
      }
      case 'hedgeError':
        // No spare (NoRouteError) or the spare failed: the original is all there is, up to the hard timeout.
        this.rpc.client.log(`infer: hedge of blocks [${hop.start}, ${hop.end}) failed (${outcome.e.message}); waiting for ${hop.peer}`)
        return { won: 'primary', v: await primary }
    }
  }

  /** The failover path for `failed`, run beside its late step: a replacement that has run the step too. */
  private async hedge (failed: Hop, x: Float32Array, tokens: number, position: number, signal: AbortSignal): Promise<Replacement & { y: Float32Array, ms: number }> {
    const t0 = performance.now()
    const r = await this.replacement(failed, signal, failed.peer, RECORD_REFRESH_MS)
    try {
      let y = x
      for (const hop of r.fresh) {
        const out = await this.rpc.step(hop, y, tokens, position, signal)
        record(hop, y, out)
        y = out
      }
      return { ...r, y, ms: performance.now() - t0 }
    } catch (e) {
      this.rpc.close(r.fresh)
      throw e
    }
  }

  /**
   * A fresh chain over `failed`'s blocks holding its cache: planned (without `avoid`), opened, and
   * fed `failed`'s stored inputs. Aborted by `signal` (its sessions then closed). The verifier
   * (verify.ts) builds its second and third opinions with it too.
   */
  async replacement (failed: Pick<Hop, 'start' | 'end' | 'history'>, signal?: AbortSignal, avoid?: string | ReadonlySet<string>, cachedMs?: number): Promise<Replacement> {
    const client = this.rpc.client
    const t0 = performance.now()
    const route = await client.plan(failed.start, failed.end, this.rpc.maxTokens, avoid, cachedMs)
    const planMs = performance.now() - t0
    signal?.throwIfAborted()
    const fresh = await this.rpc.open(route, signal)
    // Replay: the failed hop's inputs flow through the new chain in chunks; each new hop records its own.
    let replayed = 0
    try {
      for (const past of chunk(failed.history, client.hiddenSize)) {
        let x = past.data
        for (const hop of fresh) {
          const y = await this.rpc.step(hop, x, past.tokens, replayed, signal)
          record(hop, x, y)
          x = y
        }
        replayed += past.tokens
      }
    } catch (e) {
      this.rpc.close(fresh)
      throw e
    }
    client.log(`infer: replacement for [${failed.start}, ${failed.end}) planned in ${planMs.toFixed(0)} ms, opened and replayed in ${(performance.now() - t0 - planMs).toFixed(0)} ms`)
    return { fresh, route, replayed }
  }

  /** Puts a replacement in hops[i]'s place and records the failover. */
  private adopt (i: number, r: Replacement & { ms: number }, cause: Error): void {
    const failed = this.hops[i]
    this.hops.splice(i, 1, ...r.fresh)
    const ev: FailoverEvent = { peer: failed.peer, error: cause.message, span: { start: failed.start, end: failed.end }, replacement: r.route, replayed: r.replayed, ms: r.ms }
    this.failovers.push(ev)
    this.rpc.client.log(`infer: blocks [${failed.start}, ${failed.end}) moved from ${failed.peer} to ${r.route.map(s => `${s.peer}[${s.start},${s.end})`).join(' → ')}, replayed ${r.replayed} tokens in ${ev.ms.toFixed(0)} ms`)
  }

  /**
   * Replace hops[i] by a fresh chain over its blocks, replaying its stored inputs. Planned, like a
   * hedge, over the records last fetched when they are fresh enough (the failed peer is banned):
   * a new directory lookup can wait seconds on the dead server's own records.
   */
  async replace (i: number, cause: Error): Promise<void> {
    const t0 = performance.now()
    const failed = this.hops[i]
    this.rpc.close([failed])
    const r = await this.replacement(failed, undefined, undefined, RECORD_REFRESH_MS)
    this.adopt(i, { ...r, ms: performance.now() - t0 }, cause)
  }
}

/** `p`, or 'late' when it has not settled within `ms` (a rejection comes through as one). */
export async function lateAfter<T> (p: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<'late'>(resolve => { timer = setTimeout(() => resolve('late'), Math.max(0, ms)) })
  return await Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/** Regroup a history of (T_i, C) inputs into chunks of at most MAX_STEP_TOKENS positions. */
function * chunk (history: readonly Float32Array[], C: number): Generator<{ data: Float32Array, tokens: number }> {
  const total = history.reduce((a, h) => a + h.length / C, 0)
  const all = new Float32Array(total * C)
  let off = 0
  for (const h of history) {
    all.set(h, off)
    off += h.length
  }
  for (let t = 0; t < total; t += MAX_STEP_TOKENS) {
    const n = Math.min(MAX_STEP_TOKENS, total - t)
    yield { data: all.subarray(t * C, (t + n) * C), tokens: n }
  }
}
