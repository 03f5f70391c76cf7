/**
 * Peers re-check evidence before they avoid a server (swarm/evidence-check.ts over the real swarm
 * doc, fake blocks on the seeded in-process network): a client catches a lying server and signs
 * the accusation, with its exhibit, into its doc; a reader that never routed through the liar
 * recomputes the row on other servers, asks the accused, and avoids it. Accusations with a bad
 * signature, with digests that do not match their rows, or by an accuser that lies about an
 * honest server (made-up rows either way) are ignored and counted, and nobody honest is avoided.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { EVIDENCE_MAP, signEntry, SwarmDoc } from '../../web/src/net/crdt/index.ts'
import { BanList } from '../../web/src/swarm/ban-list.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { clientRecompute } from '../../web/src/swarm/client/recompute.ts'
import { digestF32 } from '../../web/src/swarm/client/verify-compare.ts'
import { EvidenceBoard, EVIDENCE_VERSION, type Accusation } from '../../web/src/swarm/evidence.ts'
import { EvidenceChecker, type Exhibit } from '../../web/src/swarm/evidence-check.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { BLOCKS, C, FakeSpanBackend } from './fakes.ts'
import { hashedEnds as ends, LyingBackend } from './verify-hostile.ts'

const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

const PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
const RELAXED_MS = 30_000

async function member (): Promise<{ doc: SwarmDoc, board: EvidenceBoard, key: Awaited<ReturnType<typeof generateKeyPair>> }> {
  const key = await generateKeyPair('Ed25519')
  const doc = new SwarmDoc('default', peerIdFromPrivateKey(key).toString(), key)
  await doc.setSelf({})
  return { doc, board: new EvidenceBoard(doc), key }
}

async function sync (from: SwarmDoc, to: SwarmDoc): Promise<void> {
  await to.applyRemote(Y.encodeStateAsUpdate(from.doc, Y.encodeStateVector(to.doc)))
}

/** s1 [0,2), liar x [2,4) (scales every output after its first forward), s3 [4,6), v1 [2,4), v2 [1,5). */
async function swarm () {
  const net = new MemoryNetwork({ seed: 5 })
  const dir = new MemoryDirectory()
  const specs = [['s1', 0, 2], ['x', 2, 4], ['s3', 4, 6], ['v1', 2, 4], ['v2', 1, 5]] as const
  for (const [peer, start, end] of specs) {
    const role = new ServerRole({
      transport: net.endpoint(peer), directory: dir, model: 'fake', numBlocks: BLOCKS, span: { start, end },
      loadSpan: async (a, b) => peer === 'x' ? new LyingBackend(new FakeSpanBackend('fake', a, b), 'scale', { after: 1 }) : new FakeSpanBackend('fake', a, b),
      cacheBudgetBytes: 1 << 20, throughput: 100
    })
    await role.start()
    roles.push(role)
  }
  const client = (name: string, onEvidence?: (a: Accusation, x: Exhibit) => Promise<void>): InferenceClient => {
    const c = new InferenceClient({
      transport: net.endpoint(name), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: RELAXED_MS, hedgeFloorMs: RELAXED_MS,
      verify: onEvidence === undefined ? undefined : { rate: 1, strikes: 1, onEvidence }
    })
    for (const [peer, rtt] of [['s1', 1], ['x', 0.1], ['s3', 1], ['v1', 2], ['v2', 3]] as const) c.rttMs.set(peer, rtt)
    return c
  }
  return { client }
}

describe('peers re-check evidence before they avoid a server', () => {
  it('genuine evidence gets the liar avoided; forged, mismatched and lying accusations do not, and are counted', async () => {
    const { client } = await swarm()
    // A witness catches x and signs the accusation with its exhibit into its doc.
    const witness = await member()
    const caught: Array<{ a: Accusation, x: Exhibit }> = []
    const wc = client('witness', async (a, x) => { caught.push({ a, x }); await witness.board.accuse(a, x) })
    await swarmGenerate(wc, ends, PROMPT, { maxNewTokens: 4 })
    expect(wc.verify!.stats.liars).toEqual(['x'])
    const genuine = caught[0]
    expect(genuine.a.accused).toBe('x')

    // A reader that never routed through x gets the doc and checks the evidence itself.
    const reader = await member()
    await sync(witness.doc, reader.doc)
    const rc = client('reader')
    const bans = new BanList()
    const scan = await reader.board.avoidChecked(bans, 'fake', new EvidenceChecker(clientRecompute(rc), { hiddenSize: C }))
    expect(scan.avoided).toEqual(['x'])
    expect(scan.verdicts.confirmed).toBe(1)
    expect(bans.isLiar('x')).toBe(true)

    // Hostile accusers, all members with valid signatures on their own entries, accuse honest v1.
    const row = async (r: Float32Array): Promise<string> => await digestF32(r)
    const lie = async (accused: Float32Array, honest: Float32Array, over: Partial<Accusation> = {}): Promise<Accusation> => ({
      ...genuine.a, accused: 'v1', accusedDigest: await row(accused), honestDigest: await row(honest), deviation: 0.5, ...over
    })
    const bumped = genuine.x.honest.map(v => v * 1.5)
    // (a) digests that do not match the exhibit's rows.
    const mismatched = await member()
    await mismatched.board.accuse(await lie(genuine.x.honest, bumped, { accusedDigest: genuine.a.honestDigest.replace(/^./, c => c === '0' ? '1' : '0') }), { inputs: genuine.x.inputs, accused: genuine.x.honest, honest: bumped })
    // (b) the accuser made up the accused's row (v1 never said that; the "honest" row is right).
    const madeUp = await member()
    await madeUp.board.accuse(await lie(bumped, genuine.x.honest), { inputs: genuine.x.inputs, accused: bumped, honest: genuine.x.honest })
    // (c) the accuser calls the right row wrong and a wrong one right.
    const swapped = await member()
    await swapped.board.accuse(await lie(genuine.x.honest, bumped), { inputs: genuine.x.inputs, accused: genuine.x.honest, honest: bumped })
    // (d) a bad signature: an entry under another member's id, signed with the attacker's key, written into the reader's replica.
    const victim = await member()
    await sync(victim.doc, reader.doc)
    const forged = await signEntry(mismatched.key, 'default', { peer: victim.doc.selfId, seq: 9, expiresAt: Date.now() + 60_000, data: { v: EVIDENCE_VERSION, accusations: [await lie(bumped, genuine.x.honest)] } }, EVIDENCE_MAP)
    reader.doc.signedMap(EVIDENCE_MAP).set(victim.doc.selfId, forged)
    for (const m of [mismatched, madeUp, swapped]) await sync(m.doc, reader.doc)

    const bans2 = new BanList()
    const scan2 = await reader.board.avoidChecked(bans2, 'fake', new EvidenceChecker(clientRecompute(rc), { hiddenSize: C }))
    expect(scan2.avoided).toEqual(['x'])
    expect(bans2.isLiar('v1')).toBe(false)
    expect(scan2.verdicts).toEqual({ confirmed: 1, forged: 1, refuted: 1, unreproduced: 1, unverifiable: 0 })
    expect(scan2.forged).toBe(1)
  })
})
