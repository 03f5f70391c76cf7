/**
 * In-process block servers (web/src/swarm/server/in-process.ts): a client of the same process
 * hands its requests to the server as objects. Greedy tokens equal the network's and an
 * unbatched run's, local and remote sessions share the server's batches, a stopped local server
 * fails over to a remote one, the session budget refuses cleanly, bad input ends only its session,
 * closing frees the cache, a request aborts or resets as over a transport, and a client on the
 * server's own peer id (the API on the embedded peer's node) is not sent over the network.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../../web/src/swarm/client/generate.ts'
import { CacheFullError, PeerTimeoutError, PeerUnreachableError, TensorShapeError, UnknownSessionError } from '../../web/src/swarm/errors.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { InProcessServers } from '../../web/src/swarm/server/in-process.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import type { RpcTransport } from '../../web/src/swarm/transport/index.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import type { InferMsg } from '../../web/src/swarm/wire/infer.ts'

const source = sourceFrom('models/byte-llama')
const MODEL = 'byte-llama'
const BLOCKS = { start: 0, end: 3 }
const prompts = ['The man', 'It was a', 'In the ', 'She said'].map(p => [...new TextEncoder().encode(p)])
const NEW = 10

let model: { ends: ClientEnds, hiddenSize: number, numLayers: number, bytesPerToken: number } | undefined
async function ends (): Promise<NonNullable<typeof model>> {
  if (model === undefined) {
    const { ends, config } = await loadClientEnds(source, cpu)
    model = { ends, hiddenSize: config.hiddenSize, numLayers: config.numLayers, bytesPerToken: config.numLayers * 2 * config.numKvHeads * config.headDim * 4 }
  }
  return model
}

const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

interface Swarm { net: MemoryNetwork, dir: MemoryDirectory, servers: InProcessServers }
function swarm (): Swarm {
  return { net: new MemoryNetwork({ seed: 11 }), dir: new MemoryDirectory(), servers: new InProcessServers() }
}

async function serve (s: Swarm, peer: string, o: { inProcess: boolean, budgetTokens?: number, batchWindowMs?: number }): Promise<ServerRole> {
  const m = await ends()
  const role = new ServerRole({
    transport: s.net.endpoint(peer), directory: s.dir, model: MODEL, numBlocks: m.numLayers, span: BLOCKS,
    loadSpan: async (a, b) => await loadSpanBackend(source, cpu, MODEL, a, b),
    cacheBudgetBytes: (o.budgetTokens ?? 4096) * m.bytesPerToken, batchWindowMs: o.batchWindowMs,
    inProcess: o.inProcess ? s.servers : undefined, log: () => {}
  })
  await role.start()
  roles.push(role)
  return role
}

function client (s: Swarm, peer: string, inProcess: boolean): InferenceClient {
  const m = model!
  return new InferenceClient({ transport: s.net.endpoint(peer), directory: s.dir, model: MODEL, numBlocks: m.numLayers, hiddenSize: m.hiddenSize, timeoutMs: 60_000, hedge: false, inProcess: inProcess ? s.servers : undefined })
}

/** Each token yields a turn of the event loop, as the API does (swarm-generator.ts): in-process steps are all microtasks. */
const greedy = { maxNewTokens: NEW, stopTokens: [], onToken: async () => { await new Promise(resolve => setImmediate(resolve)) } }

