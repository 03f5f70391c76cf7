/**
 * DiLoCo workers on a real tiny Llama (CPU twins) over the seeded in-memory network: loss falls,
 * replicas stay bit-identical after every sync, a killed worker, a late joiner, a corrupting peer,
 * and the streaming (fragment) schedule.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork, type RpcTransport, type RequestOptions, type RpcHandler, type TensorMessage } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer, type ReduceBuffers } from '../../../web/src/swarm/train/allreduce.ts'
import { fetchSnapshot } from '../../../web/src/swarm/train/late-join.ts'
import { MsgType, decodeMsg, encodeMsg } from '../../../web/src/swarm/train/wire.ts'
import { DiLoCoWorker, type DiLoCoOptions, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { PeerUnreachableError } from '../../../web/src/swarm/errors.ts'
import { expectIdentical } from './replicas.ts'
import { CLOCKED_TIMING, countReduces, driveWhenQuiet, type QuietDriver } from '../../../web/src/sim/quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const MODEL_SEED = 7
/**
 * The all-reduce's timers run on a ManualClock (`clocked`): in the healthy-path tests it never
 * moves, so no ready window or part timeout can cut a slow worker out however loaded the machine
 * is (the coordinator starts a round as soon as every expected peer is READY); the fault tests
 * fire them only when every live worker waits in reduce() and the network is quiet
 * (quiet-clock.ts). The transport's request timeouts (real time, derived from these) are long
 * enough never to fire.
 */
const TIMING = { ...CLOCKED_TIMING, partElements: 4096, windowParts: 4 }

let train: TextDataset
let evalWindows: Window[]
beforeAll(async () => {
  const { train: t, validation } = new TextDataset((await brownCorpus()).slice(0, 400_000)).split(0.1)
  train = t
  const it = validation.windows(32, 99)
  evalWindows = Array.from({ length: 4 }, () => it.next().value as Window)
})

class Tap implements RpcTransport {
  onSend: ((peer: string, body: TensorMessage) => TensorMessage | undefined) | undefined
  /** Set when this peer's process is gone: its own requests fail at once, as a closed node's would (the network would only lose them, after their timeout). */
  down = false
  constructor (private readonly inner: RpcTransport) {}
  get self (): string { return this.inner.self }
  async request (peer: string, protocol: string, body: TensorMessage, opts: RequestOptions): Promise<TensorMessage> {
    if (this.down) throw new PeerUnreachableError(peer, 'this node is closed')
    return await this.inner.request(peer, protocol, this.onSend?.(peer, body) ?? body, opts)
  }
  handle (protocol: string, handler: RpcHandler): void { this.inner.handle(protocol, handler) }
  unhandle (protocol: string): void { this.inner.unhandle(protocol) }
}

/** The run's members as the CRDT would hold them: peer → first sync it takes part in. */
class Directory {
  readonly from = new Map<string, number>()
  expected = (seq: number): string[] => [...this.from].filter(([, s]) => s <= seq).map(([p]) => p).sort()
}

interface Node {
  id: string, tap: Tap, ar: AllReducePeer, worker: DiLoCoWorker, syncs: SyncEvent[], losses: number[]
  /** reduce() calls in progress; `killed`: left the network (no longer awaited by the clock driver). */
  reducing: number
  killed: boolean
}

let nodes: Node[] = []
let clock = new ManualClock()
let driver: QuietDriver | undefined
afterEach(() => { driver?.stop(); driver = undefined; for (const n of nodes) { n.ar.stop(); n.worker.dispose() } nodes = []; clock = new ManualClock() })

/** Fires the all-reduce's timers only when every live node waits inside reduce() on a quiet network. */
function driveTimers (net: MemoryNetwork): QuietDriver {
  driver = driveWhenQuiet(clock, net, () => nodes.every(n => n.killed || n.reducing > 0))
  return driver
}

const OPTS: Omit<DiLoCoOptions, 'dataSeed'> = { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.9 } }

async function node (net: MemoryNetwork, dir: Directory, id: string, dataSeed: number, opts: Partial<DiLoCoOptions> = {}): Promise<Node> {
  const tap = new Tap(net.endpoint(id))
  const ar = new AllReducePeer(tap, { run: 'r1', directory: dir, ...TIMING, clock, log: process.env.AR_LOG !== undefined ? (l) => { console.log(`${Date.now() % 100_000} v${clock.now()} ${id}: ${l}`) } : undefined })
  const n: Node = { id, tap, ar, worker: undefined as unknown as DiLoCoWorker, syncs: [], losses: [], reducing: 0, killed: false }
  countReduces(ar, d => { n.reducing += d })
  n.worker = new DiLoCoWorker(initModel(CONFIG, cpu, MODEL_SEED), train, ar, { ...OPTS, dataSeed, ...opts }, {
    onSync: (e) => { n.syncs.push(e) },
    onStep: (e) => { n.losses.push(e.loss) },
    resync: async () => await fetchSnapshot(ar, dir.expected(Number.MAX_SAFE_INTEGER), { timeoutMs: 2000 })
  })
  nodes.push(n)
  return n
}

