/**
 * Evidence against liars in the swarm doc (swarm/evidence.ts over net/crdt's signed `evidence`
 * map): accusations signed by their accuser reach other peers, which read members' accusations
 * before avoiding the accused; forged, moved, replayed, deleted and malformed entries are refused
 * or skipped.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { EVIDENCE_MAP, PEERS_MAP, signEntry, SwarmDoc } from '../../web/src/net/crdt/index.ts'
import { ForgedEntryError } from '../../web/src/net/errors.ts'
import { BanList } from '../../web/src/swarm/ban-list.ts'
import { MAX_ACCUSATIONS_PER_ENTRY } from '../../web/src/swarm/constants.ts'
import { MalformedEvidenceError } from '../../web/src/swarm/errors.ts'
import { EvidenceBoard, EVIDENCE_VERSION, parseAccusation, type Accusation } from '../../web/src/swarm/evidence.ts'
import { EvidenceChecker } from '../../web/src/swarm/evidence-check.ts'

const SWARM = 'default'
const HEX = (c: string): string => c.repeat(64)

/** A swarm member: its stamped `peers` entry written (only members' accusations count), unless `member` is false. */
async function peer (member = true): Promise<{ key: PrivateKey, doc: SwarmDoc, board: EvidenceBoard }> {
  const key = await generateKeyPair('Ed25519')
  const doc = new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key)
  if (member) await doc.setSelf({})
  return { key, doc, board: new EvidenceBoard(doc) }
}

function accusation (accused: string, over: Partial<Accusation> = {}): Accusation {
  return { model: 'fake', blocks: [2, 4], position: 9, inputsHash: HEX('a'), accusedDigest: HEX('b'), honestDigest: HEX('c'), deviation: 0.5, accused, at: Date.now(), ...over }
}

/** Sends what `from` has that `to` lacks through applyRemote (the network's path). */
async function sync (from: SwarmDoc, to: SwarmDoc): Promise<void> {
  await to.applyRemote(Y.encodeStateAsUpdate(from.doc, Y.encodeStateVector(to.doc)))
}

