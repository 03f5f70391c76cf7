import { afterEach, describe, expect, it } from 'vitest'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import type { InferenceSession } from '../../web/src/swarm/client/session.ts'
import { NoRouteError } from '../../web/src/swarm/errors.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import type { RpcTransport } from '../../web/src/swarm/transport/index.ts'
import { ERROR_CODES } from '../../web/src/swarm/errors.ts'
import { writeInfer } from '../../web/src/swarm/wire/infer.ts'
import { BLOCKS, C, fakeEnds, FakeSpanBackend, localGreedy } from './fakes.ts'

const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

const PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
const N = 12

/**
 * Timeouts of the seeded network's requests (real time: MemoryNetwork's own timers). By default
 * they are far beyond any healthy wait, so a loaded machine's stalls are never failures; a test
 * whose subject is one of them (a push lost on a cut link, a client request lost on one) sets
 * that one short and leaves the others long.
 */
const RELAXED = { pushTimeoutMs: 10_000, timeoutMs: 30_000 }
/** Hedging is hedge.test.ts's subject: here its deadline floor is the relaxed timeout, so a step slowed by the machine is never hedged (a hedge is a failover event). */
const HEDGE_FLOOR_MS = RELAXED.timeoutMs

/** Servers with the given spans, and a client that lets them push unless `push: false`. */
async function swarm (seed: number, spans: Array<[string, number, number]>, latencyMs = 0, opts: { push?: boolean, legacy?: string[], pushTimeoutMs?: number, timeoutMs?: number } = {}) {
  const net = new MemoryNetwork({ seed, latencyMs })
  const dir = new MemoryDirectory()
  for (const [peer, start, end] of spans) {
    const role = new ServerRole({
      transport: opts.legacy?.includes(peer) === true ? legacy(net.endpoint(peer)) : net.endpoint(peer),
      directory: dir,
      model: 'fake',
      numBlocks: BLOCKS,
      span: { start, end },
      loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e),
      cacheBudgetBytes: 1 << 20,
      throughput: 100,
      pushTimeoutMs: opts.pushTimeoutMs ?? RELAXED.pushTimeoutMs
    })
    await role.start()
    roles.push(role)
  }
  const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: opts.timeoutMs ?? RELAXED.timeoutMs, hedgeFloorMs: HEDGE_FLOOR_MS, push: opts.push ?? true })
  return { net, dir, client }
}

/** A server from before push: it answers CHAIN and PUSH (types 9–12) as unknown messages. */
function legacy (t: RpcTransport): RpcTransport {
  return {
    self: t.self,
    request: (peer, protocol, body, o) => t.request(peer, protocol, body, o),
    unhandle: (protocol) => t.unhandle(protocol),
    handle: (protocol, handler) => t.handle(protocol, async (from, body) => {
      const type = body.meta?.t as number
      return type >= 9 && type <= 12
        ? writeInfer({ type: 'error', code: ERROR_CODES.malformed, message: `infer: unknown message type ${type}` })
        : await handler(from, body)
    })
  }
}

const pushes = (): number => roles.reduce((a, r) => a + (r.server?.stats.pushesSent ?? 0), 0)