describe('DiLoCo on a tiny Llama over the seeded network', () => {
  it('3 workers: loss falls over rounds, every replica hashes equal after every round', async () => {
    const net = new MemoryNetwork({ seed: 3 })
    const dir = new Directory()
    const ns = await Promise.all(['w-a', 'w-b', 'w-c'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1, { evalWindows }) }))
    const before = await ns[0].worker.evalGlobal(evalWindows)
    for (const n of ns) await n.worker.initFromModel()
    expect(new Set(ns.map(n => n.worker.lastHash)).size).toBe(1)
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(4) }))
    expect(expectIdentical(ns)).toBe(2 * 4)
    expect(clock.fired).toBe(0) // no window or timeout decided anything
    for (const n of ns) expect(n.syncs.map(s => s.members.length)).toEqual([3, 3, 3, 3])
    const evals = ns[0].syncs.map(s => s.evalLoss!)
    expect(evals[3]).toBeLessThan(before - 0.3)
    expect(evals[3]).toBeLessThan(evals[0])
    // θ_local was reset to θ_global: local parameters equal the global vector bit for bit
    const local = new Float32Array(ns[1].worker.layout.total)
    for (const s of ns[1].worker.layout.slots) local.set(await ns[1].worker.model.params.get(s.name)!.readF32(), s.offset)
    expect(Buffer.from(local.buffer).equals(Buffer.from(ns[1].worker.global.buffer))).toBe(true)
  })

  it('a worker killed mid-all-reduce: the round completes with the other two, replicas stay identical', async () => {
    const net = new MemoryNetwork({ seed: 5 })
    const dir = new Directory()
    const ns = await Promise.all(['w-a', 'w-b', 'w-c'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1) }))
    for (const n of ns) await n.worker.initFromModel()
    const timers = driveTimers(net)
    let reduces = 0
    ns[1].tap.onSend = (_p, body) => {
      const m = decodeMsg(body)
      if (m.type === MsgType.REDUCE && m.round === 1 && ++reduces === 2) queueMicrotask(() => { ns[1].killed = ns[1].tap.down = true; net.kill('w-b'); ns[1].ar.stop() })
      return undefined
    }
    const victim = ns[1].worker.runSyncs(3).catch((e: unknown) => e)
    await Promise.all([ns[0], ns[2]].map(async n => { await n.worker.runSyncs(3) }))
    await victim
    expect(reduces).toBeGreaterThanOrEqual(2)
    expectIdentical([ns[0], ns[2]])
    expect(ns[0].syncs.map(s => s.members.length)).toEqual([3, 2, 2])
    expect(ns[0].syncs[1].attempt).toBeGreaterThan(0)
    expect(ns[0].worker.lastHash).toBe(ns[2].worker.lastHash)
    expect(timers.fired).toBeGreaterThan(0) // the dead peer's parts failed by timeout, not by chance
  })

  it('a late joiner at round 2 fetches θ_global + momentum and ends bit-identical', async () => {
    const net = new MemoryNetwork({ seed: 9 })
    const dir = new Directory()
    const ns = await Promise.all(['w-a', 'w-b'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1) }))
    for (const n of ns) await n.worker.initFromModel()
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(2) }))
    const late = await node(net, dir, 'w-c', 3)
    const snap = await fetchSnapshot(late.ar, ['w-a', 'w-b'], { expectHash: ns[0].worker.lastHash, totalBytes: 8 * late.worker.layout.total, sliceBytes: 20_000 })
    await late.worker.initFromSnapshot(snap)
    expect(late.worker.lastHash).toBe(ns[0].worker.lastHash)
    expect(late.worker.nextSeq).toBe(2)
    dir.from.set('w-c', 2)
    await Promise.all([...ns, late].map(async n => { await n.worker.runSyncs(2) }))
    expectIdentical([...ns, late])
    expect(late.syncs.map(s => s.members)).toEqual([['w-a', 'w-b', 'w-c'], ['w-a', 'w-b', 'w-c']])
    expect(late.worker.lastHash).toBe(ns[0].worker.lastHash)
    expect(clock.fired).toBe(0)
    // a wrong expected hash is refused
    await expect(fetchSnapshot(late.ar, ['w-a'], { expectHash: 'f'.repeat(64) })).rejects.toThrow(/verifiable/)
  })

  it('a peer sending corrupted pseudo-gradients does not corrupt θ_global', async () => {
    const net = new MemoryNetwork({ seed: 13 })
    const dir = new Directory()
    const ns = await Promise.all(['w-a', 'w-b', 'w-c'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1, { evalWindows }) }))
    for (const n of ns) await n.worker.initFromModel()
    driveTimers(net)
    let sent = 0
    ns[2].tap.onSend = (_p, body) => {
      const m = decodeMsg(body)
      if (m.type !== MsgType.REDUCE) return undefined
      const q = m.payload.slice()
      const v = new DataView(q.buffer)
      // alternate: NaN scales, then scales blown up to 1e30 (clipped), then a truncated payload
      const kind = sent++ % 3
      if (kind === 2) return encodeMsg({ ...m, payload: q.subarray(0, q.byteLength - 1) })
      for (let o = 0; o < q.byteLength; o += 4 + 64) v.setFloat32(o, kind === 0 ? NaN : 1e30, true)
      return encodeMsg({ ...m, payload: q })
    }
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(3) }))
    expectIdentical(ns)
    expect(ns[0].worker.global.every(Number.isFinite)).toBe(true)
    expect(ns[0].syncs.some(s => s.rejected.includes('w-c'))).toBe(true)
    expect(ns[0].syncs.some(s => s.clipped.includes('w-c'))).toBe(true)
    const evals = ns[0].syncs.map(s => s.evalLoss!)
    expect(evals[2]).toBeLessThan(5.2) // still learning (ln 256 = 5.55 at init)
  })

  it('streaming: 2 fragments on a staggered schedule with one overlapped step stay identical', async () => {
    const net = new MemoryNetwork({ seed: 17 })
    const dir = new Directory()
    const opts = { innerSteps: 4, fragments: 2, overlapSteps: 1, mixAlpha: 0.5 }
    const ns = await Promise.all(['w-a', 'w-b', 'w-c'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1, opts) }))
    for (const n of ns) await n.worker.initFromModel()
    await Promise.all(ns.map(async n => { await n.worker.runSyncs(4) }))
    expect(expectIdentical(ns)).toBe(2 * 4)
    expect(clock.fired).toBe(0) // no window or timeout decided anything
    expect(ns[0].syncs.map(s => s.fragment)).toEqual([0, 1, 0, 1])
    // fragment 0 syncs at steps 4, 8; fragment 1 at 6, 10; each lands one step later
    expect(ns[0].worker.step).toBe(11)
    const first = ns[0].losses.slice(0, 3).reduce((a, b) => a + b) / 3
    const last = ns[0].losses.slice(-3).reduce((a, b) => a + b) / 3
    expect(last).toBeLessThan(first)
  })
  it('receive buffers: each fragment reuses its own; hashes equal a run that allocates per sync', async () => {
    const opts = { innerSteps: 4, fragments: 2, overlapSteps: 1 }
    const run = async (reuse: boolean): Promise<{ hashes: string[], means: Float32Array[][] }> => {
      const net = new MemoryNetwork({ seed: 21 })
      const dir = new Directory()
      const ns = await Promise.all(['w-a', 'w-b'].map(async (id, i) => { dir.from.set(id, 0); return await node(net, dir, id, i + 1, opts) }))
      const means: Float32Array[][] = [[], []] // w-a's outcome.mean per fragment, in sync order
      for (const n of ns) {
        const reduce = n.ar.reduce.bind(n.ar)
        n.ar.reduce = async (round: number, q: Uint8Array, len: number, into?: ReduceBuffers) => {
          const out = await reduce(round, q, len, reuse ? into : undefined)
          if (n.id === 'w-a') means[round % 2].push(out.mean)
          return out
        }
        await n.worker.initFromModel()
      }
      await Promise.all(ns.map(async n => { await n.worker.runSyncs(4) }))
      expectIdentical(ns)
      expect(clock.fired).toBe(0)
      const hashes = ns[0].syncs.map(s => s.hash)
      for (const n of nodes) { n.ar.stop(); n.worker.dispose() }
      nodes = []
      return { hashes, means }
    }
    const reused = await run(true)
    const fresh = await run(false)
    expect(reused.hashes).toHaveLength(4)
    expect(reused.hashes).toEqual(fresh.hashes)
    for (const [a, b] of reused.means) expect(a).toBe(b) // the same array, sync after sync
    expect(reused.means[0][0]).not.toBe(reused.means[1][0]) // one per fragment
    for (const [a, b] of fresh.means) expect(a).not.toBe(b)
  })
})
