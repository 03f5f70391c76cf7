/**
 * Two peers found the same run at once (their swarm docs not yet synced): each trains its own
 * θ_global alone. Once the docs merge, Yjs keeps one declaration; the other founder adopts that
 * founding's state at its next round boundary and both end with one bit-identical θ_global.
 * With different settings the losing founder stops with RunForkedError instead.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { brownCorpus } from '../../../web/src/model/data.ts'
import { RunForkedError } from '../../../web/src/swarm/train/membership.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP, type RunSpec } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'

const FAST = { partTimeoutMs: 400, readyWindowMs: 600, coordinatorTimeoutMs: 5000, partElements: 4096, windowParts: 4 }

let corpus: string
const sessions: TrainSession[] = []
beforeAll(async () => { corpus = (await brownCorpus()).slice(0, 200_000) })
afterEach(() => { for (const s of sessions.splice(0)) s.stop() })

interface Peer { id: string, doc: Y.Doc, board: RunBoard, log: string[], session?: TrainSession }

function peer (id: string): Peer {
  const doc = new Y.Doc()
  return { id, doc, board: new RunBoard(doc.getMap(TRAIN_MAP), 'forked'), log: [] }
}

async function found (net: MemoryNetwork, p: Peer, spec: RunSpec): Promise<TrainSession> {
  p.board.declare(spec)
  const s = await TrainSession.start({
    transport: net.endpoint(p.id), board: p.board, backend: cpu, corpus: async () => corpus, allreduce: FAST,
    log: (l) => { p.log.push(l); if (process.env.AR_LOG !== undefined) console.log(p.id, l) }
  })
  sessions.push(s)
  p.session = s
  return s
}

/** From now on the two docs exchange every update (the CRDT sync that was late). */
function link (a: Y.Doc, b: Y.Doc): void {
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a), 'link')
  Y.applyUpdate(a, Y.encodeStateAsUpdate(b), 'link')
  a.on('update', (u: Uint8Array, origin: unknown) => { if (origin !== 'link') Y.applyUpdate(b, u, 'link') })
  b.on('update', (u: Uint8Array, origin: unknown) => { if (origin !== 'link') Y.applyUpdate(a, u, 'link') })
}

const SPEC = { innerSteps: 3, seqLen: 16, totalSyncs: 6, corpus: { kind: 'text' as const, text: 'x' } }

