/**
 * DiLoCo over real libp2p on 127.0.0.1: a relay (CRDT sync) and Node trainers joined with
 * joinSwarm; the run is declared in the swarm doc; the all-reduce runs over framed tensor streams
 * on direct WebRTC. Loss falls, replicas hash equal after every sync, a trainer killed
 * mid-all-reduce, and a late joiner that fetches θ_global ‖ momentum as content-addressed shards
 * from both remaining members at once and ends bit-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { brownCorpus } from '../../../web/src/model/data.ts'
import { CrdtSync, SwarmDoc } from '../../../web/src/net/crdt/index.ts'
import { joinSwarm, type Swarm } from '../../../web/src/net/index.ts'
import { createRelay, type RelayNode, type WebSwarmNode } from '../../../web/src/net/node.ts'
import { Libp2pTransport } from '../../../web/src/swarm/transport/libp2p.ts'
import { Libp2pStateShards } from '../../../web/src/swarm/transport/shard-store.ts'
import type { RequestOptions, RpcHandler, RpcTransport, TensorMessage } from '../../../web/src/swarm/transport/index.ts'
import { RunBoard, defaultRunSpec, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import type { SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { MsgType, decodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { connectDirect, isDirectWebRTC } from '../../net/stream-peers.ts'

const RUN = 'libp2p-test'
/** Peers on a loaded 2-core machine: streams and WebRTC set-up take seconds, not ms. */
const TIMING = { partTimeoutMs: 8000, readyWindowMs: 6000, coordinatorTimeoutMs: 30_000 }

