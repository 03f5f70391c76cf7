/**
 * ExpertRole on the in-memory network: auto placement as peers join, records refreshed before
 * expiry and withdrawn on leave, re-checks that fix a double pick without uncovering anything,
 * and callers (RemoteExperts) getting the local experts' output throughout.
 */
import { describe, expect, it } from 'vitest'
import { ExpertRole, type LoadedExpertLayer } from '../../../web/src/swarm/moe/expert-role.ts'
import { RemoteExperts } from '../../../web/src/swarm/moe/remote-experts.ts'
import { MemoryDirectory } from '../../../web/src/swarm/records.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/memory.ts'
import { NoExpertHostError } from '../../../web/src/swarm/errors.ts'
import type { Affinity } from '../../../web/src/swarm/moe/summary.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { fakeExpert as fakeExpertC } from '../fake-expert.ts'

/** Resolves once `cond()` holds, checking after each macrotask (the test's timeout bounds a wait that never ends). */
async function until (cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise(resolve => setImmediate(resolve))
}

const C = 5
const E = 4

const expert = (l: number, e: number, rows: Float32Array, n: number): Float32Array => fakeExpertC(C, l, e, rows, n)

function layers (): { load: (l: number) => Promise<LoadedExpertLayer>, loaded: number[], disposed: number[] } {
  const loaded: number[] = []
  const disposed: number[] = []
  return {
    loaded,
    disposed,
    load: async (l: number) => {
      loaded.push(l)
      return { run: async items => items.map(it => expert(l, it.expert, it.rows, it.count)), dispose: () => { disposed.push(l) } }
    }
  }
}

/** Every expert of layer 1 gets 2 rows. */
function batch (seed: number): { xs: Float32Array, offsets: number[], ref: Float32Array } {
  const offsets = Array.from({ length: E + 1 }, (_, e) => 2 * e)
  const xs = new Rng(seed).uniform(2 * E * C)
  const ref = new Float32Array(xs.length)
  for (let e = 0; e < E; e++) ref.set(expert(1, e, xs.subarray(2 * e * C, 2 * (e + 1) * C), 2), 2 * e * C)
  return { xs, offsets, ref }
}

function setup (now?: () => number) {
  const net = new MemoryNetwork({ seed: 5 })
  const dir = new MemoryDirectory(now)
  const roles: ExpertRole[] = []
  const role = (peer: string, extra: Partial<ConstructorParameters<typeof ExpertRole>[0]> = {}): ExpertRole => {
    const r = new ExpertRole({ transport: net.endpoint(peer), directory: dir, model: 'm', hiddenSize: C, numExperts: E, layers: [1], slots: 2, loadLayer: layers().load, recheckMs: 0, ...extra })
    roles.push(r)
    return r
  }
  const caller = new RemoteExperts({ transport: net.endpoint('caller'), directory: dir, model: 'm', hiddenSize: C, numExperts: E, timeoutMs: 200 })
  return { net, dir, role, roles, caller }
}

const placed = (r: ExpertRole): string => [...r.placement].map(([l, es]) => `${l}:${es.join(',')}`).join(';')

