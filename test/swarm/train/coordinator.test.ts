/**
 * Who coordinates a round when membership changes at its boundary (issue #6 follow-up): a late
 * joiner with the smallest id, or the losing founder of a forked run, must not wait alone as the
 * coordinator of a round the others run elsewhere. Ready windows here are far longer than the
 * tests' timeouts, so a stall fails the test by timing out; assertions are on messages and
 * outcomes, never on milliseconds.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { quantizeQ8 } from '../../../web/src/gpu/cpu/quant.ts'
import { brownCorpus } from '../../../web/src/model/data.ts'
import { AllReducePeer, type ReduceOutcome, type RoundDirectory } from '../../../web/src/swarm/train/allreduce.ts'
import { BehindError } from '../../../web/src/swarm/train/errors.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import type { SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { MsgType, decodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { MemoryNetwork, type RequestOptions, type RpcHandler, type RpcTransport, type TensorMessage } from '../../../web/src/swarm/transport/index.ts'
import { Rng } from '../../../web/src/util/rng.ts'

const B = 64
const N = 4 * 128
/** A ready window no test outlives: waiting one out alone is the stall these tests catch. */
const SLOW_WINDOW = { partTimeoutMs: 2000, readyWindowMs: 60_000, coordinatorTimeoutMs: 120_000, partElements: 128, windowParts: 4, block: B }
const TEST_MS = 20_000

