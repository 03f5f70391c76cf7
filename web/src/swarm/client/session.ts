/**
 * A client's inference session over all blocks: a chain of server sessions, one per route
 * segment. Each segment keeps the inputs it was sent, so when its server fails (error or timeout)
 * the session bans that peer, re-plans only that segment's blocks, replays the stored inputs into
 * the replacement chain to rebuild its KV cache, and carries on (planned over the directory records
 * the client last fetched when at most RECORD_REFRESH_MS old, else a fresh lookup: a spare found
 * there is usually still up). Deterministic servers give the
 * same outputs, so greedy decoding is unchanged by a failover.
 *
 * With push (client option `push`), a step arms every hop at once with a CHAIN: the first carries the
 * hidden states, each server pushes its output to the next, and each answers the client with its
 * output too — off the critical path, but it is what the next hop's stored inputs are made of.
 * The replies are read in route order; at the first hop that fails the step goes on hop by hop
 * with STEPs from there (failing over that hop first if the hop itself failed).
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
 * With push, hop i's CHAIN reply has a deadline of its own (estimated per server and place in the
 * route, from the step's start); a late CHAIN is hedged at once while its reply is still awaited
 * (no STEP is sent to that hop: its CHAIN may be running, and a STEP finding the position taken
 * would end the server's session).
 */
import { MAX_STEP_TOKENS, RECORD_REFRESH_MS } from '../constants.ts'
import {
  FailoverExhaustedError, MalformedMessageError, NoRouteError, PeerProtocolError, MessageTooLargeError, PositionError, PushNotReceivedError, SupersededError,
  SwarmArgumentError, TensorShapeError
} from '../errors.ts'
import type { RouteSegment } from '../route.ts'
import type { WireTensor } from '../wire/bytes.ts'
import type { InferMsg } from '../wire/infer.ts'
import type { FailoverEvent, InferenceClient } from './client.ts'

/** A replacement chain for a hop's blocks, holding the hop's cache again. */
interface Replacement { fresh: Hop[], route: RouteSegment[], replayed: number }

interface Hop extends RouteSegment {
  /** Server's session id. */
  session: string
  /** Inputs sent so far, in order: (T_i, C) each; together positions [0, length). */
  history: Float32Array[]
}

/** Errors that say the client itself is wrong: failing over would not help. */
function isClientBug (e: unknown): boolean {
  return e instanceof TensorShapeError || e instanceof PositionError || e instanceof MalformedMessageError || e instanceof MessageTooLargeError
}

export class InferenceSession {
  private hops: Hop[] = []
  /** Positions processed, in tokens. */
  length = 0
  readonly failovers: FailoverEvent[] = []
  private closed = false
  /** CHAINs already sent to hops 1.. for the next step (see arm()). */
  private armed?: { position: number, tokens: number, calls: Map<Hop, Promise<InferMsg>> }

  constructor (private readonly client: InferenceClient, readonly maxTokens: number) {
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new SwarmArgumentError(`maxTokens must be ≥ 1, got ${maxTokens}`)
  }

  /** The current route. */
  get route (): RouteSegment[] {
    return this.hops.map(h => ({ peer: h.peer, start: h.start, end: h.end }))
  }