describe('ExpertRole', () => {
  it('peers joining one by one cover the layer (affinity pairs kept together); calls equal the local experts', async () => {
    const m = new Float64Array(E * E)
    for (const [i, j] of [[0, 3], [1, 2]]) { m[i * E + j] = m[j * E + i] = 0.45 }
    const affinity = async (): Promise<Affinity> => new Map([[1, m]])
    const { role, caller, dir } = setup()
    const a = role('a', { affinity })
    await a.start()
    const b = role('b', { affinity })
    await b.start()
    expect([placed(a), placed(b)].sort()).toEqual(['1:0,3', '1:1,2'])
    expect((await dir.expertRecords('m', 1)).map(r => r.state)).toEqual(['online', 'online'])
    const { xs, offsets, ref } = batch(1)
    expect(Array.from(await caller.run(1, xs, offsets))).toEqual(Array.from(ref))
    expect(caller.stats.calls).toBe(2)
    for (const r of [a, b]) await r.stop()
  })

  it('an explicit placement (--experts 1:0,2) is hosted as given and never re-checked; bad ones are refused', async () => {
    const { role, dir } = setup()
    await dir.announceExperts({ peer: 'z', model: 'm', layer: 1, experts: [0, 1, 2, 3], throughput: 1, version: 1, expiresAt: Infinity, state: 'online' })
    const a = role('a', { hosted: new Map([[1, new Set([2, 0])]]) })
    await a.start()
    expect(placed(a)).toBe('1:0,2')
    expect(await a.recheckOnce()).toBe(false)
    await a.stop()
    await expect(role('b', { hosted: new Map([[1, new Set([4])]]) }).start()).rejects.toThrow(/experts 4 are not in \[0, 4\)/)
  })

  it('a layer that fails to load withdraws the JOINING claim; a failing affinity source means coverage only', async () => {
    const { role, dir } = setup()
    const bad = role('a', { loadLayer: async () => { throw new Error('weights unreadable') } })
    await expect(bad.start()).rejects.toThrow('weights unreadable')
    expect((await dir.expertRecords('m', 1)).map(r => r.state)).toEqual(['offline'])
    const lines: string[] = []
    const b = role('b', { affinity: async () => { throw new Error('doc gone') }, log: l => lines.push(l) })
    await b.start()
    expect(placed(b)).toBe('1:0,1') // the withdrawn claim does not count as coverage
    expect(lines.join('\n')).toMatch(/coverage only: doc gone/)
    await b.stop()
  })

  it('refreshes its records before they expire and withdraws them (OFFLINE) on leave', async () => {
    // Records and refreshes on a ManualClock: the refresh timer, not the machine's speed, decides.
    const clock = new ManualClock()
    const { role, dir, caller } = setup(clock.now)
    const a = role('a', { slots: 4, ttlMs: 60, refreshMs: 20, clock, now: clock.now })
    await a.start()
    for (let t = 0; t < 200; t += 20) { // > 3 lifetimes, one refresh period at a time
      clock.advance(20)
      await new Promise(resolve => setImmediate(resolve)) // that refresh's announce lands
    }
    const live = await dir.expertRecords('m', 1)
    expect(live.map(r => [r.peer, r.state, r.experts.join(',')])).toEqual([['a', 'online', '0,1,2,3']])
    const { xs, offsets, ref } = batch(2)
    expect(Array.from(await caller.run(1, xs, offsets))).toEqual(Array.from(ref))
    await a.stop()
    expect((await dir.expertRecords('m', 1)).map(r => r.state)).toEqual(['offline'])
    await expect(caller.run(1, xs, offsets)).rejects.toThrow(NoExpertHostError)
  })

  it('two peers that picked the same experts at once: the re-check moves one, nothing is ever uncovered', async () => {
    const { role, dir, caller } = setup()
    // Both choose before either announces: the same two experts.
    const a = role('a', { dropGraceMs: 30 })
    const b = role('b', { dropGraceMs: 30 })
    await Promise.all([a.start(), b.start()])
    expect(placed(a)).toBe(placed(b))
    const { xs, offsets, ref } = batch(3)
    await expect(caller.run(1, xs, offsets)).rejects.toThrow(NoExpertHostError)
    const moved = await Promise.all([a.recheckOnce(), b.recheckOnce()])
    expect(moved).toEqual([false, true]) // only the larger id moves
    expect([placed(a), placed(b)].sort()).toEqual(['1:0,1', '1:2,3'])
    expect(b.moves[0].reason).toMatch(/2 uncovered.*→ 0 uncovered/)
    // During the grace b still answers the dropped experts; after it, only the new ones.
    expect([...b.hosted.get(1)!].sort()).toEqual([0, 1, 2, 3])
    expect(Array.from(await caller.run(1, xs, offsets))).toEqual(Array.from(ref))
    await until(() => b.hosted.get(1)!.size === 2) // the 30 ms grace ended (not: 60 ms passed)
    expect([...b.hosted.get(1)!].sort()).toEqual([2, 3])
    expect(Array.from(await caller.run(1, xs, offsets))).toEqual(Array.from(ref))
    // Stable now: neither moves again.
    expect(await Promise.all([a.recheckOnce(), b.recheckOnce()])).toEqual([false, false])
    expect((await dir.expertRecords('m', 1)).every(r => r.state === 'online')).toBe(true)
    for (const r of [a, b]) await r.stop()
  })

  it('a move to another layer withdraws the old layer and frees its weights after the grace', async () => {
    const net = new MemoryNetwork({ seed: 6 })
    const dir = new MemoryDirectory()
    const ls = layers()
    // Each layer has one host; layer 1's is slower, so b takes layer 1.
    await dir.announceExperts({ peer: 'a', model: 'm', layer: 0, experts: [0, 1, 2, 3], throughput: 5, version: 1, expiresAt: Infinity, state: 'online' })
    await dir.announceExperts({ peer: 'c', model: 'm', layer: 1, experts: [0, 1, 2, 3], throughput: 1, version: 1, expiresAt: Infinity, state: 'online' })
    const b = new ExpertRole({ transport: net.endpoint('b'), directory: dir, model: 'm', hiddenSize: C, numExperts: E, layers: [0, 1], slots: 4, loadLayer: ls.load, recheckMs: 0, dropGraceMs: 20 })
    await b.start()
    expect(placed(b)).toBe('1:0,1,2,3')
    dir.forget('c') // c vanished: layer 1 now has only b; layer 0 has a — nothing to gain
    expect(await b.recheckOnce()).toBe(false)
    dir.forget('a') // a vanished too: layer 0 uncovered, but b is layer 1's only host: it must stay
    expect(await b.recheckOnce()).toBe(false)
    await dir.announceExperts({ peer: 'a', model: 'm', layer: 1, experts: [0, 1, 2, 3], throughput: 1, version: 2, expiresAt: Infinity, state: 'online' })
    // Now 'a' (smaller id) holds layer 1: b may leave it for the uncovered layer 0.
    expect(await b.recheckOnce()).toBe(true)
    expect(placed(b)).toBe('0:0,1,2,3')
    expect((await dir.expertRecords('m', 1)).find(r => r.peer === 'b')?.state).toBe('offline')
    await until(() => ls.disposed.length > 0) // the 20 ms grace ended and layer 1 was let go (not: 50 ms passed)
    expect(ls.loaded).toEqual([1, 0])
    expect(ls.disposed).toEqual([1])
    await b.stop()
    expect(ls.disposed).toEqual([1, 0])
  })
})