class Tap implements RpcTransport {
  onSend: ((peer: string, body: TensorMessage) => void) | undefined
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    this.onSend?.(peer, body)
    return await this.inner.request(peer, protocol, body, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

interface Trainer { swarm: Swarm, tap: Tap, board: RunBoard, shards: Libp2pStateShards, session?: TrainSession, syncs: SyncEvent[] }

let relay: RelayNode
let relayAddr: string
let relaySync: CrdtSync
const trainers: Trainer[] = []
let corpus: string

async function until (what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function trainer (): Promise<Trainer> {
  const swarm = await joinSwarm({ bootstrap: [relayAddr], persist: false, log: () => {} })
  const tap = new Tap(new Libp2pTransport(swarm.node, { relayAddr }))
  const shards = await Libp2pStateShards.start(swarm.node, { relayAddr })
  const t: Trainer = { swarm, tap, board: new RunBoard(swarm.doc.map(TRAIN_MAP), RUN), shards, syncs: [] }
  trainers.push(t)
  return t
}

/** Direct WebRTC between every pair (what PeerManager does in time; set up here so rounds start on a mesh). */
async function meshUp (ts: Trainer[]): Promise<void> {
  const addr = multiaddr(relayAddr)
  for (let i = 0; i < ts.length; i++) {
    for (let j = i + 1; j < ts.length; j++) {
      const [a, b] = [ts[i].swarm.node, ts[j].swarm.node]
      if (!a.getConnections(b.peerId).some(isDirectWebRTC)) await connectDirect(a, b, addr)
    }
  }
}

async function startSession (t: Trainer): Promise<TrainSession> {
  t.session = await TrainSession.start({
    transport: t.tap, board: t.board, shards: t.shards, backend: cpu, corpus: async () => corpus, allreduce: TIMING,
    log: process.env.AR_LOG !== undefined ? (l) => { console.log(t.swarm.peerId.slice(-4), l) } : undefined,
    onSync: (e) => { t.syncs.push(e); if (process.env.AR_LOG !== undefined) console.log(t.swarm.peerId.slice(-4), 'sync', e.seq, e.hash.slice(0, 8), e.members.map(m => m.slice(-4)), e.attempt, e.resynced) }
  })
  return t.session
}

function identical (ts: Trainer[]): void {
  const by = new Map<number, string>()
  for (const t of ts) for (const s of t.syncs) {
    const h = by.get(s.seq)
    if (h === undefined) by.set(s.seq, s.hash)
    else expect(s.hash, `sync ${s.seq}`).toBe(h)
  }
}

beforeAll(async () => {
  corpus = (await brownCorpus()).slice(0, 300_000)
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  relayAddr = relay.getMultiaddrs()[0].toString()
  relaySync = new CrdtSync(relay as unknown as WebSwarmNode, new SwarmDoc('default', relay.peerId.toString()), { log: () => {} })
  await relaySync.start()
})

afterAll(async () => {
  for (const t of trainers) t.session?.stop()
  await Promise.allSettled(trainers.map(async t => { await t.swarm.stop() }))
  await relaySync?.stop()
  await relay?.stop()
})

describe('DiLoCo over libp2p: relay + Node trainers', () => {
  it('3 trainers: loss falls, identical replicas; one killed mid-all-reduce; a late joiner ends identical', async () => {
    const ts = await Promise.all([trainer(), trainer(), trainer()])
    const spec = ts[0].board.declare(defaultRunSpec(RUN, { innerSteps: 3, seqLen: 32, seed: 3 }))
    await until('the run declaration everywhere', () => ts.every(t => t.board.spec()?.innerSteps === spec.innerSteps))
    // Direct WebRTC between every pair before the first round (PeerManager dials discovered peers)
    await meshUp(ts)
    await Promise.all(ts.map(startSession))
    await until('3 members on every board', () => ts.every(t => t.board.members().size === 3))

    // two syncs with everyone
    await Promise.all(ts.map(async t => { await t.session!.run(2) }))
    identical(ts)
    expect(ts[0].syncs.map(s => s.members.length)).toEqual([3, 3])
    const evals = ts[0].syncs.map(s => s.evalLoss!)
    expect(ts[0].session!.worker.lastHash).toBe(ts[2].session!.worker.lastHash)

    // trainer 1 dies after sending part of its contribution to sync 2
    let sent = 0
    ts[1].tap.onSend = (_p, body) => {
      const m = decodeMsg(body)
      if (m.type === MsgType.REDUCE && m.round === 2 && ++sent === 1) {
        queueMicrotask(() => { ts[1].session!.allreduce.stop(); void ts[1].swarm.stop() })
      }
    }
    const dying = ts[1].session!.run(1).catch((e: unknown) => e)
    await Promise.all([ts[0], ts[2]].map(async t => { await t.session!.run(1) }))
    await dying
    expect(sent).toBeGreaterThanOrEqual(1)
    identical([ts[0], ts[2]])
    expect(ts[0].syncs[2].members.length).toBe(2)
    expect(ts[0].syncs[2].members).not.toContain(ts[1].swarm.peerId)
    ts[0].board.leave(ts[1].swarm.peerId) // what its stale heartbeat would do after MEMBER_TTL_MS (60 s), now

    // a late joiner at sync 3
    const late = await trainer()
    await until('the run on the joiner\'s board', () => late.board.spec() !== undefined && late.board.latest().rec?.root !== undefined && late.board.latest().seq === 2)
    await meshUp([ts[0], ts[2], late])
    await startSession(late)
    expect(late.session!.worker.lastHash).toBe(ts[0].session!.worker.lastHash)
    // the state came as shards, from both members at once (the dead one is not asked twice)
    const fetched = late.session!.lastFetch!
    expect(fetched.via).toBe('shards')
    expect(fetched.seq).toBe(2)
    expect([...fetched.fetchedFrom.keys()].sort()).toEqual([ts[0].swarm.peerId, ts[2].swarm.peerId].sort())
    // every member keeps a bounded number of states
    expect(ts[0].shards.store.roots().length).toBeLessThanOrEqual(3)
    expect(ts[0].shards.store.roots()).toContain(late.board.latest().rec!.root)
    await until('the joiner on every board', () => [ts[0], ts[2]].every(t => t.board.members().has(late.swarm.peerId)))
    await Promise.all([ts[0], ts[2], late].map(async t => { await t.session!.run(1) }))
    identical([ts[0], ts[2], late])
    expect(late.syncs[0].members.length).toBe(3)
    expect(late.session!.worker.lastHash).toBe(ts[0].session!.worker.lastHash)
    const last = ts[0].syncs.at(-1)!.evalLoss!
    expect(last).toBeLessThan(evals[0])
    expect(last).toBeLessThan(5.3) // ln 256 = 5.55 at init
  }, 240_000)
})
