/**
 * Co-located peers (web/src/api/colocated.ts): a request to another wrapped peer of this process
 * reaches its handler without the network — a copy of the message, with the caller's id, the
 * request's timeout and abort signal, and a network transport's errors — and generation through a
 * co-located block server gives the tokens it gives over the network, concurrently batched too.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { ColocatedPeers } from '../../web/src/api/colocated.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { PeerTimeoutError, PeerUnreachableError } from '../../web/src/swarm/errors.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import type { RpcTransport } from '../../web/src/swarm/transport/index.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

type Body = Parameters<RpcTransport['request']>[2]
/** An opaque message: only delivered in-process in these tests, never encoded. */
const msg = (x: unknown): Body => x as Body
const PROTO = '/test/echo/1.0.0'

/** A transport that stands for the network: records each request and answers 'network reply'. */
function stubTransport (self: string): { transport: RpcTransport, sent: string[] } {
  const sent: string[] = []
  const transport: RpcTransport = {
    self,
    request: async (peer, protocol) => { sent.push(`${peer} ${protocol}`); return msg('network reply') },
    handle: () => {},
    unhandle: () => {},
    connected: () => false
  }
  return { transport, sent }
}

describe('ColocatedPeers', () => {
  it('delivers to a co-located handler with the caller\'s id and copies both ways; other peers go over the network', async () => {
    const { transport: ta, sent: netA } = stubTransport('a')
    const { transport: tb, sent: netB } = stubTransport('b')
    const peers = new ColocatedPeers()
    const a = peers.wrap(ta)
    const b = peers.wrap(tb)
    let kept: { data: Float32Array } | undefined
    const reply = { data: new Float32Array([4, 5]) }
    a.handle(PROTO, async (from, body) => {
      kept = body as unknown as { data: Float32Array }
      expect(from).toBe('b')
      return msg(reply)
    })
    const sent = { data: new Float32Array([1, 2, 3]) }
    const got = await b.request('a', PROTO, msg(sent), { timeoutMs: 1000 }) as unknown as { data: Float32Array }
    expect([...got.data]).toEqual([4, 5])
    expect(peers.delivered).toBe(1)
    expect(netB).toEqual([])
    // Copies: neither side sees the other's later writes.
    sent.data[0] = 9
    reply.data[0] = 9
    expect(kept?.data[0]).toBe(1)
    expect(got.data[0]).toBe(4)
    expect(b.connected?.('a')).toBe(true)
    expect(b.connected?.('far')).toBe(false)
    // A peer that is not wrapped, or a protocol the co-located peer does not serve, goes over the network.
    expect(await b.request('far', PROTO, msg(sent), { timeoutMs: 1000 })).toBe('network reply')
    expect(await b.request('a', '/other/1.0.0', msg(sent), { timeoutMs: 1000 })).toBe('network reply')
    expect(netB).toEqual(['far /test/echo/1.0.0', 'a /other/1.0.0'])
    // Once the handler is gone (the peer is leaving) the network is asked again.
    a.unhandle(PROTO)
    expect(await b.request('a', PROTO, msg(sent), { timeoutMs: 1000 })).toBe('network reply')
    expect(peers.delivered).toBe(1)
    // A peer's requests to itself are the network's business (a route may name one peer twice).
    expect(await a.request('a', '/other/1.0.0', msg(sent), { timeoutMs: 1000 })).toBe('network reply')
    expect(netA).toEqual(['a /other/1.0.0'])
  })

  it('times out on its clock, honours the abort signal, and turns a thrown handler into a stream reset', async () => {
    const clock = new ManualClock()
    const net = new MemoryNetwork({ seed: 4 })
    const peers = new ColocatedPeers(clock)
    const a = peers.wrap(net.endpoint('a'))
    const b = peers.wrap(net.endpoint('b'))
    a.handle(PROTO, async () => await new Promise<Body>(() => {})) // never answers
    a.handle('/test/throws/1.0.0', async () => { throw new Error('bad frame') })
    const late = b.request('a', PROTO, msg({}), { timeoutMs: 500 })
    clock.advance(499)
    await Promise.resolve()
    clock.advance(1)
    await expect(late).rejects.toBeInstanceOf(PeerTimeoutError)
    const ac = new AbortController()
    const aborted = b.request('a', PROTO, msg({}), { timeoutMs: 500, signal: ac.signal })
    ac.abort()
    await expect(aborted).rejects.toThrow(/aborted/)
    await expect(b.request('a', PROTO, msg({}), { timeoutMs: 500, signal: ac.signal })).rejects.toThrow(/aborted/)
    const reset = b.request('a', '/test/throws/1.0.0', msg({}), { timeoutMs: 500 })
    await expect(reset).rejects.toBeInstanceOf(PeerUnreachableError)
    await expect(reset).rejects.toThrow(/stream reset: Error: bad frame/)
  })
})

const source = sourceFrom('models/byte-llama')
const MODEL = 'byte-llama'
const roles: ServerRole[] = []
afterAll(async () => { for (const r of roles.splice(0)) await r.stop() })

describe('generation through a co-located block server', () => {
  it('gives the tokens the network gives, 4 concurrent generations batched, no infer request on the network', async () => {
    const { ends, config } = await loadClientEnds(source, cpu)
    const prompts = ['The man', 'It was a', 'In the ', 'She said'].map(p => [...new TextEncoder().encode(p)])
    const run = async (colocated: boolean): Promise<{ tokens: number[][], maxBatch: number, network: number, local: number }> => {
      const net = new MemoryNetwork({ seed: 6 })
      const dir = new MemoryDirectory()
      const peers = new ColocatedPeers()
      const wrap = (t: RpcTransport): RpcTransport => colocated ? peers.wrap(t) : t
      const role = new ServerRole({
        transport: wrap(net.endpoint('s')), directory: dir, model: MODEL, numBlocks: config.numLayers, span: { start: 0, end: 3 },
        loadSpan: async (s, e) => await loadSpanBackend(source, cpu, MODEL, s, e), cacheBudgetBytes: 1 << 22, log: () => {}
      })
      await role.start()
      roles.push(role)
      const start = net.delivered
      const client = new InferenceClient({ transport: wrap(net.endpoint('c')), directory: dir, model: MODEL, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, timeoutMs: 60_000, hedge: false })
      const tokens = await Promise.all(prompts.map(async p => (await swarmGenerate(client, ends, p, { maxNewTokens: 12, stopTokens: [] })).tokens))
      const maxBatch = role.server!.stats.maxBatch
      await role.stop()
      return { tokens, maxBatch, network: net.delivered - start, local: peers.delivered }
    }
    const remote = await run(false)
    const local = await run(true)
    expect(local.tokens).toEqual(remote.tokens)
    expect(local.tokens.every(t => t.length === 12)).toBe(true)
    expect(local.maxBatch).toBeGreaterThanOrEqual(2)
    expect(remote.network).toBeGreaterThan(0)
    // Every request (INFO, OPEN, STEPs, CLOSE) went in-process.
    expect(local.network).toBe(0)
    expect(local.local).toBeGreaterThanOrEqual(4 * 12)
  })
})
