/**
 * A late joiner contributes only to syncs whose whole window it trained (worker.contributesFrom).
 * Streaming DiLoCo (F fragments): a snapshot of sync s resets θ_local of every fragment at once,
 * but the windows of syncs s + 1 … s + F − 1 began before it, so the joiner sits those out (takes
 * the swarm's result, sends no REDUCE, is not expected in them) and contributes from s + F, with
 * a whole window's Δ: a norm like the founders', nobody clipped, replicas bit-identical.
 * Ready windows are far longer than the test's timeout, so a round that expects the joiner while
 * it sits out stalls and fails the test by timing out.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { brownCorpus } from '../../../web/src/model/data.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import type { SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { MsgType, decodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { MemoryNetwork, type RequestOptions, type RpcHandler, type RpcTransport, type TensorMessage } from '../../../web/src/swarm/transport/index.ts'

const SLOW_WINDOW = { partTimeoutMs: 2000, readyWindowMs: 60_000, coordinatorTimeoutMs: 120_000, partElements: 128, windowParts: 4, block: 64 }
const TEST_MS = 40_000

/** Records each REDUCE's round and claimed whole norm. */
class NormTap implements RpcTransport {
  readonly norms = new Map<number, number>()
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    const m = decodeMsg(body)
    if (m.type === MsgType.REDUCE) this.norms.set(m.round, m.norm)
    return await this.inner.request(peer, protocol, body, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

const sessions: TrainSession[] = []
afterEach(() => { for (const s of sessions.splice(0)) s.stop() })
let corpus: string
beforeAll(async () => { corpus = (await brownCorpus()).slice(0, 200_000) })

describe('a late joiner contributes only to syncs whose whole window it trained', () => {
  it('streaming (F = 2): sits out sync s + 1 after fetching sync s, contributes a whole window from s + 2; replicas identical, nobody clipped', async () => {
    const net = new MemoryNetwork({ seed: 61 })
    const doc = new Y.Doc()
    const spec = defaultRunSpec('win', { innerSteps: 4, fragments: 2, seqLen: 16, totalSyncs: 8, corpus: { kind: 'text', text: 'x' } })
    new RunBoard(doc.getMap(TRAIN_MAP), 'win').declare(spec)
    const taps = new Map<string, NormTap>()
    const syncs = new Map<string, SyncEvent[]>()
    const logs: string[] = []
    const start = async (id: string): Promise<TrainSession> => {
      const tap = new NormTap(net.endpoint(id))
      taps.set(id, tap); syncs.set(id, [])
      const s = await TrainSession.start({
        transport: tap, board: new RunBoard(doc.getMap(TRAIN_MAP), 'win'), backend: cpu, corpus: async () => corpus, allreduce: SLOW_WINDOW,
        log: (l) => { logs.push(`${id} ${l}`); if (process.env.AR_LOG !== undefined) console.log(id, l) },
        onSync: (e) => { syncs.get(id)!.push(e) }
      })
      sessions.push(s)
      return s
    }
    const [sb, sc] = await Promise.all([start('peer-b'), start('peer-c')])
    const founders = Promise.all([sb.run(), sc.run()])
    await expect.poll(() => syncs.get('peer-b')!.length, { timeout: TEST_MS }).toBeGreaterThanOrEqual(3)
    const sa = await start('peer-a')
    const s0 = sa.lastFetch!.seq
    expect(sa.worker.contributesFrom).toBe(s0 + 2)
    await Promise.all([founders, sa.run()])

    for (const s of [sa, sb, sc]) expect(s.worker.lastSeq).toBe(spec.totalSyncs - 1)
    expect(sa.worker.lastHash).toBe(sb.worker.lastHash)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sc.worker.global.buffer))).toBe(true)
    expect(Buffer.from(sa.worker.momentum.buffer).equals(Buffer.from(sb.worker.momentum.buffer))).toBe(true)

    const a = syncs.get('peer-a')!
    // s0 + 1: sat out (the swarm's result taken, no REDUCE sent); from s0 + 2 on: a member.
    expect(a[0]).toMatchObject({ seq: s0 + 1, satOut: true })
    expect(a.filter(e => e.resynced === true)).toEqual([])
    const own = a.filter(e => e.satOut !== true)
    expect(own.map(e => e.seq)).toEqual(Array.from({ length: spec.totalSyncs - 2 - s0 }, (_, i) => s0 + 2 + i))
    for (const e of own) expect(e.members).toEqual(['peer-a', 'peer-b', 'peer-c'])
    expect(Math.min(...taps.get('peer-a')!.norms.keys())).toBe(s0 + 2)
    expect(syncs.get('peer-b')!.find(e => e.seq === s0 + 1)!.members).toEqual(['peer-b', 'peer-c'])
    // Its first contribution is a whole window's Δ: a norm of the founders' order for that sync.
    const first = taps.get('peer-a')!.norms.get(s0 + 2)!
    for (const f of ['peer-b', 'peer-c']) {
      const ratio = first / taps.get(f)!.norms.get(s0 + 2)!
      expect(ratio).toBeGreaterThan(0.5)
      expect(ratio).toBeLessThan(2)
    }
    for (const ev of syncs.values()) for (const e of ev) expect(e.clipped).toEqual([])
    expect(logs.filter(l => /clipped|quorum|did not answer READY|refused/.test(l))).toEqual([])
  }, 2 * TEST_MS)
})