describe('evidence in the swarm doc', () => {
  it('signed accusations reach another peer; only members\' count, and only for their model', async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()]
    const liar = (await peer()).doc.selfId
    await a.board.accuse(accusation(liar))
    await a.board.accuse(accusation(liar, { position: 12 }))
    await b.board.accuse(accusation(liar))
    await sync(a.doc, c.doc)
    await sync(b.doc, c.doc)
    const all = await c.board.accusations()
    expect(all.map(x => x.accuser).sort()).toEqual([a.doc.selfId, a.doc.selfId, b.doc.selfId].sort())
    expect(all[0].accusation).toMatchObject({ model: 'fake', blocks: [2, 4], accused: liar })
    // An accuser without a peers entry (no stamped identity) is not read.
    const nobody = await peer(false)
    await nobody.board.accuse(accusation(b.doc.selfId))
    await sync(nobody.doc, c.doc)
    expect((await c.board.accusations()).some(x => x.accusation.accused === b.doc.selfId)).toBe(false)
    expect((await new EvidenceBoard(c.doc, undefined, false).accusations()).some(x => x.accusation.accused === b.doc.selfId)).toBe(true)
    // Without exhibits nothing can be checked: nobody is avoided, whatever the number of accusers.
    const bans = new BanList()
    const scan = await c.board.avoidChecked(bans, 'fake', new EvidenceChecker(undefined, { hiddenSize: 8 }))
    expect(scan.avoided).toEqual([])
    expect(scan.verdicts.unverifiable).toBe(3)
    expect(bans.isLiar(liar)).toBe(false)
    // Another model's accusations are not read for this one.
    expect((await c.board.avoidChecked(bans, 'other', new EvidenceChecker(undefined, { hiddenSize: 8 }))).verdicts.unverifiable).toBe(0)
  })

  it('a forged entry (someone else\'s id, a bad signature) is refused over the network and skipped if written locally', async () => {
    const [victim, attacker, reader] = [await peer(), await peer(), await peer()]
    const honest = (await peer()).doc.selfId
    await victim.board.accuse(accusation('someone'))
    await sync(victim.doc, reader.doc)
    await sync(victim.doc, attacker.doc)
    const before = await reader.board.accusations()
    // The attacker writes evidence[victim] accusing an honest server, signed with its own key.
    const forged = await signEntry(attacker.key, SWARM, { peer: victim.doc.selfId, seq: 99, expiresAt: Date.now() + 60_000, data: { v: EVIDENCE_VERSION, accusations: [accusation(honest)] } }, EVIDENCE_MAP)
    attacker.doc.signedMap(EVIDENCE_MAP).set(victim.doc.selfId, forged)
    await expect(reader.doc.applyRemote(Y.encodeStateAsUpdate(attacker.doc.doc, Y.encodeStateVector(reader.doc.doc)))).rejects.toBeInstanceOf(ForgedEntryError)
    expect(await reader.board.accusations()).toEqual(before)
    // The same forged entry written into a replica directly: not an accusation either.
    expect((await attacker.board.accusations()).some(x => x.accusation.accused === honest)).toBe(false)
    expect(attacker.board.forged).toBe(1)
    // A corrupted signature on the attacker's own entry: skipped.
    const own = await signEntry(attacker.key, SWARM, { peer: attacker.doc.selfId, seq: 1, expiresAt: Date.now() + 60_000, data: { v: EVIDENCE_VERSION, accusations: [accusation(honest)] } }, EVIDENCE_MAP)
    attacker.doc.signedMap(EVIDENCE_MAP).set(attacker.doc.selfId, { ...own, sig: own.sig.slice(0, -4) + (own.sig.endsWith('AAAA') ? 'BBBB' : 'AAAA') })
    expect((await attacker.board.accusations()).some(x => x.accusation.accused === honest)).toBe(false)
    expect(attacker.board.forged).toBe(2) // the entry under the victim's id and this one
  })

  it('an entry signed for the peers map cannot be moved into the evidence map', async () => {
    const [a, reader] = [await peer(), await peer()]
    const moved = await signEntry(a.key, SWARM, { peer: a.doc.selfId, seq: 1, expiresAt: Date.now() + 60_000, data: { v: EVIDENCE_VERSION, accusations: [accusation('x')] } }, PEERS_MAP)
    a.doc.signedMap(EVIDENCE_MAP).set(a.doc.selfId, moved)
    await expect(reader.doc.applyRemote(Y.encodeStateAsUpdate(a.doc.doc, Y.encodeStateVector(reader.doc.doc)))).rejects.toThrow(/bad signature/)
  })

  it('an unexpired evidence entry cannot be deleted or replayed by someone else', async () => {
    const [a, b, attacker] = [await peer(), await peer(), await peer()]
    await a.board.accuse(accusation('x'))
    const first = Y.encodeStateAsUpdate(a.doc.doc)
    await a.board.accuse(accusation('y'))
    await sync(a.doc, b.doc)
    await sync(b.doc, attacker.doc)
    attacker.doc.signedMap(EVIDENCE_MAP).delete(a.doc.selfId)
    await expect(b.doc.applyRemote(Y.encodeStateAsUpdate(attacker.doc.doc, Y.encodeStateVector(b.doc.doc)))).rejects.toThrow(/deleted an unexpired evidence entry/)
    // Replaying a's older entry (one accusation) over its newer one (two).
    const replay = await peer()
    await sync(b.doc, replay.doc)
    const old = new Y.Doc()
    Y.applyUpdate(old, first)
    replay.doc.signedMap(EVIDENCE_MAP).set(a.doc.selfId, old.getMap<any>(EVIDENCE_MAP).get(a.doc.selfId))
    await expect(b.doc.applyRemote(Y.encodeStateAsUpdate(replay.doc.doc, Y.encodeStateVector(b.doc.doc)))).rejects.toThrow(/replayed/)
    expect((await b.board.accusations()).map(x => x.accusation.accused)).toEqual(['x', 'y'])
  })

  it('own entry keeps the newest MAX_ACCUSATIONS_PER_ENTRY accusations; self-accusations are ignored', async () => {
    const a = await peer()
    for (let i = 0; i < MAX_ACCUSATIONS_PER_ENTRY + 3; i++) await a.board.accuse(accusation(`p${i}`))
    const list = await a.board.accusations()
    expect(list).toHaveLength(MAX_ACCUSATIONS_PER_ENTRY)
    expect(list[list.length - 1].accusation.accused).toBe(`p${MAX_ACCUSATIONS_PER_ENTRY + 2}`)
    expect(list[0].accusation.accused).toBe('p3')
    const b = await peer()
    await b.board.accuse(accusation(b.doc.selfId))
    expect(await b.board.accusations()).toEqual([])
  })

  it('a signed but malformed entry is skipped and counted; other accusers still count', async () => {
    const [bad, good, reader] = [await peer(), await peer(), await peer()]
    await bad.doc.setSigned(EVIDENCE_MAP, { v: EVIDENCE_VERSION, accusations: [{ ...accusation('z'), inputsHash: 'nope' }] })
    await good.board.accuse(accusation('z'))
    await sync(bad.doc, reader.doc)
    await sync(good.doc, reader.doc)
    const list = await reader.board.accusations()
    expect(list.map(x => x.accuser)).toEqual([good.doc.selfId])
    expect(reader.board.malformed).toBe(1)
  })

  it('parseAccusation names the bad field', () => {
    const ok = accusation('x')
    expect(parseAccusation(ok)).toEqual(ok)
    const cases: Array<[unknown, RegExp]> = [
      [null, /not an object/],
      [[1], /not an object/],
      [{ ...ok, blocks: [4, 2] }, /empty/],
      [{ ...ok, blocks: [1] }, /blocks must be/],
      [{ ...ok, blocks: [-1, 2] }, /blocks\[0\]/],
      [{ ...ok, position: 1.5 }, /position/],
      [{ ...ok, inputsHash: HEX('A') }, /inputsHash/],
      [{ ...ok, accusedDigest: 'ab' }, /accusedDigest/],
      [{ ...ok, honestDigest: 7 }, /honestDigest/],
      [{ ...ok, deviation: -1 }, /deviation/],
      [{ ...ok, deviation: Infinity }, /deviation/],
      [{ ...ok, accused: '' }, /accused/],
      [{ ...ok, accused: 'p'.repeat(257) }, /accused/],
      [{ ...ok, model: 3 }, /model/],
      [{ ...ok, at: 'now' }, /at must be/],
      [{ ...ok, exhibit: 'rows' }, /exhibit is not an object/],
      [{ ...ok, exhibit: { inputs: 'AAAA', accused: 'not base64!', honest: '' } }, /exhibit.accused must be base64/],
      [{ ...ok, exhibit: { inputs: 'A'.repeat(13 * 1024), accused: '', honest: '' } }, /exhibit of 13312 characters/]
    ]
    for (const [x, re] of cases) {
      expect(() => parseAccusation(x), String(re)).toThrow(MalformedEvidenceError)
      expect(() => parseAccusation(x), String(re)).toThrow(re)
    }
  })
})