  async open (): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const route = await this.client.plan(0, this.client.numBlocks, this.maxTokens)
      try {
        this.hops = await this.openHops(route)
        return
      } catch (e) {
        if (isClientBug(e) || attempt >= this.client.maxFailovers) throw e
      }
    }
  }

  /** Opens server sessions for each segment; on failure bans that peer, closes the rest, rethrows. */
  private async openHops (route: RouteSegment[], signal?: AbortSignal): Promise<Hop[]> {
    const hops: Hop[] = []
    try {
      for (const seg of route) {
        const r = await this.callOrBan(seg.peer, { type: 'open', model: this.client.model, start: seg.start, end: seg.end, maxTokens: this.maxTokens }, signal)
        if (r.type !== 'opened') throw new PeerProtocolError(seg.peer, `expected opened, got ${r.type}`)
        hops.push({ ...seg, session: r.session, history: [] })
      }
      return hops
    } catch (e) {
      this.closeHops(hops)
      throw e
    }
  }

  /** Best effort: a dead server frees its cache when it idles out. */
  private closeHops (hops: readonly Hop[]): void {
    for (const h of hops) void this.client.call(h.peer, { type: 'close', session: h.session }).catch(() => {})
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

  private ban (peer: string, e: Error): void {
    const ms = this.client.bans.ban(peer)
    this.client.log(`infer: ${peer} failed (${e.message}); banned for ${ms} ms`)
  }

  /** A reply's (T, C) output at `position`, or PeerProtocolError. */
  private output (hop: Hop, r: InferMsg, type: 'output' | 'chained', tokens: number, position: number): Float32Array {
    if (r.type !== type) throw new PeerProtocolError(hop.peer, `expected ${type}, got ${r.type}`)
    const shape = r.hidden.shape
    if (shape.length !== 2 || shape[0] !== tokens || shape[1] !== this.client.hiddenSize || r.position !== position) {
      throw new PeerProtocolError(hop.peer, `server ${hop.peer} answered [${shape.join(', ')}] at ${r.position}, expected [${tokens}, ${this.client.hiddenSize}] at ${position}`)
    }
    return r.hidden.data
  }

  /** Sends (T, C) through one hop at `position`; returns (T, C). */
  private async sendStep (hop: Hop, hidden: Float32Array, tokens: number, position: number, signal?: AbortSignal): Promise<Float32Array> {
    const r = await this.callOrBan(hop.peer, { type: 'step', session: hop.session, position, hidden: { shape: [tokens, this.client.hiddenSize], data: hidden } }, signal)
    return this.output(hop, r, 'output', tokens, position)
  }

  /**
   * One hop's CHAIN: the inline input for the first hop, else "pushed by the previous hop". Hop i
   * answers after hops 0..i have run: its deadline grows with its place in the route.
   */
  private chain (i: number, position: number, tokens: number, hidden?: WireTensor): Promise<InferMsg> {
    const hops = this.hops
    const hop = hops[i]
    const next = hops[i + 1]
    const p = this.client.call(hop.peer, {
      type: 'chain',
      session: hop.session,
      position,
      tokens,
      input: hidden !== undefined ? { hidden } : { from: hops[i - 1].peer },
      next: next === undefined ? undefined : { peer: next.peer, session: next.session }
    }, this.client.timeoutMs * (i + 1))
    // Read by chainStep, or abandoned after an earlier hop's failure; either way a server that
    // does not know CHAIN is remembered, so later steps through it use STEP.
    p.catch(e => { if (e instanceof MalformedMessageError) this.client.noPush.add(hop.peer) })
    return p
  }

  /**
   * After a step that went through by push, arm hops 1.. for the next one-token step at once:
   * their CHAINs travel while the caller samples and embeds the next token, so that step only
   * sends the first hop its input. A step of another size replaces them (the server answers
   * `superseded`); close() ends them.
   */
  private arm (): void {
    if (!this.canChain() || this.length + 1 > this.maxTokens) return
    const calls = new Map<Hop, Promise<InferMsg>>()
    for (let i = 1; i < this.hops.length; i++) calls.set(this.hops[i], this.chain(i, this.length, 1))
    this.armed = { position: this.length, tokens: 1, calls }
  }

  /** Whether this step may go by push: asked for, more than one hop, and every hop's server knows CHAIN. */
  private canChain (): boolean {
    return this.client.push && this.hops.length > 1 && this.hops.every(h => !this.client.noPush.has(h.peer))
  }

  /**
   * One step by push: a CHAIN to every hop at once, replies read in route order. Returns how many
   * hops completed (their outputs recorded as the next hops' inputs), the last output, the
   * CHAIN replies still to come (a hop after a failure may have run all the same), and the error
   * of hop `done` when that hop itself failed (already banned); without one, hop `done` is fine
   * but its input did not come by push, so the caller sends it a STEP.
   */
  private async chainStep (hidden: Float32Array, tokens: number, position: number): Promise<{ done: number, x: Float32Array, calls: Map<Hop, Promise<InferMsg>>, error?: Error }> {
    const t0 = performance.now()
    const hops = this.hops
    const C = this.client.hiddenSize
    const armed = this.armed?.position === position && this.armed.tokens === tokens ? this.armed.calls : undefined
    this.armed = undefined
    const calls = new Map<Hop, Promise<InferMsg>>()
    hops.forEach((hop, i) => {
      const early = armed?.get(hop)
      calls.set(hop, early ?? this.chain(i, position, tokens, i === 0 ? { shape: [tokens, C], data: hidden } : undefined))
    })
    let x = hidden
    for (let i = 0; i < hops.length; i++) {
      const hop = hops[i]
      let y: Float32Array
      let pushError: string
      // Hop i answers after hops 0..i ran: its own estimate, per place in the route.
      const key = `${hop.peer} chain ${i}`
      const deadline = this.client.hedge ? this.client.stepDeadline(key, tokens) : undefined
      try {
        let r = deadline === undefined ? await calls.get(hop)! : await lateAfter(calls.get(hop)!, t0 + deadline - performance.now())
        if (r === 'late') {
          // Late: hedge the hop while its CHAIN is still awaited. No STEP goes to it: the CHAIN
          // may be running, and a STEP at a position taken would end the server's session.
          this.client.log(`infer: ${hop.peer}'s CHAIN at ${position} has not answered in ${deadline!.toFixed(0)} ms`)
          const raced = await this.raceHedge(i, calls.get(hop)!, 0, x, tokens, position, e => this.banChainFailure(hop, e))
          if (raced.won === 'hedge') return { done: i + raced.hops, x: raced.y, calls }
          r = raced.v
        }
        this.client.sampleStep(key, tokens, performance.now() - t0)
        y = this.output(hop, r, 'chained', tokens, position)
        pushError = r.type === 'chained' ? r.pushError : ''
      } catch (e) {
        // Its input was not pushed (the previous server could not reach it), or a STEP replaced it: the hop is fine.
        if (e instanceof PushNotReceivedError || e instanceof SupersededError) return { done: i, x, calls }
        // A CHAIN armed before this step waited through the caller's sampling too: whatever it
        // met, let the STEP tell whether the hop is alive.
        if (armed?.has(hop) === true) return { done: i, x, calls }
        if (e instanceof MalformedMessageError) {
          this.client.log(`infer: ${hop.peer} does not take CHAIN (${e.message}); stepping it directly`)
          return { done: i, x, calls }
        }
        if (isClientBug(e)) throw e
        this.ban(hop.peer, e as Error)
        return { done: i, x, calls, error: e as Error }
      }
      this.client.bans.clear(hop.peer)
      hop.history.push(x.slice())
      x = y
      if (pushError !== '' && i + 1 < hops.length) {
        this.client.log(`infer: ${pushError}; stepping ${hops[i + 1].peer} directly`)
        return { done: i + 1, x, calls }
      }
    }
    return { done: hops.length, x, calls }
  }

  /**
   * A STEP to a hop whose CHAIN may still be out: the STEP replaces a CHAIN still waiting for its
   * push; if the CHAIN ran all the same (the STEP then finds the position taken), its reply is the output.
   */
  private async stepOrCollect (hop: Hop, x: Float32Array, tokens: number, position: number, chained?: Promise<InferMsg>): Promise<Float32Array> {
    try {
      return await this.sendStep(hop, x, tokens, position)
    } catch (e) {
      if (!(e instanceof PositionError) || chained === undefined) throw e
      const r = await chained.catch(() => undefined)
      // The CHAIN ran but its reply is lost: this hop's cache is a position ahead of what we
      // know. Treat the hop as failed: a fresh session replays its inputs.
      if (r === undefined) throw new PeerProtocolError(hop.peer, `its CHAIN ran position ${position}, but the reply was lost (${e.message})`)
      const y = this.output(hop, r, 'chained', tokens, position)
      this.client.bans.clear(hop.peer)
      return y
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
    if (this.canChain()) {
      ({ done: i, x, calls, error: hopError } = await this.chainStep(hidden, tokens, position))
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
            await this.failover(i, cause)
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
    // Arm the next step only when this one went through cleanly by push (the route is warm).
    if (pushed && this.client.armAhead) this.arm()
    return x
  }

  /**
   * Steps hops[i] (see stepOrCollect), hedging a late step on a spare (module comment).
   * Returns the output and how many route hops it took: 1, or the replacement's length when that
   * won and took hops[i]'s place. Each hop that ran records `x` as its input.
   */
  private async hedgedStep (i: number, x: Float32Array, tokens: number, position: number, chained?: Promise<InferMsg>): Promise<{ y: Float32Array, hops: number }> {
    const hop = this.hops[i]
    const t0 = performance.now()
    const primary = this.stepOrCollect(hop, x, tokens, position, chained)
    const deadline = this.client.hedge ? this.client.stepDeadline(hop.peer, tokens) : undefined
    // callOrBan has banned a failed original already.
    const raced = deadline === undefined ? { won: 'primary' as const, v: await primary } : await this.raceHedge(i, primary, deadline, x, tokens, position, () => {})
    if (raced.won === 'hedge') return raced
    this.client.sampleStep(hop.peer, tokens, performance.now() - t0)
    hop.history.push(x.slice())
    return { y: raced.v, hops: 1 }
  }

  /**
   * Awaits hops[i]'s answer `primary`; past `deadline` ms, races it against a hedge on a spare.
   * The original winning: its value (the caller records it). The spare winning: it has taken
   * hops[i]'s place, with its output and length. `banFailed` bans the original for an error that
   * comes after the spare took over (unless the primary bans by itself). Throws the original's
   * error when the spare cannot take over.
   */
  private async raceHedge<T> (i: number, primary: Promise<T>, deadline: number, x: Float32Array, tokens: number, position: number, banFailed: (e: Error) => void): Promise<{ won: 'primary', v: T } | { won: 'hedge', y: Float32Array, hops: number }> {
    const hop = this.hops[i]
    const first = await lateAfter(primary, deadline)
    if (first !== 'late') return { won: 'primary', v: first }

    this.client.log(`infer: ${hop.peer} has not answered blocks [${hop.start}, ${hop.end}) at ${position} in ${deadline.toFixed(0)} ms; hedging on a spare`)
    const abort = new AbortController()
    const hedge = this.hedge(hop, x, tokens, position, abort.signal)
    const dropHedge = (): void => {
      abort.abort()
      hedge.then(h => this.closeHops(h.fresh), () => {})
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
        primary.catch((e: unknown) => banFailed(e as Error)).finally(() => this.closeHops([hop])).catch(() => {})
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
        this.closeHops([hop])
        this.adopt(i, h, outcome.e)
        return { won: 'hedge', y: h.y, hops: h.fresh.length }
      }
      case 'hedgeError':
        // No spare (NoRouteError) or the spare failed: the original is all there is, up to the hard timeout.
        this.client.log(`infer: hedge of blocks [${hop.start}, ${hop.end}) failed (${outcome.e.message}); waiting for ${hop.peer}`)
        return { won: 'primary', v: await primary }
    }
  }

  /** Bans a CHAIN's server for a failure of its own (not a push that never came, a superseded wait, or an old server). */
  private banChainFailure (hop: Hop, e: Error): void {
    if (isClientBug(e) || e instanceof PushNotReceivedError || e instanceof SupersededError || e instanceof MalformedMessageError) return
    this.ban(hop.peer, e)
  }

  /** The failover path for `failed`, run beside its late step: a replacement that has run the step too. */
  private async hedge (failed: Hop, x: Float32Array, tokens: number, position: number, signal: AbortSignal): Promise<Replacement & { y: Float32Array, ms: number }> {
    const t0 = performance.now()
    const r = await this.replacement(failed, signal, failed.peer, RECORD_REFRESH_MS)
    try {
      let y = x
      for (const hop of r.fresh) {
        const out = await this.sendStep(hop, y, tokens, position, signal)
        hop.history.push(y.slice())
        y = out
      }
      return { ...r, y, ms: performance.now() - t0 }
    } catch (e) {
      this.closeHops(r.fresh)
      throw e
    }
  }

  /**
   * A fresh chain over `failed`'s blocks holding its cache: planned (without `avoid`), opened, and
   * fed `failed`'s stored inputs. Aborted by `signal` (its sessions then closed).
   */
  private async replacement (failed: Hop, signal?: AbortSignal, avoid?: string, cachedMs?: number): Promise<Replacement> {
    const t0 = performance.now()
    const route = await this.client.plan(failed.start, failed.end, this.maxTokens, avoid, cachedMs)
    const planMs = performance.now() - t0
    signal?.throwIfAborted()
    const fresh = await this.openHops(route, signal)
    // Replay: the failed hop's inputs flow through the new chain in chunks; each new hop records its own.
    let replayed = 0
    try {
      for (const past of chunk(failed.history, this.client.hiddenSize)) {
        let x = past.data
        for (const hop of fresh) {
          const y = await this.sendStep(hop, x, past.tokens, replayed, signal)
          hop.history.push(x.slice())
          x = y
        }
        replayed += past.tokens
      }
    } catch (e) {
      this.closeHops(fresh)
      throw e
    }
    this.client.log(`infer: replacement for [${failed.start}, ${failed.end}) planned in ${planMs.toFixed(0)} ms, opened and replayed in ${(performance.now() - t0 - planMs).toFixed(0)} ms`)
    return { fresh, route, replayed }
  }

  /** Puts a replacement in hops[i]'s place and records the failover. */
  private adopt (i: number, r: Replacement & { ms: number }, cause: Error): void {
    const failed = this.hops[i]
    this.hops.splice(i, 1, ...r.fresh)
    const ev: FailoverEvent = { peer: failed.peer, error: cause.message, span: { start: failed.start, end: failed.end }, replacement: r.route, replayed: r.replayed, ms: r.ms }
    this.failovers.push(ev)
    this.client.log(`infer: blocks [${failed.start}, ${failed.end}) moved from ${failed.peer} to ${r.route.map(s => `${s.peer}[${s.start},${s.end})`).join(' → ')}, replayed ${r.replayed} tokens in ${ev.ms.toFixed(0)} ms`)
  }

  /**
   * Replace hops[i] by a fresh chain over its blocks, replaying its stored inputs. Planned, like a
   * hedge, over the records last fetched when they are fresh enough (the failed peer is banned):
   * a new directory lookup can wait seconds on the dead server's own records.
   */
  private async failover (i: number, cause: Error): Promise<void> {
    const t0 = performance.now()
    const failed = this.hops[i]
    this.closeHops([failed])
    const r = await this.replacement(failed, undefined, undefined, RECORD_REFRESH_MS)
    this.adopt(i, { ...r, ms: performance.now() - t0 }, cause)
  }

  /** Closes every server session (best effort: a dead server frees its cache when it idles out). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.armed = undefined // their servers fail them as the sessions close
    await Promise.all(this.hops.map(h => this.client.call(h.peer, { type: 'close', session: h.session }).catch(() => {})))
  }
}

/** `p`, or 'late' when it has not settled within `ms` (a rejection comes through as one). */
async function lateAfter<T> (p: Promise<T>, ms: number): Promise<T | 'late'> {
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
