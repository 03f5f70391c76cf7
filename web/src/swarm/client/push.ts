/**
 * Petals-style push for a session's steps (client option `push`): a step arms every hop at once
 * with a CHAIN: the first carries the hidden states, each server pushes its output to the next,
 * and each answers the client with its output too — off the critical path, but it is what the next
 * hop's stored inputs are made of. The replies are read in route order; at the first hop that
 * fails the step goes on hop by hop with STEPs from there (failing over that hop first if the hop
 * itself failed).
 *
 * With hedging, hop i's CHAIN reply has a deadline of its own (estimated per server and place in
 * the route, from the step's start); a late CHAIN is hedged at once while its reply is still
 * awaited (no STEP is sent to that hop: its CHAIN may be running, and a STEP finding the position
 * taken would end the server's session).
 */
import { MalformedMessageError, PeerProtocolError, PositionError, PushNotReceivedError, SupersededError } from '../errors.ts'
import type { WireTensor } from '../wire/schema.ts'
import type { InferMsg } from '../wire/infer.ts'
import { lateAfter, type Failover } from './failover.ts'
import { isClientBug, record, type Hop, type HopRpc } from './hop-rpc.ts'

export class Push {
  /** CHAINs already sent to hops 1.. for the next step (see arm()). */
  private armed?: { position: number, tokens: number, calls: Map<Hop, Promise<InferMsg>> }

  /** `hops`: the session's route (a failover changes it in place). */
  constructor (private readonly rpc: HopRpc, private readonly failover: Failover, private readonly hops: Hop[]) {}

  /**
   * One hop's CHAIN: the inline input for the first hop, else "pushed by the previous hop". Hop i
   * answers after hops 0..i have run: its deadline grows with its place in the route.
   */
  private chain (i: number, position: number, tokens: number, hidden?: WireTensor): Promise<InferMsg> {
    const client = this.rpc.client
    const hops = this.hops
    const hop = hops[i]
    const next = hops[i + 1]
    const p = client.call(hop.peer, {
      type: 'chain',
      session: hop.session,
      position,
      tokens,
      input: hidden !== undefined ? { hidden } : { from: hops[i - 1].peer },
      next: next === undefined ? undefined : { peer: next.peer, session: next.session }
    }, client.timeoutMs * (i + 1))
    // Read by step(), or abandoned after an earlier hop's failure; either way a server that
    // does not know CHAIN is remembered, so later steps through it use STEP.
    p.catch(e => { if (e instanceof MalformedMessageError) client.noPush.add(hop.peer) })
    return p
  }

  /**
   * After a step that went through by push, arm hops 1.. for the next one-token step, at
   * `position`, at once: their CHAINs travel while the caller samples and embeds the next token,
   * so that step only sends the first hop its input. A step of another size replaces them (the
   * server answers `superseded`); disarm() forgets them.
   */
  arm (position: number): void {
    if (!this.canChain() || position + 1 > this.rpc.maxTokens) return
    const calls = new Map<Hop, Promise<InferMsg>>()
    for (let i = 1; i < this.hops.length; i++) calls.set(this.hops[i], this.chain(i, position, 1))
    this.armed = { position, tokens: 1, calls }
  }

  /** Forgets armed CHAINs (the session is closing: their servers fail them as the sessions close). */
  disarm (): void {
    this.armed = undefined
  }

  /** Whether this step may go by push: asked for, more than one hop, and every hop's server knows CHAIN. */
  canChain (): boolean {
    const client = this.rpc.client
    return client.push && this.hops.length > 1 && this.hops.every(h => !client.noPush.has(h.peer))
  }