describe('inference through the swarm (fake blocks, seeded network)', () => {
  it('greedy tokens through 3 servers equal the single-process reference', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client } = await swarm(1, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6]])
    const r = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N })
    expect(r.tokens).toEqual(ref)
    expect(r.session.route.map(s => s.peer)).toEqual(['s1', 's2', 's3'])
    expect(r.session.failovers).toHaveLength(0)
    // Every step went by push: s1 → s2 → s3, two pushes per step (prefill + N − 1 decode steps).
    expect(pushes()).toBe(2 * N)
  })

  it('steps of changing sizes after an armed step (its CHAINs superseded) give the same numbers as STEPs', async () => {
    const sizes = [8, 1, 3, 1, 1, 2]
    const ids = Array.from({ length: sizes.reduce((a, b) => a + b, 0) }, (_, i) => (i * 7 + 3) % 32)
    const run = async (push: boolean): Promise<number[]> => {
      const { client } = await swarm(3, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6]], 0, { push })
      const session = await client.openSession(ids.length)
      const out: number[] = []
      let at = 0
      for (const n of sizes) {
        out.push(...await session.step(await fakeEnds.embed(ids.slice(at, at + n)), n))
        at += n
      }
      await session.close()
      await Promise.all(roles.splice(0).map(x => x.stop()))
      return out
    }
    expect(await run(true)).toEqual(await run(false))
  })

  it('without push (client-driven STEPs) the tokens are the same and no server pushes', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client } = await swarm(1, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6]], 0, { push: false })
    expect((await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N })).tokens).toEqual(ref)
    expect(pushes()).toBe(0)
  })

  it('a server from before push (mixed versions): the client steps it directly, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client } = await swarm(2, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6]], 0, { legacy: ['s2'] })
    const r = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N })
    expect(r.tokens).toEqual(ref)
    expect(r.session.failovers).toHaveLength(0)
    expect(client.noPush.has('s2')).toBe(true)
    expect(client.bans.isBanned('s2')).toBe(false)
  })

  it('a cut link between two servers: the push fails, the client steps the next hop itself, same tokens, nobody banned', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (let seed = 1; seed <= 3; seed++) {
      // The lost push is noticed by s1's push timeout (short); the client's own requests never time out.
      const { net, client } = await swarm(seed, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6]], 0, { pushTimeoutMs: 100 })
      let count = 0
      const r = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N, onToken: () => { if (++count === 3) net.cut('s1', 's2') } })
      expect(r.tokens, `seed ${seed}`).toEqual(ref)
      expect(r.session.failovers, `seed ${seed}`).toHaveLength(0)
      expect(net.lost, `seed ${seed}`).toBeGreaterThan(0)
      expect(['s1', 's2', 's3'].some(p => client.bans.isBanned(p)), `seed ${seed}`).toBe(false)
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })

  it('a server killed mid-generation: the spare takes its span, replays the cache, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (let seed = 1; seed <= 5; seed++) {
      const { net, client } = await swarm(seed, [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6], ['spare', 1, 5]])
      // Make the spare the second choice: s2 first (lower RTT), then fail it.
      let session: InferenceSession | undefined
      let count = 0
      const r = await swarmGenerate(client, fakeEnds, PROMPT, {
        maxNewTokens: N,
        onSession: s => { session = s },
        // After the 4th token, kill the server of the route's middle hop.
        onToken: () => { if (++count === 4) net.kill(session!.route[1].peer) }
      })
      expect(r.tokens, `seed ${seed}`).toEqual(ref)
      expect(r.session.failovers.length, `seed ${seed}`).toBeGreaterThanOrEqual(1)
      const ev = r.session.failovers[0]
      expect(ev.replayed).toBe(PROMPT.length + 3)
      expect(r.session.route.every(s => s.peer !== ev.peer)).toBe(true)
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })

  it('a link that silently drops messages: timeout, ban, re-route, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    // The client's request timeout is the subject here: short enough to notice the cut, long
    // enough that a healthy step on a loaded machine never reaches it.
    const { net, client } = await swarm(9, [['s1', 0, 3], ['s2', 3, 6], ['t1', 0, 3], ['t2', 3, 6]], 0, { timeoutMs: 2000 })
    let cutPeer = ''
    const r = await swarmGenerate(client, fakeEnds, PROMPT, {
      maxNewTokens: N,
      onSession: s => {
        cutPeer = s.route[1].peer
      },
      onToken: () => net.cut('client', cutPeer)
    })
    expect(r.tokens).toEqual(ref)
    expect(net.lost).toBeGreaterThan(0)
    expect(r.session.failovers.map(f => f.peer)).toContain(cutPeer)
    expect(client.bans.isBanned(cutPeer)).toBe(true)
  })

  it('several concurrent clients share the servers and each gets the reference tokens', async () => {
    const { net, dir } = await swarm(4, [['s1', 0, 3], ['s2', 3, 6]])
    const prompts = [[1, 2, 3], [7, 7], [30, 2, 11, 5]]
    const refs = await Promise.all(prompts.map(p => localGreedy(p, 6)))
    const outs = await Promise.all(prompts.map((p, i) => {
      const client = new InferenceClient({ transport: net.endpoint(`c${i}`), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: RELAXED.timeoutMs, hedgeFloorMs: HEDGE_FLOOR_MS })
      return swarmGenerate(client, fakeEnds, p, { maxNewTokens: 6 })
    }))
    expect(outs.map(o => o.tokens)).toEqual(refs)
  })

  it('no spare: the client fails with NoRouteError naming the block', async () => {
    const { net, client } = await swarm(2, [['s1', 0, 3], ['s2', 3, 6]])
    const p = swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N, onToken: (id) => { if (id >= 0) net.kill('s2') } })
    await expect(p).rejects.toThrow(NoRouteError)
    await expect(p).rejects.toThrow(/block 3/)
  })

  it('servers that choose their own spans cover the model; a misplaced one rebalances onto the weakest span', async () => {
    const net = new MemoryNetwork({ seed: 5 })
    const dir = new MemoryDirectory()
    const mk = async (peer: string, throughput: number, span?: { start: number, end: number }): Promise<ServerRole> => {
      const r = new ServerRole({
        transport: net.endpoint(peer), directory: dir, model: 'fake', numBlocks: BLOCKS, numServed: 2, span,
        loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e), cacheBudgetBytes: 1 << 20, throughput
      })
      await r.start()
      roles.push(r)
      return r
    }
    await mk('a', 100)
    await mk('b', 100)
    const c = await mk('c', 5)
    expect(roles.map(r => r.currentSpan)).toEqual([{ start: 0, end: 2 }, { start: 2, end: 4 }, { start: 4, end: 6 }])
    // d starts on [0, 2), already served; blocks 4..5 have only c's 5 tokens/s.
    const d = await mk('d', 100, { start: 0, end: 2 })
    expect(await d.rebalanceOnce()).toBe(true)
    expect(d.currentSpan).toEqual({ start: 4, end: 6 })
    expect(d.moves[0].minBefore).toBeCloseTo(5)
    expect(d.moves[0].minAfter).toBeCloseTo(100)
    expect(await d.rebalanceOnce()).toBe(false) // settled
    expect(c.currentSpan).toEqual({ start: 4, end: 6 })
    const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: RELAXED.timeoutMs, hedgeFloorMs: HEDGE_FLOOR_MS })
    const r = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: 4 })
    expect(r.tokens).toEqual(await localGreedy(PROMPT, 4))
  })

  it('reports every announced record (what the page mirrors into the CRDT), going offline included', async () => {
    const net = new MemoryNetwork({ seed: 6 })
    const seen: Array<{ start: number, end: number, state: string }> = []
    const r = new ServerRole({
      transport: net.endpoint('m'), directory: new MemoryDirectory(), model: 'fake', numBlocks: BLOCKS, span: { start: 1, end: 3 },
      loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e), cacheBudgetBytes: 1 << 20, throughput: 7,
      onAnnounce: rec => seen.push({ start: rec.start, end: rec.end, state: rec.state })
    })
    await r.start()
    expect(seen.at(-1)).toEqual({ start: 1, end: 3, state: 'online' })
    await r.stop()
    expect(seen.at(-1)).toEqual({ start: 1, end: 3, state: 'offline' })
  })
})
