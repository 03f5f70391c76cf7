/**
 * Verification over real libp2p on 127.0.0.1 (relay, DHT records, framed streams over WebRTC):
 * a serve peer that answers tiny-mixtral's block 1 with noise — only after its first few steps —
 * is caught by a client checking at a sampled rate, banned, and the tokens equal the fixture's;
 * the accusation, signed into the client's swarm doc with its exhibit, reaches another peer that
 * checks its signature, recomputes the row on the honest servers, asks the liar, and avoids it too.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { SwarmDoc } from '../../web/src/net/crdt/index.ts'
import { createRelay, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../../web/src/swarm/client/generate.ts'
import { clientRecompute } from '../../web/src/swarm/client/recompute.ts'
import { EvidenceBoard } from '../../web/src/swarm/evidence.ts'
import { EvidenceChecker } from '../../web/src/swarm/evidence-check.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { joinTestPeer, type SwarmTestPeer } from './libp2p-peer.ts'
import { LyingBackend } from './verify-hostile.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
const MODEL = 'tiny-mixtral'
const source = sourceFrom(DIR)
const NUM_BLOCKS = 2
/** Far beyond a healthy step on a loaded machine: no timeout or hedge may interfere. */
const RELAXED_MS = 60_000

let relay: RelayNode
const nodes: WebSwarmNode[] = []
const roles = new Map<string, ServerRole>()
let ends: ClientEnds

async function peer (): Promise<SwarmTestPeer> {
  const p = await joinTestPeer(relay, NUM_BLOCKS)
  nodes.push(p.node)
  return p
}

async function serve (name: string, start: number, end: number, lieAfter?: number): Promise<ServerRole> {
  const p = await peer()
  const role = new ServerRole({
    transport: p.transport, directory: p.directory, model: MODEL, numBlocks: NUM_BLOCKS, span: { start, end },
    loadSpan: async (s, e) => {
      const honest = await loadSpanBackend(source, cpu, MODEL, s, e)
      return lieAfter === undefined ? honest : new LyingBackend(honest, 'noise', { after: lieAfter })
    },
    cacheBudgetBytes: 1 << 22, throughput: 100
  })
  await role.start()
  roles.set(name, role)
  return role
}

beforeAll(async () => {
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  ends = (await loadClientEnds(source, cpu)).ends
  await serve('s0', 0, 1)
  await serve('liar', 1, 2, 3)
  await serve('v1', 1, 2)
  await serve('v2', 0, 2)
})

afterAll(async () => {
  for (const r of roles.values()) await r.stop().catch(() => {}) // teardown: a peer already stopped is fine
  await Promise.allSettled(nodes.map(async n => { await n.stop() }))
  await relay?.stop()
})

describe('verification over libp2p: relay + 4 serve peers (one lying) + a client', () => {
  it('the liar is caught at a sampled rate, banned, and the tokens equal the fixture; its accusation reaches another peer', async () => {
    const c = await peer()
    const liar = roles.get('liar')!.self
    const swarmDocOf = (p: SwarmTestPeer): SwarmDoc => new SwarmDoc('default', p.node.peerId.toString(), p.key)
    const doc = swarmDocOf(c)
    await doc.setSelf({}) // a member: its stamped identity makes its accusations count
    const board = new EvidenceBoard(doc)
    const client = new InferenceClient({
      transport: c.transport, directory: c.directory, model: MODEL, numBlocks: NUM_BLOCKS, hiddenSize: 64, timeoutMs: RELAXED_MS, hedgeFloorMs: RELAXED_MS,
      verify: { rate: 0.5, seed: 3, onEvidence: (a, x) => board.accuse(a, x) }
    })
    // Route through the liar: the client takes measured RTTs as given.
    client.rttMs.set(roles.get('s0')!.self, 1)
    client.rttMs.set(liar, 1)
    client.rttMs.set(roles.get('v1')!.self, 5)
    client.rttMs.set(roles.get('v2')!.self, 50)
    const r = await swarmGenerate(client, ends, ref.prompt, { maxNewTokens: ref.greedy.length })
    expect(r.tokens).toEqual(ref.greedy)
    expect(client.verify!.stats.liars).toEqual([liar])
    expect(r.session.route.map(s => s.peer)).not.toContain(liar)
    for (const name of ['s0', 'v1', 'v2']) expect(client.bans.isLiar(roles.get(name)!.self), name).toBe(false)

    // Another peer's doc gets the signed accusation (as crdt-sync would carry it) and checks it.
    const other = await peer()
    const otherDoc = swarmDocOf(other)
    expect(await otherDoc.applyRemote(Y.encodeStateAsUpdate(doc.doc))).toBe('applied')
    const otherBoard = new EvidenceBoard(otherDoc)
    const accusations = await otherBoard.accusations()
    expect(accusations.map(a => [a.accuser, a.accusation.accused])).toEqual([[c.node.peerId.toString(), liar]])
    // It recomputes the row on servers other than the two parties, asks the liar, and avoids it.
    const reader = new InferenceClient({ transport: other.transport, directory: other.directory, model: MODEL, numBlocks: NUM_BLOCKS, hiddenSize: 64, timeoutMs: RELAXED_MS })
    const scan = await otherBoard.avoidChecked(reader.bans, MODEL, new EvidenceChecker(clientRecompute(reader), { hiddenSize: 64 }))
    expect(scan.verdicts).toMatchObject({ confirmed: 1, forged: 0, refuted: 0, unreproduced: 0 })
    expect(scan.avoided).toEqual([liar])
    expect(reader.bans.isLiar(liar)).toBe(true)
  })
})
