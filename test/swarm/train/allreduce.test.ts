import { afterEach, describe, expect, it } from 'vitest'
import { dequantizeQ8, q8Bytes, quantizeQ8 } from '../../../web/src/gpu/cpu/quant.ts'
import { MemoryNetwork, type RpcTransport } from '../../../web/src/swarm/transport/index.ts'
import type { RequestOptions, RpcHandler, TensorMessage } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer, type ReduceOutcome } from '../../../web/src/swarm/train/allreduce.ts'
import { TrainArgumentError } from '../../../web/src/swarm/train/errors.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { planParts, sliceQ8 } from '../../../web/src/swarm/train/plan.ts'
import { reducePart } from '../../../web/src/swarm/train/reduce.ts'
import { MsgType, decodeMsg, encodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { PeerUnreachableError } from '../../../web/src/swarm/errors.ts'
import { CLOCKED_TIMING, countReduces, driveWhenQuiet, type QuietDriver } from '../../../web/src/sim/quiet-clock.ts'

const B = 64
const PART = 128
/**
 * Real-time timeouts, for the one test whose subject is the transport's own request timeout (a cut
 * link loses messages silently): the seeded network delivers one message per macrotask, a lost
 * one is noticed in ~0.3 s.
 */
const FAST = { partTimeoutMs: 300, readyWindowMs: 400, coordinatorTimeoutMs: 3000, partElements: PART, windowParts: 4, block: B }
/**
 * Every other test: the all-reduce's timers on a ManualClock that fires them only when every
 * reduce() in progress waits on a quiet network (quiet-clock.ts), so a ready window or part
 * timeout fires when the protocol waits on it (a dead or missing peer), never because the
 * machine was slow.
 */
const CLOCKED = { ...CLOCKED_TIMING, partElements: PART, windowParts: 4, block: B }

/** Wraps a peer's transport to watch (and tamper with) what it sends. */
class Tap implements RpcTransport {
  onSend: ((peer: string, body: TensorMessage) => TensorMessage | undefined) | undefined
  /** Set when this peer's process is gone: its own requests fail at once, as a closed node's would (the network would only lose them, after their timeout). */
  down = false
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    if (this.down) throw new PeerUnreachableError(peer, 'this node is closed')
    const b = this.onSend?.(peer, body) ?? body
    return await this.inner.request(peer, protocol, b, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

interface Swarm { net: MemoryNetwork, peers: AllReducePeer[], taps: Tap[], ids: string[] }

let live: AllReducePeer[] = []
let drivers: QuietDriver[] = []
afterEach(() => { for (const d of drivers) d.stop(); drivers = []; for (const p of live) p.stop(); live = [] })

/** reduce() calls in progress across the test's peers: the clock moves only while one waits. */
let reducing = 0
function counted (p: AllReducePeer): AllReducePeer {
  countReduces(p, d => { reducing += d })
  return p
}

/** A ManualClock for `net`'s peers, driven while any reduce() waits on a quiet network. */
function clockFor (net: MemoryNetwork): ManualClock {
  const clock = new ManualClock()
  drivers.push(driveWhenQuiet(clock, net, () => reducing > 0))
  return clock
}

function swarm (n: number, seed: number, expected?: (round: number) => string[], timing: 'clocked' | 'real' = 'clocked'): Swarm {
  const net = new MemoryNetwork({ seed })
  const ids = Array.from({ length: n }, (_, i) => `peer-${String.fromCharCode(97 + i)}`)
  const taps = ids.map(id => new Tap(net.endpoint(id)))
  const t = timing === 'real' ? FAST : { ...CLOCKED, clock: clockFor(net) }
  const peers = taps.map(tap => counted(new AllReducePeer(tap, { run: 'run1', directory: { expected: expected ?? (() => ids) }, ...t, log: process.env.AR_LOG !== undefined ? (l) => { console.log(tap.self, l) } : undefined })))
  live.push(...peers)
  return { net, peers, taps, ids }
}

function contribution (n: number, seed: number, scale = 0.01): Uint8Array {
  const r = new Rng(seed)
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) x[i] = scale * r.normal()
  return quantizeQ8(x, B)
}

/** What the owners should compute for these members: reducePart of every part, dequantized. */
function expectedMean (n: number, members: string[], qs: Map<string, Uint8Array>): Float32Array {
  const out = new Float32Array(n)
  for (const p of planParts(n, members, B, PART)) {
    const r = reducePart(members.map(peer => ({ peer, q: sliceQ8(qs.get(peer)!, p.start, p.end, B) })), p.end - p.start, B)
    const back = new Float32Array(p.end - p.start)
    const v = new DataView(r.q.buffer)
    for (let i = 0; i < back.length; i++) { const j = Math.floor(i / B); back[i] = Math.fround(v.getInt8(j * (4 + B) + 4 + i % B) * v.getFloat32(j * (4 + B), true)) }
    out.set(back, p.start)
  }
  return out
}

async function hashes (outs: ReduceOutcome[]): Promise<string[]> {
  return await Promise.all(outs.map(async o => await hashBytes(o.mean)))
}

describe('fault-tolerant all-reduce over a seeded network', () => {
  it('4 members, random delivery order: every member gets the same bytes, the mean of all contributions', async () => {
    for (const seed of [1, 2, 3]) {
      const n = 1000 + seed * 77
      const s = swarm(4, seed)
      const qs = new Map(s.ids.map((id, i) => [id, contribution(n, seed * 10 + i)]))
      const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n)))
      expect(new Set(await hashes(outs)).size).toBe(1)
      expect(outs[0].members).toEqual(s.ids)
      expect(outs[0].mean).toEqual(expectedMean(n, s.ids, qs))
      expect(s.net.delivered).toBeGreaterThan(0)
      for (const p of live) p.stop()
      live = []
    }
  })

  it('several rounds in a row, one attempt each', async () => {
    const n = 700
    const s = swarm(3, 7)
    for (let round = 0; round < 3; round++) {
      const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(round, contribution(n, round * 5 + i), n)))
      expect(new Set(await hashes(outs)).size).toBe(1)
      expect(outs.every(o => o.attempt === 0)).toBe(true)
    }
  })

  it('writes into the caller\'s receive buffers when given (reused across rounds), and refuses wrong sizes', async () => {
    const n = 900
    const s = swarm(3, 9)
    const bufs = s.peers.map(() => ({ mean: new Float32Array(n).fill(NaN), qMean: new Uint8Array(q8Bytes(n, B)).fill(0xff) }))
    for (let round = 0; round < 2; round++) {
      const qs = new Map(s.ids.map((id, i) => [id, contribution(n, round * 7 + i)]))
      const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(round, qs.get(s.ids[i])!, n, bufs[i])))
      outs.forEach((o, i) => { expect(o.mean).toBe(bufs[i].mean); expect(o.qMean).toBe(bufs[i].qMean) })
      expect(new Set(await hashes(outs)).size).toBe(1)
      expect(outs[0].mean).toEqual(expectedMean(n, s.ids, qs))
      expect(outs[0].mean).toEqual(dequantizeQ8(outs[0].qMean!, n, B))
    }
    await expect(s.peers[0].reduce(2, contribution(n, 1), n, { mean: new Float32Array(n - 1) })).rejects.toThrow(TrainArgumentError)
    await expect(s.peers[0].reduce(2, contribution(n, 1), n, { qMean: new Uint8Array(5) })).rejects.toThrow(/qMean buffer/)
    // a part whose q8 would not fit one message is refused up front, not mid-round
    expect(() => new AllReducePeer(new MemoryNetwork({ seed: 1 }).endpoint('x'), { run: 'r', directory: { expected: () => ['x'] }, partElements: 1 << 20 })).toThrow(/exceeds the 1048576-byte message payload/)
  })

  it('peers that cut parts differently refuse each other\'s parts with a clear reason, and the round fails instead of mixing them', async () => {
    const net = new MemoryNetwork({ seed: 3 })
    const ids = ['peer-a', 'peer-b']
    const lines: string[] = []
    const clock = clockFor(net)
    const peers = ids.map((id, i) => counted(new AllReducePeer(net.endpoint(id), { run: 'run1', directory: { expected: () => ids }, ...CLOCKED, clock, partElements: PART * (i + 1), maxAttempts: 1, log: (l) => { lines.push(l) } })))
    live.push(...peers)
    const n = 1000
    const settled = await Promise.allSettled(peers.map(async (p, i) => await p.reduce(0, contribution(n, i), n)))
    expect(settled.every(r => r.status === 'rejected')).toBe(true)
    expect(lines.some(l => l.includes('must share one part size'))).toBe(true)
  })

  it('a member killed mid-all-reduce: the round completes with the others, the dead one not counted', async () => {
    for (const seed of [11, 12, 13]) {
      const n = 2000
      const s = swarm(4, seed)
      const qs = new Map(s.ids.map((id, i) => [id, contribution(n, seed + i)]))
      const victim = 2
      let sentParts = 0
      s.taps[victim].onSend = (_peer, body) => {
        if (decodeMsg(body).type === MsgType.REDUCE && ++sentParts === 3) queueMicrotask(() => { s.taps[victim].down = true; s.net.kill(s.ids[victim]); s.peers[victim].stop() })
        return undefined
      }
      const runs = s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n))
      runs[victim].catch(() => {}) // the dead peer's own call fails; it does not matter
      const survivors = [0, 1, 3]
      const outs = await Promise.all(survivors.map(async i => await runs[i]))
      await runs[victim].catch(() => {})
      expect(sentParts).toBeGreaterThanOrEqual(3)
      const members = survivors.map(i => s.ids[i])
      expect(new Set(await hashes(outs)).size).toBe(1)
      for (const o of outs) expect(o.members).toEqual(members)
      expect(outs[0].attempt).toBeGreaterThan(0)
      expect(outs[0].mean).toEqual(expectedMean(n, members, qs))
      for (const p of live) p.stop()
      live = []
    }
  })

  it('the coordinator killed mid-all-reduce: the next smallest id coordinates the retry', async () => {
    const n = 1500
    const s = swarm(4, 21)
    const qs = new Map(s.ids.map((id, i) => [id, contribution(n, 40 + i)]))
    let sent = 0
    s.taps[0].onSend = (_peer, body) => {
      if (decodeMsg(body).type === MsgType.REDUCE && ++sent === 2) queueMicrotask(() => { s.taps[0].down = true; s.net.kill(s.ids[0]); s.peers[0].stop() })
      return undefined
    }
    const runs = s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n))
    runs[0].catch(() => {})
    const outs = await Promise.all([1, 2, 3].map(async i => await runs[i]))
    await runs[0].catch(() => {})
    expect(new Set(await hashes(outs)).size).toBe(1)
    expect(outs[0].key.startsWith(s.ids[1] + ':')).toBe(true)
    expect(outs[0].mean).toEqual(expectedMean(n, s.ids.slice(1), qs))
    // the next round needs no retry: everyone skips the dead peer at once
    const next = await Promise.all([1, 2, 3].map(async i => await s.peers[i].reduce(1, qs.get(s.ids[i])!, n)))
    expect(next.every(o => o.attempt === 0 && o.members.length === 3)).toBe(true)
  })

  it('a link cut during the round and restored: no hang, all members end identical', async () => {
    const n = 1200
    const s = swarm(3, 31, undefined, 'real')
    const qs = new Map(s.ids.map((id, i) => [id, contribution(n, 60 + i)]))
    let sent = 0
    s.taps[1].onSend = (_peer, body) => {
      if (decodeMsg(body).type === MsgType.REDUCE && ++sent === 2) {
        s.net.cut(s.ids[1], s.ids[2])
        setTimeout(() => { s.net.restore(s.ids[1], s.ids[2]) }, 500) // paces the fake: the outage the round must survive (nothing is asserted on its length)
      }
      return undefined
    }
    const settled = await Promise.allSettled(s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n)))
    const ok = settled.filter((r): r is PromiseFulfilledResult<ReduceOutcome> => r.status === 'fulfilled').map(r => r.value)
    expect(s.net.lost).toBeGreaterThan(0)
    // whoever completed holds the same bytes; a peer left out learns it is behind (it resyncs)
    expect(ok.length).toBeGreaterThanOrEqual(2)
    expect(new Set(await hashes(ok)).size).toBe(1)
    for (const r of settled) if (r.status === 'rejected') expect((r.reason as Error).name).toBe('BehindError')
  })

  it('a corrupted contribution (NaN scale, wrong size, huge norm) does not corrupt the mean', async () => {
    const n = 900
    for (const corrupt of ['nan', 'size', 'huge'] as const) {
      const s = swarm(3, 41)
      const qs = new Map(s.ids.map((id, i) => [id, contribution(n, 80 + i)]))
      s.taps[2].onSend = (_peer, body) => {
        const m = decodeMsg(body)
        if (m.type !== MsgType.REDUCE) return undefined
        const q = m.payload.slice()
        if (corrupt === 'nan') new DataView(q.buffer).setFloat32(0, NaN, true)
        if (corrupt === 'size') return encodeMsg({ ...m, payload: q.subarray(0, q.byteLength - 3) })
        if (corrupt === 'huge') new DataView(q.buffer).setFloat32(0, 1e30, true)
        return encodeMsg({ ...m, payload: q })
      }
      const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n)))
      expect(new Set(await hashes(outs)).size).toBe(1)
      const maxAbs = Math.max(...outs[0].mean.map(Math.abs))
      expect(Number.isFinite(maxAbs)).toBe(true)
      expect(maxAbs).toBeLessThan(0.1) // honest values are ~0.01; a 1e30 scale would show
      if (corrupt === 'huge') expect(outs[0].clipped).toContain(s.ids[2])
      else expect(outs[0].rejected).toContain(s.ids[2])
      for (const p of live) p.stop()
      live = []
    }
  })

  it('a straggler past the ready window sits the round out and is told it is behind', async () => {
    const n = 300
    const s = swarm(3, 51)
    const runs = [0, 1].map(async i => await s.peers[i].reduce(0, contribution(n, i), n))
    const outs = await Promise.all(runs)
    expect(outs[0].members).toEqual(s.ids.slice(0, 2))
    await expect(s.peers[2].reduce(0, contribution(n, 2), n)).rejects.toThrow(/completed without this peer/)
  })
})
