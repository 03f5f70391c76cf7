/** The all-reduce with the top-k codec: same fault tolerance and bit-identical results as q8. */
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryNetwork, type RpcTransport } from '../../../web/src/swarm/transport/index.ts'
import type { RequestOptions, RpcHandler } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer, type ReduceOutcome } from '../../../web/src/swarm/train/allreduce.ts'
import { topkCodec, type PartCodec } from '../../../web/src/swarm/train/codec.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { planParts } from '../../../web/src/swarm/train/plan.ts'
import { MsgType, decodeMsg, encodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { PeerUnreachableError } from '../../../web/src/swarm/errors.ts'
import { CLOCKED_TIMING, countReduces, driveWhenQuiet, type QuietDriver } from '../../../web/src/sim/quiet-clock.ts'

const PART = 128
let spec = { chunk: 32, k: 2, bits: 2, resultBits: 4 }
const codec = (): PartCodec => topkCodec(spec)

/** A request body and reply, whatever the transport carries them as. */
type Body = Parameters<RpcTransport['request']>[2]
type Reply = Awaited<ReturnType<RpcTransport['request']>>

/** Watches (and may rewrite) what one peer sends; `down`: its node is gone. */
class Tap implements RpcTransport {
  onSend: ((peer: string, body: Body) => Body | undefined) | undefined
  down = false
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: Body, opts: RequestOptions): Promise<Reply> {
    if (this.down) throw new PeerUnreachableError(peer, 'this node is closed')
    return await this.inner.request(peer, protocol, this.onSend?.(peer, body) ?? body, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

let live: AllReducePeer[] = []
let drivers: QuietDriver[] = []
let reducing = 0
afterEach(() => { for (const d of drivers) d.stop(); drivers = []; for (const p of live) p.stop(); live = [] })

function swarm (n: number, seed: number): { net: MemoryNetwork, peers: AllReducePeer[], taps: Tap[], ids: string[], logs: string[] } {
  const net = new MemoryNetwork({ seed })
  const clock = new ManualClock()
  drivers.push(driveWhenQuiet(clock, net, () => reducing > 0))
  const ids = Array.from({ length: n }, (_, i) => `peer-${String.fromCharCode(97 + i)}`)
  const taps = ids.map(id => new Tap(net.endpoint(id)))
  const logs: string[] = []
  const peers = taps.map((tap) => {
    const p = new AllReducePeer(tap, { run: 'run1', directory: { expected: () => ids }, ...CLOCKED_TIMING, clock, partElements: PART, windowParts: 4, codec: codec(), log: (l) => { logs.push(`${tap.self} ${l}`) } })
    countReduces(p, d => { reducing += d })
    return p
  })
  live.push(...peers)
  return { net, peers, taps, ids, logs }
}

function delta (n: number, seed: number): Float32Array {
  const r = new Rng(seed)
  return Float32Array.from({ length: n }, () => 0.01 * r.normal())
}

/** What the owners compute for these members: the codec's reduction of every part, decoded. */
function expectedMean (n: number, members: string[], qs: Map<string, Uint8Array>): Float32Array {
  const c = codec()
  const out = new Float32Array(n)
  for (const p of planParts(n, members, c.align, PART)) {
    const len = p.end - p.start
    const r = c.reduce(members.map(peer => ({ peer, q: c.slice(qs.get(peer)!, p.start, p.end), norm: c.norm(qs.get(peer)!, n) })), len, n)
    c.decodeResultInto(r.bytes, len, r.report.accepted.length, out, p.start)
  }
  return out
}

async function hashes (outs: ReduceOutcome[]): Promise<string[]> {
  return await Promise.all(outs.map(async o => await hashBytes(o.mean)))
}

describe('all-reduce with top-k pseudo-gradients', () => {
  it('4 members, odd length, random delivery: identical bytes everywhere, the owners\' mean on the union or all-gathered', async () => {
    for (const [seed, resultBits] of [[1, 4], [2, 4], [3, 0]]) {
      spec = { ...spec, resultBits }
      const n = 1000 + 77 * seed
      const s = swarm(4, seed)
      const qs = new Map(s.ids.map((id, i) => [id, codec().encode(delta(n, 10 * seed + i)).bytes]))
      const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n)))
      expect(new Set(await hashes(outs)).size).toBe(1)
      expect(outs[0].qMean).toBeUndefined()
      const want = expectedMean(n, s.ids, qs)
      expect(outs[0].mean).toEqual(want)
      // sparse: at most 4·k of every 32 are non-zero
      expect(want.filter(v => v !== 0).length).toBeLessThanOrEqual(Math.ceil(n / 32) * 4 * spec.k)
      expect(want.some(v => v !== 0)).toBe(true)
      for (const p of live) p.stop()
      live = []
    }
    spec = { ...spec, resultBits: 4 }
  })

  it('a member killed mid-round: the survivors complete with the same bytes, the dead one not counted', async () => {
    const n = 2000
    const s = swarm(4, 11)
    const qs = new Map(s.ids.map((id, i) => [id, codec().encode(delta(n, 30 + i)).bytes]))
    const victim = 2
    let sent = 0
    s.taps[victim].onSend = (_peer, body) => {
      if (decodeMsg(body).type === MsgType.REDUCE && ++sent === 3) queueMicrotask(() => { s.taps[victim].down = true; s.net.kill(s.ids[victim]); s.peers[victim].stop() })
      return undefined
    }
    const runs = s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n))
    runs[victim].catch(() => {})
    const survivors = [0, 1, 3]
    const outs = await Promise.all(survivors.map(async i => await runs[i]))
    const members = survivors.map(i => s.ids[i])
    expect(new Set(await hashes(outs)).size).toBe(1)
    for (const o of outs) expect(o.members).toEqual(members)
    expect(outs[0].attempt).toBeGreaterThan(0)
    expect(outs[0].mean).toEqual(expectedMean(n, members, qs))
  })

  it('a malformed part (index past its chunk, NaN scale) is refused by name; the others\' mean is intact', async () => {
    const n = 600
    const s = swarm(3, 5)
    const qs = new Map(s.ids.map((id, i) => [id, codec().encode(delta(n, 50 + i)).bytes]))
    let tampered = 0
    s.taps[1].onSend = (_peer, body) => {
      const m = decodeMsg(body)
      if (m.type !== MsgType.REDUCE) return undefined
      const payload = m.payload.slice()
      if (tampered++ % 2 === 0) payload[4] = 200 // the first index of the first chunk: past its 32 elements
      else new DataView(payload.buffer).setFloat32(0, NaN, true)
      return encodeMsg({ ...m, payload })
    }
    const outs = await Promise.all(s.peers.map(async (p, i) => await p.reduce(0, qs.get(s.ids[i])!, n)))
    expect(new Set(await hashes(outs)).size).toBe(1)
    expect(outs[0].rejected).toEqual([s.ids[1]])
    expect(s.logs.some(l => /refused peer-b: chunk 0: index 200/.test(l))).toBe(true)
    expect(s.logs.some(l => /refused peer-b: chunk 0 has a non-finite scale/.test(l))).toBe(true)
    // every part the tampered peer sent to another owner was refused: the mean is of the others
    // there; its own part (reduced locally, untampered) still counts it
    const honest = [s.ids[0], s.ids[2]]
    const all = expectedMean(n, s.ids, qs)
    const without = expectedMean(n, honest, qs)
    for (const p of planParts(n, s.ids, 32, PART)) {
      const want = p.owner === s.ids[1] ? all : without
      expect(outs[0].mean.subarray(p.start, p.end)).toEqual(want.subarray(p.start, p.end))
    }
  })

  it('refuses a contribution that is not this codec\'s size, before any message', async () => {
    const s = swarm(2, 3)
    await expect(s.peers[0].reduce(0, new Uint8Array(7), 100)).rejects.toThrow(/is not topk\/32\/2\/2\/4 of 100 elements/)
  })
})