describe('in-process block servers', () => {
  it('give the network\'s greedy tokens and an unbatched run\'s, local and remote sessions batched together, no local request on the network', async () => {
    const m = await ends()
    // Unbatched, over the network: one generation at a time.
    const ref = swarm()
    await serve(ref, 's', { inProcess: false })
    const alone: number[][] = []
    const one = client(ref, 'c', false)
    for (const p of prompts) alone.push((await swarmGenerate(one, m.ends, p, greedy)).tokens)
    expect(alone.every(t => t.length === NEW)).toBe(true)

    // Two in-process clients and two over the network, concurrently, on one server.
    const s = swarm()
    const role = await serve(s, 's', { inProcess: true, batchWindowMs: 20 })
    const local = client(s, 'api', true)
    const remote = client(s, 'far', false)
    const netBefore = s.net.delivered
    const got = await Promise.all(prompts.map(async (p, i) => (await swarmGenerate(i % 2 === 0 ? local : remote, m.ends, p, greedy)).tokens))
    expect(got).toEqual(alone)
    // Per generation OPEN, NEW steps (prefill + NEW − 1 decodes) and CLOSE; INFOs (2 or 4: the
    // two generations may both measure the RTT) on top. The network carried the remote client's only.
    const requests = 2 * (1 + NEW + 1)
    expect(s.servers.served).toBeGreaterThanOrEqual(requests + 2)
    expect(s.servers.served).toBeLessThanOrEqual(requests + 4)
    // (A request and its reply are two messages.)
    expect(s.net.delivered - netBefore).toBeLessThanOrEqual(2 * (requests + 4))
    expect(role.server!.stats.steps).toBe(4 * NEW)
    expect(role.server!.stats.maxBatch).toBeGreaterThanOrEqual(2)
    expect(role.server!.sessions.size).toBe(0)
  })

  it('a mixed batch: one local and one remote session share batches', async () => {
    const m = await ends()
    const s = swarm()
    const role = await serve(s, 's', { inProcess: true, batchWindowMs: 50 })
    await Promise.all([swarmGenerate(client(s, 'api', true), m.ends, prompts[0], greedy), swarmGenerate(client(s, 'far', false), m.ends, prompts[1], greedy)])
    // Two sessions only, so any batch of two held both.
    expect(role.server!.stats.maxBatch).toBe(2)
    expect(s.servers.served).toBeGreaterThan(0)
  })

  it('fails over from a stopped local server to a remote one, replaying the cache, with the same tokens', async () => {
    const m = await ends()
    const s = swarm()
    const localRole = await serve(s, 'self', { inProcess: true })
    const remoteRole = await serve(s, 'far', { inProcess: false })
    const c = client(s, 'api', true)
    // The in-process server answers INFO first and fastest, but RTTs may tie: make the route start local.
    c.rttMs.set('self', 0)
    c.rttMs.set('far', 5)
    let n = 0
    const r = await swarmGenerate(c, m.ends, prompts[0], {
      ...greedy,
      onToken: async () => { if (++n === 4) await localRole.stop(); await greedy.onToken() }
    })
    const ref = swarm()
    await serve(ref, 's', { inProcess: false })
    const want = await swarmGenerate(client(ref, 'c', false), m.ends, prompts[0], greedy)
    expect(r.tokens).toEqual(want.tokens)
    expect(r.session.failovers.map(f => f.peer)).toEqual(['self'])
    expect(r.session.failovers[0].replacement.map(h => h.peer)).toEqual(['far'])
    expect(r.session.failovers[0].replayed).toBeGreaterThan(prompts[0].length)
    expect(s.servers.get('self')).toBeUndefined()
    expect(remoteRole.server!.stats.steps).toBeGreaterThan(0)
  })

  it('a request to the client\'s own peer id with no server of this process registered fails at once, not over the network', async () => {
    await ends()
    const s = swarm()
    const role = await serve(s, 'self', { inProcess: true })
    // The API on the embedded peer's node (cli/api.ts): the client's peer id is the server's;
    // its transport counts what would go over the network (a real one would dial itself).
    let sent = 0
    const transport: RpcTransport = {
      self: 'self',
      request: async (peer) => { sent++; throw new PeerTimeoutError(peer, 60_000) },
      handle: () => {},
      unhandle: () => {}
    }
    const c = new InferenceClient({ transport, directory: s.dir, model: MODEL, numBlocks: model!.numLayers, hiddenSize: model!.hiddenSize, timeoutMs: 60_000, hedge: false, inProcess: s.servers })
    expect((await c.call('self', { type: 'info' })).type).toBe('infoOk')
    await role.stop()
    await expect(c.call('self', { type: 'info' })).rejects.toThrow(PeerUnreachableError)
    expect(sent).toBe(0)
  })

  it('refuses a session over the budget with its typed error, ends only a bad step\'s session, and frees the cache on close and on a disconnect', async () => {
    const m = await ends()
    const s = swarm()
    const role = await serve(s, 'self', { inProcess: true, budgetTokens: 48 })
    const server = role.server!
    const c = client(s, 'api', true)
    const first = await c.openSession(32)
    const reserved = server.sessions.reservedBytes
    expect(reserved).toBe(32 * m.bytesPerToken)
    // 16 tokens left: a 32-token session does not fit.
    await expect(c.call('self', { type: 'open', model: MODEL, start: 0, end: 3, maxTokens: 32 })).rejects.toBeInstanceOf(CacheFullError)
    expect(server.sessions.size).toBe(1)
    // The first session is untouched and steps on.
    const x = await m.ends.embed(prompts[0])
    const y = await first.step(x, prompts[0].length)
    expect(y.length).toBe(prompts[0].length * m.hiddenSize)
    expect(y.every(Number.isFinite)).toBe(true)
    // A bad step (data not the shape it claims) ends that session only.
    const second = await c.call('self', { type: 'open', model: MODEL, start: 0, end: 3, maxTokens: 16 })
    expect(second.type).toBe('opened')
    const id = (second as Extract<InferMsg, { type: 'opened' }>).session
    await expect(c.call('self', { type: 'step', session: id, position: 0, hidden: { shape: [2, m.hiddenSize], data: new Float32Array(m.hiddenSize) } })).rejects.toBeInstanceOf(TensorShapeError)
    await expect(c.call('self', { type: 'close', session: id })).rejects.toBeInstanceOf(UnknownSessionError)
    expect(server.sessions.size).toBe(1)
    // Closing frees the cache: a 48-token session fits again.
    await first.close()
    expect(server.sessions.size).toBe(0)
    expect(server.sessions.reservedBytes).toBe(0)
    const big = await c.openSession(48)
    await big.close()
    expect(server.sessions.size).toBe(0)
    // A generation given up mid-way (the API's client disconnected) closes its session.
    let n = 0
    const gone = swarmGenerate(c, m.ends, prompts[1], { ...greedy, onToken: () => { if (++n === 3) throw new Error('client disconnected') } })
    await expect(gone).rejects.toThrow(/client disconnected/)
    expect(server.stats.steps).toBeGreaterThan(1)
    expect(server.sessions.size).toBe(0)
    expect(server.sessions.reservedBytes).toBe(0)
  })

  it('an in-process request aborts, times out and resets as a transport\'s would', async () => {
    await ends()
    const s = swarm()
    s.servers.add('stuck', { serve: async () => await new Promise<InferMsg>(() => {}) })
    s.servers.add('broken', { serve: async () => { throw new Error('span thread gone') } })
    const c = client(s, 'api', true)
    const ac = new AbortController()
    const aborted = c.call('stuck', { type: 'info' }, 60_000, ac.signal)
    ac.abort()
    await expect(aborted).rejects.toBeInstanceOf(PeerUnreachableError)
    await expect(c.call('stuck', { type: 'info' }, 1)).rejects.toBeInstanceOf(PeerTimeoutError)
    await expect(c.call('broken', { type: 'info' })).rejects.toThrow(/stream reset: Error: span thread gone/)
    expect(s.servers.served).toBe(0)
  })
})
