/**
 * The swarm over real libp2p on 127.0.0.1: a relay (DHT server), 3 `serve` peers holding spans of
 * tiny-mixtral (one per block and a spare over both), and a client. Records go through the
 * signed DHT; tensors through framed streams over direct WebRTC.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { createRelay, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../../web/src/swarm/client/generate.ts'
import type { InferenceSession } from '../../web/src/swarm/client/session.ts'
import { INFER_PROTOCOL } from '../../web/src/swarm/constants.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { joinTestPeer, type SwarmTestPeer } from './libp2p-peer.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { readInfer, writeInfer } from '../../web/src/swarm/wire/infer.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
const MODEL = 'tiny-mixtral'
const source = sourceFrom(DIR)
const NUM_BLOCKS = 2

let relay: RelayNode
const nodes: WebSwarmNode[] = []
const roles = new Map<string, ServerRole>()
let ends: ClientEnds

async function peer (): Promise<SwarmTestPeer> {
  const p = await joinTestPeer(relay, NUM_BLOCKS)
  nodes.push(p.node)
  return p
}

async function serve (name: string, start: number, end: number): Promise<ServerRole> {
  const p = await peer()
  const role = new ServerRole({
    transport: p.transport, directory: p.directory, model: MODEL, numBlocks: NUM_BLOCKS, span: { start, end },
    loadSpan: async (s, e) => await loadSpanBackend(source, cpu, MODEL, s, e), cacheBudgetBytes: 1 << 20, throughput: 100,
    log: l => { if (process.env.SWARM_LOG) console.log(`${Date.now() % 100000} ${name}: ${l}`) }
  })
  await role.start()
  roles.set(name, role)
  return role
}

beforeAll(async () => {
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  ends = (await loadClientEnds(source, cpu)).ends
  await serve('s0', 0, 1)
  await serve('s1', 1, 2)
})

afterAll(async () => {
  for (const r of roles.values()) await r.stop().catch(() => {})
  await Promise.allSettled(nodes.map(async n => { await n.stop() }))
  await relay?.stop()
})

describe('tiny-mixtral over libp2p: relay + 3 serve peers + a client', () => {
  it('greedy tokens equal the fixture; killing a server mid-generation, the spare takes over with identical tokens', async () => {
    const c = await peer()
    // The victim's death closes its connections, so the client learns by a failed step: no timeout
    // or hedge is needed, and both stay far beyond a healthy step (a hedge on a peer stalled by a
    // loaded machine would be a second failover).
    const client = new InferenceClient({ transport: c.transport, directory: c.directory, model: MODEL, numBlocks: NUM_BLOCKS, hiddenSize: 64, timeoutMs: 30_000, hedgeFloorMs: 30_000, push: true, log: l => { if (process.env.SWARM_LOG) console.log(`${Date.now() % 100000} ${l}`) } })
    const r1 = await swarmGenerate(client, ends, ref.prompt, { maxNewTokens: ref.greedy.length })
    expect(r1.tokens).toEqual(ref.greedy)
    expect(r1.session.route.map(s => s.start)).toEqual([0, 1])
    // Steps reuse pooled channels: far fewer streams than requests (2 hops × 16 steps + opens/infos).
    expect(c.transport.channelsOpened).toBeLessThanOrEqual(6)

    const spare = await serve('spare', 0, 2)
    client.rttMs.set(spare.self, 1e4) // far: chosen only as a replacement
    const victim = roles.get('s1')!
    let session: InferenceSession | undefined
    let n = 0
    const r2 = await swarmGenerate(client, ends, ref.prompt, {
      maxNewTokens: ref.greedy.length,
      onSession: s => { session = s },
      onToken: async () => {
        if (++n === 5) {
          // Kill the peer outright (no OFFLINE announcement): the client learns by the failed step.
          await nodes.find(x => x.peerId.toString() === victim.self)!.stop()
        }
      }
    })
    expect(r2.tokens).toEqual(ref.greedy)
    expect(session!.failovers.map(f => f.peer)).toEqual([victim.self])
    expect(session!.route.at(-1)!.peer).toBe(spare.self)
  })

  it('bad input gets an error back; the server keeps serving other clients', async () => {
    const s0 = roles.get('s0')!
    const bad = await peer()
    // A long timeout: this test is about the replies, and a loaded machine answered past 10 s once.
    const ask = async (body: TensorMessage) => readInfer(await bad.transport.request(s0.self, INFER_PROTOCOL, body, { timeoutMs: 60_000 }))
    expect(await ask({ meta: { v: 2, t: 3, session: 0xff }, tensors: [] })).toMatchObject({ type: 'error', code: 1 })
    expect(await ask(writeInfer({ type: 'step', session: 'nope', position: 0, hidden: { shape: [1, 64], data: new Float32Array(64) } }))).toMatchObject({ type: 'error', code: 2 })
    const o = await ask(writeInfer({ type: 'open', model: MODEL, start: 0, end: 1, maxTokens: 8 }))
    if (o.type !== 'opened') throw new Error(`not opened: ${JSON.stringify(o)}`)
    expect(await ask(writeInfer({ type: 'step', session: o.session, position: 0, hidden: { shape: [2, 63], data: new Float32Array(126) } }))).toMatchObject({ type: 'error', code: 3 })
    // Still serving: a fresh client through s0 gets the fixture's tokens.
    const c = await peer()
    const client = new InferenceClient({ transport: c.transport, directory: c.directory, model: MODEL, numBlocks: NUM_BLOCKS, hiddenSize: 64, timeoutMs: 60_000 })
    const r = await swarmGenerate(client, ends, ref.prompt, { maxNewTokens: 4 })
    expect(r.tokens).toEqual(ref.greedy.slice(0, 4))
  })
})