  /**
   * One step by push: a CHAIN to every hop at once, replies read in route order. Returns how many
   * hops completed (their outputs recorded as the next hops' inputs), the last output, the
   * CHAIN replies still to come (a hop after a failure may have run all the same), and the error
   * of hop `done` when that hop itself failed (already banned); without one, hop `done` is fine
   * but its input did not come by push, so the caller sends it a STEP.
   */
  async step (hidden: Float32Array, tokens: number, position: number): Promise<{ done: number, x: Float32Array, calls: Map<Hop, Promise<InferMsg>>, error?: Error }> {
    const client = this.rpc.client
    const t0 = performance.now()
    const hops = this.hops
    const C = client.hiddenSize
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
      const deadline = client.hedge ? client.stepDeadline(key, tokens) : undefined
      try {
        let r = deadline === undefined ? await calls.get(hop)! : await lateAfter(calls.get(hop)!, t0 + deadline - performance.now())
        if (r === 'late') {
          // Late: hedge the hop while its CHAIN is still awaited. No STEP goes to it: the CHAIN
          // may be running, and a STEP at a position taken would end the server's session.
          client.log(`infer: ${hop.peer}'s CHAIN at ${position} has not answered in ${deadline!.toFixed(0)} ms`)
          const raced = await this.failover.raceHedge(i, calls.get(hop)!, 0, x, tokens, position, e => this.banChainFailure(hop, e))
          if (raced.won === 'hedge') return { done: i + raced.hops, x: raced.y, calls }
          r = raced.v
        }
        client.sampleStep(key, tokens, performance.now() - t0)
        y = this.rpc.output(hop, r, 'chained', tokens, position)
        pushError = r.type === 'chained' ? r.pushError : ''
      } catch (e) {
        // Its input was not pushed (the previous server could not reach it), or a STEP replaced it: the hop is fine.
        if (e instanceof PushNotReceivedError || e instanceof SupersededError) return { done: i, x, calls }
        // A CHAIN armed before this step waited through the caller's sampling too: whatever it
        // met, let the STEP tell whether the hop is alive.
        if (armed?.has(hop) === true) return { done: i, x, calls }
        if (e instanceof MalformedMessageError) {
          client.log(`infer: ${hop.peer} does not take CHAIN (${e.message}); stepping it directly`)
          return { done: i, x, calls }
        }
        if (isClientBug(e)) throw e
        this.rpc.ban(hop.peer, e as Error)
        return { done: i, x, calls, error: e as Error }
      }
      client.bans.clear(hop.peer)
      record(hop, x, y)
      x = y
      if (pushError !== '' && i + 1 < hops.length) {
        client.log(`infer: ${pushError}; stepping ${hops[i + 1].peer} directly`)
        return { done: i + 1, x, calls }
      }
    }
    return { done: hops.length, x, calls }
  }

  /**
   * A STEP to a hop whose CHAIN may still be out: the STEP replaces a CHAIN still waiting for its
   * push; if the CHAIN ran all the same (the STEP then finds the position taken), its reply is the output.
   */
  async stepOrCollect (hop: Hop, x: Float32Array, tokens: number, position: number, chained?: Promise<InferMsg>): Promise<Float32Array> {
    try {
      return await this.rpc.step(hop, x, tokens, position)
    } catch (e) {
      if (!(e instanceof PositionError) || chained === undefined) throw e
      // The CHAIN's own failure was handled where it was sent; here only its reply matters.
      const r = await chained.catch(() => undefined)
      // The CHAIN ran but its reply is lost: this hop's cache is a position ahead of what we
      // know. Treat the hop as failed: a fresh session replays its inputs.
      if (r === undefined) throw new PeerProtocolError(hop.peer, `its CHAIN ran position ${position}, but the reply was lost (${e.message})`)
      const y = this.rpc.output(hop, r, 'chained', tokens, position)
      this.rpc.client.bans.clear(hop.peer)
      return y
    }
  }

  /** Bans a CHAIN's server for a failure of its own (not a push that never came, a superseded wait, or an old server). */
  private banChainFailure (hop: Hop, e: Error): void {
    if (isClientBug(e) || e instanceof PushNotReceivedError || e instanceof SupersededError || e instanceof MalformedMessageError) return
    this.rpc.ban(hop.peer, e)
  }
}
