/**
 * A run declared with `delayOuter: 2` (run-board.ts), trained by TrainSessions over the seeded
 * in-memory network (one Yjs doc: the board is shared at once): the session hands the number to
 * its worker, and a late joiner — which fetches the newest recorded state, sits out the two syncs
 * the founders had started, takes each as the board's state (fetchRecorded), and contributes from
 * the next — ends with θ_global and momentum bit-identical to the founders'. Ready windows are far
 * longer than the test's timeout, so a round that expects the joiner while it sits out stalls and
 * fails the test by timing out. The joiner's board entry must be read before the round it enters
 * starts (a window after the state it fetched, in a real run): here the founders' rounds from 4
 * on wait for it, so the test does not race the machine's speed.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { brownCorpus } from '../../../web/src/model/data.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import type { SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { MsgType, decodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { MemoryNetwork, type RpcTransport } from '../../../web/src/swarm/transport/index.ts'

const SLOW_WINDOW = { partTimeoutMs: 2000, readyWindowMs: 60_000, coordinatorTimeoutMs: 120_000, partElements: 128, windowParts: 4, block: 64 }
const TEST_MS = 60_000

const sessions: TrainSession[] = []
afterEach(() => { for (const s of sessions.splice(0)) s.stop() })
let corpus: string
beforeAll(async () => { corpus = (await brownCorpus()).slice(0, 200_000) })

describe('a run declared with delayOuter: 2', () => {
  it('sessions train it with two syncs in flight; a late joiner sits out the two in flight, contributes from the next, ends bit-identical', async () => {
    const net = new MemoryNetwork({ seed: 71 })
    const doc = new Y.Doc()
    const spec = defaultRunSpec('d2', { innerSteps: 6, seqLen: 16, totalSyncs: 10, delayOuter: 2, corpus: { kind: 'text', text: 'x' } })
    new RunBoard(doc.getMap(TRAIN_MAP), 'd2').declare(spec)
    const syncs = new Map<string, SyncEvent[]>()
    const steps = new Map<string, number[]>()
    const logs: string[] = []
    let joined: () => void = () => {}
    const entered = new Promise<void>(resolve => { joined = resolve })
    /** peer-c's READYs of rounds ≥ 4 wait for the joiner's entry (peer-b coordinates: its own READY is a local call). */
    const held = (t: RpcTransport): RpcTransport => {
      const send = t.request.bind(t)
      t.request = async (to, protocol, body, opts) => {
        const m = decodeMsg(body)
        if (m.type === MsgType.READY && m.round >= 4) await entered
        return await send(to, protocol, body, opts)
      }
      return t
    }
    const start = async (id: string): Promise<TrainSession> => {
      syncs.set(id, []); steps.set(id, [])
      let s: TrainSession | undefined
      s = await TrainSession.start({
        transport: id === 'peer-c' ? held(net.endpoint(id)) : net.endpoint(id), board: new RunBoard(doc.getMap(TRAIN_MAP), 'd2'), backend: cpu, corpus: async () => corpus, allreduce: SLOW_WINDOW,
        log: (l) => { logs.push(`${id} ${l}`); if (process.env.AR_LOG !== undefined) console.log(id, l) },
        onSync: (e) => { syncs.get(id)!.push(e); steps.get(id)!.push(s?.worker.step ?? -1) }
      })
      sessions.push(s)
      return s
    }
    const [sb, sc] = await Promise.all([start('peer-b'), start('peer-c')])
    const founders = Promise.all([sb.run(), sc.run()])
    await expect.poll(() => syncs.get('peer-b')!.length, { timeout: TEST_MS }).toBeGreaterThanOrEqual(2)
    // the joiner has the largest id: the founders' coordinator (peer-b) stays theirs
    const sa = await start('peer-z')
    joined()
    const s0 = sa.lastFetch!.seq
    expect(s0).toBeGreaterThanOrEqual(1)
    expect(sa.worker.contributesFrom).toBe(s0 + 3)
    await Promise.all([founders, sa.run()])

    // the founders' syncs landed two windows after they started: sync s at step 6(s + 3)
    expect(steps.get('peer-b')!.slice(0, 3)).toEqual([18, 24, 30])
    for (const s of [sa, sb, sc]) expect(s.worker.lastSeq).toBe(spec.totalSyncs - 1)
    expect(sa.worker.lastHash).toBe(sb.worker.lastHash)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sc.worker.global.buffer))).toBe(true)
    expect(Buffer.from(sa.worker.momentum.buffer).equals(Buffer.from(sb.worker.momentum.buffer))).toBe(true)
    const a = syncs.get('peer-z')!
    expect(a.filter(e => e.resynced === true)).toEqual([])
    // s0 + 1 and s0 + 2 sat out (one state may bring both), then a member of every sync
    const sat = a.filter(e => e.satOut === true).map(e => e.seq)
    expect(sat.at(-1)).toBe(s0 + 2)
    expect(sat.every(q => q > s0 && q <= s0 + 2)).toBe(true)
    const own = a.filter(e => e.satOut !== true)
    expect(own.map(e => e.seq)).toEqual(Array.from({ length: spec.totalSyncs - 3 - s0 }, (_, i) => s0 + 3 + i))
    for (const e of own) {
      expect(e.members).toEqual(['peer-b', 'peer-c', 'peer-z'])
      expect(syncs.get('peer-b')!.find(x => x.seq === e.seq)!.hash).toBe(e.hash)
    }
    for (const q of [s0 + 1, s0 + 2]) expect(syncs.get('peer-b')!.find(e => e.seq === q)!.members).toEqual(['peer-b', 'peer-c'])
    expect(logs.filter(l => /quorum|did not answer READY|refused|clipped/.test(l))).toEqual([])
  }, 2 * TEST_MS)
})