describe('forked runs heal', () => {
  it('two founders of one run end with one θ_global, bit-identical', async () => {
    const net = new MemoryNetwork({ seed: 21 })
    const [a, b] = [peer('peer-a'), peer('peer-b')]
    const [sa, sb] = await Promise.all([found(net, a, defaultRunSpec('forked', SPEC)), found(net, b, defaultRunSpec('forked', SPEC))])
    expect(sa.founding).not.toBe(sb.founding)
    await Promise.all([sa.run(2), sb.run(2)])
    expect(sa.worker.lastSeq).toBe(1)
    expect(sb.worker.lastSeq).toBe(1)
    expect(sa.worker.lastHash).not.toBe(sb.worker.lastHash) // two θ_global under one run id

    link(a.doc, b.doc)
    const winner = a.board.genesis()
    expect(b.board.genesis()).toBe(winner)
    const [w, l] = sa.founding === winner ? [a, b] : [b, a]
    await Promise.all([sa.run(), sb.run()])

    expect(sa.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(sb.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(sa.worker.lastHash).toBe(sb.worker.lastHash)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sb.worker.global.buffer))).toBe(true)
    expect(Buffer.from(sa.worker.momentum.buffer).equals(Buffer.from(sb.worker.momentum.buffer))).toBe(true)
    expect(l.session!.founding).toBe(winner)
    expect(l.log.some(x => x.includes('was founded twice at once') && x.includes('adopting its θ_global'))).toBe(true)
    expect(w.log.some(x => x.includes('founded twice'))).toBe(false)
    // the board's history is the winner's: every readable record carries its genesis, and both are live members of it
    for (const rec of a.board.syncRecords().records.values()) expect(rec.genesis).toBe(winner)
    expect(a.board.expected(Number.MAX_SAFE_INTEGER)).toEqual(['peer-a', 'peer-b'])
    expect(a.board.recordAt(SPEC.totalSyncs - 1)?.hash).toBe(sa.worker.lastHash)

    // a clean leave takes the entry off the board
    sa.stop()
    expect(b.board.members().has('peer-a')).toBe(false)
  }, 120_000)

  it('the docs merge mid-round, not at a boundary: still one θ_global at the end', async () => {
    const net = new MemoryNetwork({ seed: 23 })
    const [a, b] = [peer('peer-a'), peer('peer-b')]
    const [sa, sb] = await Promise.all([found(net, a, defaultRunSpec('forked', SPEC)), found(net, b, defaultRunSpec('forked', SPEC))])
    // the CRDT sync lands while peer-a is in the middle of its inner steps before sync 2
    let linked = false
    const timer = setInterval(() => {
      if (!linked && sa.worker.lastSeq >= 1 && sa.worker.step % SPEC.innerSteps === 1) { linked = true; link(a.doc, b.doc) }
    }, 1)
    try {
      await Promise.all([sa.run(), sb.run()])
    } finally { clearInterval(timer) }
    expect(linked).toBe(true)
    expect(sa.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(sb.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(sa.founding).toBe(sb.founding)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sb.worker.global.buffer))).toBe(true)
    expect(Buffer.from(sa.worker.momentum.buffer).equals(Buffer.from(sb.worker.momentum.buffer))).toBe(true)
  }, 120_000)

  it('a losing founder whose winner has not trained yet waits for its first sync instead of failing', async () => {
    const net = new MemoryNetwork({ seed: 24 })
    const [a, b] = [peer('peer-a'), peer('peer-b')]
    a.doc.clientID = 2; b.doc.clientID = 1 // Yjs keeps the higher client's concurrent write: a's declaration wins
    a.board.declare(defaultRunSpec('forked', SPEC))
    const sb = await found(net, b, defaultRunSpec('forked', SPEC))
    await sb.run(1)
    link(a.doc, b.doc) // b now follows a's founding, which has no sync and no member yet
    expect(b.board.genesis()).toBe(a.board.genesis())
    const running = sb.run()
    // b finds nobody to fetch from meanwhile: wait for it to say so, not for a fixed 1.5 s
    while (!b.log.some(x => x.includes('found no state to fetch'))) await new Promise(resolve => setTimeout(resolve, 5))
    const sa = await TrainSession.start({ transport: net.endpoint(a.id), board: a.board, backend: cpu, corpus: async () => corpus, allreduce: FAST, log: (l) => { a.log.push(l) } })
    sessions.push(sa)
    await Promise.all([sa.run(), running])
    expect(b.log.some(x => x.includes('found no state to fetch'))).toBe(true)
    expect(sb.founding).toBe(sa.founding)
    expect(sa.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(sb.worker.lastSeq).toBe(SPEC.totalSyncs - 1)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sb.worker.global.buffer))).toBe(true)
  }, 120_000)

  it('a losing founder with other settings stops with RunForkedError; the winner goes on', async () => {
    const net = new MemoryNetwork({ seed: 22 })
    const [a, b] = [peer('peer-a'), peer('peer-b')]
    const [sa, sb] = await Promise.all([found(net, a, defaultRunSpec('forked', SPEC)), found(net, b, defaultRunSpec('forked', { ...SPEC, innerLr: 1e-3 }))])
    await Promise.all([sa.run(1), sb.run(1)])
    link(a.doc, b.doc)
    const [ws, ls] = sa.founding === a.board.genesis() ? [sa, sb] : [sb, sa]
    await expect(ls.run(1)).rejects.toThrow(RunForkedError)
    await expect(ls.run(1)).rejects.toThrow(/declared twice at once with different settings; the swarm kept the other declaration/)
    await ws.run(1)
    expect(ws.worker.lastSeq).toBe(1)
  }, 60_000)
})