/** Records what a peer sends (type, round, destination). */
class Tap implements RpcTransport {
  readonly sent: Array<{ to: string, type: number, round?: number }> = []
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    const m = decodeMsg(body)
    this.sent.push({ to: peer, type: m.type, round: 'round' in m ? m.round : undefined })
    return await this.inner.request(peer, protocol, body, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

interface Peer { id: string, tap: Tap, ar: AllReducePeer, log: string[] }

let live: AllReducePeer[] = []
const sessions: TrainSession[] = []
afterEach(() => { for (const p of live) p.stop(); live = []; for (const s of sessions.splice(0)) s.stop() })
let corpus: string
beforeAll(async () => { corpus = (await brownCorpus()).slice(0, 200_000) })

function peer (net: MemoryNetwork, id: string, directory: RoundDirectory): Peer {
  const tap = new Tap(net.endpoint(id))
  const log: string[] = []
  const ar = new AllReducePeer(tap, { run: 'coord', directory, ...SLOW_WINDOW, log: (l) => { log.push(l); if (process.env.AR_LOG !== undefined) console.log(id, l) } })
  live.push(ar)
  return { id, tap, ar, log }
}

function contribution (seed: number): Uint8Array {
  const r = new Rng(seed)
  const x = new Float32Array(N)
  for (let i = 0; i < N; i++) x[i] = 0.01 * r.normal()
  return quantizeQ8(x, B)
}

/** A run board in a fresh doc (one doc for every peer: CRDT updates arrive at once). */
function board (): RunBoard {
  const b = new RunBoard(new Y.Doc().getMap(TRAIN_MAP), 'coord')
  b.declare(defaultRunSpec('coord'))
  return b
}

/** What a session writes after a sync (the record's content does not matter here, only that it exists). */
function record (b: RunBoard, seq: number, members: string[]): void {
  b.record(seq, { hash: 'ab'.repeat(32), members, attempt: 0, genesis: b.genesis() })
}

const stalls = (p: Peer): string[] => p.log.filter(l => /quorum|did not answer READY/.test(l))

describe('coordinator choice at membership changes', () => {
  it('a late joiner with the smallest id, entering as the others run its first round, is BEHIND at once, then coordinates the next round', async () => {
    const net = new MemoryNetwork({ seed: 31 })
    const b = board()
    b.join('peer-b', 0); b.join('peer-c', 0)
    const [pb, pc] = [peer(net, 'peer-b', b), peer(net, 'peer-c', b)]
    const out0 = await Promise.all([pb, pc].map(async (p, i) => await p.ar.reduce(0, contribution(i), N)))
    record(b, 0, out0[0].members)

    // Round 1 starts between peer-b and peer-c; peer-a enters the board (fromSeq 1) as their
    // first REDUCE leaves: it is the smallest expected id, so it coordinates round 1 in its view.
    const pa = peer(net, 'peer-a', b)
    let late: Promise<ReduceOutcome | unknown> | undefined
    const inner = pb.tap.request.bind(pb.tap)
    pb.tap.request = async (to, protocol, body, opts) => {
      if (late === undefined && decodeMsg(body).type === MsgType.REDUCE) {
        b.join('peer-a', 1)
        late = pa.ar.reduce(1, contribution(9), N).catch((e: unknown) => e)
      }
      return await inner(to, protocol, body, opts)
    }
    const out1 = await Promise.all([pb, pc].map(async (p, i) => await p.ar.reduce(1, contribution(10 + i), N)))
    expect(out1.map(o => o.members)).toEqual([['peer-b', 'peer-c'], ['peer-b', 'peer-c']])
    expect(late).toBeDefined()
    record(b, 1, out1[0].members) // the board's change reaches peer-a's coordinator: its waiter is BEHIND
    const lateOut = await late
    expect(lateOut).toBeInstanceOf(BehindError)
    expect((lateOut as BehindError).round).toBe(1)
    expect(pa.log.some(l => l.includes('round 1 is recorded without the 1 peer(s) waiting here'))).toBe(true)
    expect(pa.tap.sent.filter(m => m.type === MsgType.READY)).toEqual([]) // it asked only itself

    // Round 2: everyone agrees peer-a coordinates, all three take part, same bytes everywhere.
    const out2 = await Promise.all([pa, pb, pc].map(async (p, i) => await p.ar.reduce(2, contribution(20 + i), N)))
    for (const o of out2) expect(o.members).toEqual(['peer-a', 'peer-b', 'peer-c'])
    expect(out2.map(o => o.attempt)).toEqual([0, 0, 0])
    expect(new Set(await Promise.all(out2.map(async o => await hashBytes(o.mean)))).size).toBe(1)
    for (const p of [pb, pc]) expect(p.tap.sent.filter(m => m.type === MsgType.READY && m.round === 2).map(m => m.to)).toEqual(['peer-a'])
    for (const p of [pa, pb, pc]) expect(stalls(p)).toEqual([])
  }, TEST_MS)

  it('a member that finds its round already recorded skips it: BEHIND without a message', async () => {
    const net = new MemoryNetwork({ seed: 32 })
    const b = board()
    b.join('peer-b', 0); b.join('peer-c', 0); b.join('peer-d', 3)
    const pd = peer(net, 'peer-d', b) // not the coordinator: without the check it would send READY to peer-b
    peer(net, 'peer-b', b); peer(net, 'peer-c', b)
    record(b, 3, ['peer-b', 'peer-c'])
    await expect(pd.ar.reduce(3, contribution(1), N)).rejects.toThrow(BehindError)
    expect(pd.tap.sent).toEqual([])
  }, TEST_MS)

  it('a coordinator asked about a round its board records answers BEHIND at once, even to a member that does not see the record', async () => {
    const net = new MemoryNetwork({ seed: 33 })
    const b = board()
    b.join('peer-a', 0); b.join('peer-b', 0)
    const pa = peer(net, 'peer-a', b)
    const pb = peer(net, 'peer-b', { expected: () => ['peer-a', 'peer-b'] }) // a stale view: no records
    record(b, 5, ['peer-a', 'peer-c'])
    const e = await pb.ar.reduce(5, contribution(2), N).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(BehindError)
    expect(pb.tap.sent.map(m => [m.to, m.type, m.round])).toEqual([['peer-a', MsgType.READY, 5]])
    expect(stalls(pb)).toEqual([])
  }, TEST_MS)

  it('a peer the round does not expect (a fork loser with the smallest id) never coordinates it: it asks the expected ones', async () => {
    const net = new MemoryNetwork({ seed: 34 })
    // The board ignores the loser's entry (its genesis lost), so every view expects only b and c.
    const dir: RoundDirectory = { expected: () => ['peer-b', 'peer-c'] }
    const [pa, pb, pc] = ['peer-a', 'peer-b', 'peer-c'].map(id => peer(net, id, dir))
    const outs = await Promise.all([pa, pb, pc].map(async (p, i) => await p.ar.reduce(0, contribution(30 + i), N).catch((e: unknown) => e)))
    expect(pa.tap.sent.filter(m => m.type === MsgType.READY).map(m => m.to)).toEqual(['peer-b'])
    expect(pa.log.filter(l => l.startsWith('coordinator:'))).toEqual([])
    const [ob, oc] = outs.slice(1) as ReduceOutcome[]
    expect(await hashBytes(ob.mean)).toBe(await hashBytes(oc.mean))
    // Its READY reached peer-b before or after the attempt started: in it (same bytes), or told BEHIND.
    if (outs[0] instanceof BehindError) expect(ob.members).toEqual(['peer-b', 'peer-c'])
    else {
      expect(ob.members).toEqual(['peer-a', 'peer-b', 'peer-c'])
      expect(await hashBytes((outs[0] as ReduceOutcome).mean)).toBe(await hashBytes(ob.mean))
    }
  }, TEST_MS)

  it('sessions: a late joiner with the smallest id entering during the founders\' round ends bit-identical, without waiting alone', async () => {
    const net = new MemoryNetwork({ seed: 35 })
    const doc = new Y.Doc() // one doc: the CRDT sync is instant, the race is in the all-reduce
    const spec = defaultRunSpec('late', { innerSteps: 3, seqLen: 16, totalSyncs: 5, corpus: { kind: 'text', text: 'x' } })
    new RunBoard(doc.getMap(TRAIN_MAP), 'late').declare(spec)
    const logs = new Map<string, string[]>()
    const syncs = new Map<string, SyncEvent[]>()
    // Each member's claimed whole-contribution norm per round (REDUCE's `norm`).
    const claims = new Map<string, Map<number, number>>()
    const start = async (inner: RpcTransport): Promise<TrainSession> => {
      const id = inner.self
      const transport = new Tap(inner)
      const send = transport.request.bind(transport)
      transport.request = async (to, protocol, body, opts) => {
        const m = decodeMsg(body)
        if (m.type === MsgType.REDUCE) { if (!claims.has(id)) claims.set(id, new Map()); claims.get(id)!.set(m.round, m.norm) }
        return await send(to, protocol, body, opts)
      }
      logs.set(id, []); syncs.set(id, [])
      const s = await TrainSession.start({
        transport, board: new RunBoard(doc.getMap(TRAIN_MAP), 'late'), backend: cpu, corpus: async () => corpus, allreduce: SLOW_WINDOW,
        log: (l) => { logs.get(id)!.push(l); if (process.env.AR_LOG !== undefined) console.log(id, l) },
        onSync: (e) => { syncs.get(id)!.push(e) }
      })
      sessions.push(s)
      return s
    }
    const tb = new Tap(net.endpoint('peer-b'))
    let late: Promise<TrainSession> | undefined
    const inner = tb.request.bind(tb)
    tb.request = async (to, protocol, body, opts) => {
      const m = decodeMsg(body)
      // peer-a starts while peer-b and peer-c run sync 2 under peer-b: it enters with fromSeq 2 or 3
      if (late === undefined && m.type === MsgType.REDUCE && m.round === 2) late = start(net.endpoint('peer-a'))
      return await inner(to, protocol, body, opts)
    }
    const [sb, sc] = await Promise.all([start(tb), start(net.endpoint('peer-c'))])
    const founders = Promise.all([sb.run(), sc.run()])
    await expect.poll(() => late, { timeout: TEST_MS }).toBeDefined()
    const sa = await late!
    await Promise.all([founders, sa.run()])
    const last = spec.totalSyncs - 1
    for (const s of [sa, sb, sc]) expect(s.worker.lastSeq).toBe(last)
    expect(sa.worker.lastHash).toBe(sb.worker.lastHash)
    expect(Buffer.from(sa.worker.global.buffer).equals(Buffer.from(sc.worker.global.buffer))).toBe(true)
    expect(Buffer.from(sa.worker.momentum.buffer).equals(Buffer.from(sb.worker.momentum.buffer))).toBe(true)
    // The joiner trained the last syncs as a member, all three in one attempt under peer-a.
    const own = syncs.get('peer-a')!.filter(e => e.resynced !== true)
    expect(own.length).toBeGreaterThanOrEqual(1)
    for (const e of own) { expect(e.members).toEqual(['peer-a', 'peer-b', 'peer-c']); expect(e.attempt).toBe(0) }
    expect(syncs.get('peer-b')!.at(-1)!.members).toEqual(['peer-a', 'peer-b', 'peer-c'])
    for (const l of logs.values()) expect(l.filter(x => /quorum|did not answer READY|refused/.test(x))).toEqual([])
    // The joiner's first contribution is a whole window's Δ (it trained H steps from the θ_global it
    // fetched): its norm is of the founders' order, and no honest contribution is clipped in any round.
    const first = own[0].seq
    const joinerNorm = claims.get('peer-a')!.get(first)!
    if (process.env.AR_LOG !== undefined) console.log('whole norms per round', [...claims].map(([p, m]) => `${p}: ${[...m].map(([r, x]) => `${r}=${x.toExponential(2)}`).join(' ')}`))
    for (const f of ['peer-b', 'peer-c']) {
      const fn = claims.get(f)!.get(first)!
      expect(joinerNorm / fn).toBeGreaterThan(0.25)
      expect(joinerNorm / fn).toBeLessThan(4)
    }
    for (const ev of syncs.values()) for (const e of ev) expect(e.clipped).toEqual([])
    for (const l of logs.values()) expect(l.filter(x => /clipped/.test(x))).toEqual([])
  }, 3 * TEST_MS)
})
