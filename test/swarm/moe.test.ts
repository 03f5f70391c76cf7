import { describe, expect, it } from 'vitest'
import { Rng } from '../../web/src/util/rng.ts'
import { ExpertHost, type ExpertRunner } from '../../web/src/swarm/moe/expert-host.ts'
import { assignHosts, RemoteExperts } from '../../web/src/swarm/moe/remote-experts.ts'
import { CoSelectionStats, placeExperts } from '../../web/src/swarm/moe/coselection.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { EXPERT_PROTOCOL } from '../../web/src/swarm/constants.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { readExpert, writeExpert } from '../../web/src/swarm/wire/expert.ts'
import { NoExpertHostError } from '../../web/src/swarm/errors.ts'
import { fakeExpert as fakeExpertC } from './fake-expert.ts'

const C = 6
const E = 4

const fakeExpert = (l: number, e: number, rows: Float32Array, n: number): Float32Array => fakeExpertC(C, l, e, rows, n)

function runner (hosted: Record<number, number[]>): ExpertRunner & { calls: number } {
  return {
    model: 'm',
    hiddenSize: C,
    calls: 0,
    hosted: new Map(Object.entries(hosted).map(([l, es]) => [Number(l), new Set(es)])),
    async run (layer, items) {
      this.calls++
      return items.map(it => fakeExpert(layer, it.expert, it.rows, it.count))
    }
  }
}

/** Rows sorted by expert, with offsets (E + 1), for a random routing of T tokens to k experts. */
function routed (seed: number, T: number) {
  const rng = new Rng(seed)
  const counts = Array.from({ length: E }, () => rng.int(T))
  counts[rng.int(E)] = 0 // one expert idle
  const offsets = [0]
  for (const c of counts) offsets.push(offsets.at(-1)! + c)
  const xs = rng.uniform(offsets[E] * C)
  const ref = new Float32Array(xs.length)
  for (let e = 0; e < E; e++) ref.set(fakeExpert(1, e, xs.subarray(offsets[e] * C, offsets[e + 1] * C), counts[e]), offsets[e] * C)
  return { xs, offsets, ref }
}

async function setup (hosts: Record<string, number[]>) {
  const net = new MemoryNetwork({ seed: 11 })
  const dir = new MemoryDirectory()
  const runners: Record<string, ReturnType<typeof runner>> = {}
  for (const [peer, experts] of Object.entries(hosts)) {
    runners[peer] = runner({ 1: experts })
    new ExpertHost({ transport: net.endpoint(peer), runner: runners[peer], log: () => {} }).start()
    await dir.announceExperts({ peer, model: 'm', layer: 1, experts, throughput: 1, version: 1, expiresAt: Infinity })
  }
  const caller = net.endpoint('caller')
  const remote = new RemoteExperts({ transport: caller, directory: dir, model: 'm', hiddenSize: C, numExperts: E, timeoutMs: 200 })
  return { net, dir, runners, remote, caller }
}

describe('remote MoE experts', () => {
  it('experts split over 2 hosts: one batched call per host, output equals local experts', async () => {
    const { remote, runners } = await setup({ h1: [0, 1], h2: [2, 3] })
    for (let seed = 1; seed <= 5; seed++) {
      const { xs, offsets, ref } = routed(seed, 7)
      expect(Array.from(await remote.run(1, xs, offsets))).toEqual(Array.from(ref))
    }
    expect(runners.h1.calls + runners.h2.calls).toBeLessThanOrEqual(10)
    expect(remote.stats.calls).toBe(runners.h1.calls + runners.h2.calls)
  })

  it('a host that dies or hangs is banned and its experts re-requested from a replica', async () => {
    const { remote, net, runners } = await setup({ h1: [0, 1], h2: [2, 3], r1: [0, 1], r2: [2, 3] })
    const { xs, offsets, ref } = routed(3, 9)
    net.kill('h1')
    net.cut('caller', 'h2') // h2 never answers: the 200 ms timeout catches it
    expect(Array.from(await remote.run(1, xs, offsets))).toEqual(Array.from(ref))
    expect(remote.bans.isBanned('h1') && remote.bans.isBanned('h2')).toBe(true)
    expect(runners.r1.calls + runners.r2.calls).toBe(2)
    expect(remote.stats.retries).toBe(1)
    net.kill('r1')
    net.kill('r2')
    await expect(remote.run(1, xs, offsets)).rejects.toThrow(NoExpertHostError)
  })

  it('assigns experts to as few hosts as possible, preferring itself', () => {
    const hosts = new Map([[0, ['a', 'b']], [1, ['b']], [2, ['b', 'self']], [3, ['a', 'self']]])
    expect([...assignHosts([0, 1, 2, 3], hosts, () => true)]).toEqual([['b', [0, 1, 2]], ['a', [3]]])
    expect([...assignHosts([0, 1, 2, 3], hosts, () => true, 'self')]).toEqual([['self', [2, 3]], ['b', [0, 1]]])
    expect(() => assignHosts([1], hosts, p => p !== 'b')).toThrow(NoExpertHostError)
  })

  it('the host refuses experts it does not hold and malformed calls, with typed errors', async () => {
    const { caller } = await setup({ h1: [0, 1] })
    const ask = async (body: TensorMessage) => readExpert(await caller.request('h1', EXPERT_PROTOCOL, body, { timeoutMs: 500 }))
    const call = (expert: number, cols = C) => writeExpert({ type: 'call', model: 'm', layer: 1, items: [{ expert, rows: { shape: [1, cols], data: new Float32Array(cols) } }] })
    expect(await ask(call(3))).toMatchObject({ type: 'error', code: 8 })
    expect(await ask(call(0, C + 1))).toMatchObject({ type: 'error', code: 3 })
    expect(await ask(writeExpert({ type: 'call', model: 'other', layer: 1, items: [] }))).toMatchObject({ type: 'error', code: 8 })
    expect(await ask({ meta: { v: 2, t: 1, model: 0xff }, tensors: [] })).toMatchObject({ type: 'error', code: 1 })
    expect(await ask(call(1))).toMatchObject({ type: 'result' })
  })
})

describe('co-selection statistics and placement', () => {
  it('counts pairs picked for the same token and inter-layer transitions', () => {
    const s = new CoSelectionStats(2, 4)
    // T = 2 tokens, k = 2: token 0 → {0, 1} then {2, 3}; token 1 → {0, 1} then {2, 3}.
    s.record([[0, 1, 1, 0], [2, 3, 3, 2]], 2)
    expect(s.tokens).toBe(2)
    expect(s.pairs[0][0 * 4 + 1]).toBe(2)
    expect(s.pairs[0][0 * 4 + 2]).toBe(0)
    expect(s.next[0][0 * 4 + 2]).toBe(2)
    expect(s.next[0][1 * 4 + 3]).toBe(2)
    expect(s.withinGroupShare(0, [[0, 1], [2, 3]])).toBe(1)
    expect(s.withinGroupShare(0, [[0, 2], [1, 3]])).toBe(0)
  })

  it('placement keeps often co-selected experts together', () => {
    const s = new CoSelectionStats(1, 4)
    const rng = new Rng(4)
    const choices: number[] = []
    // Experts come in affine pairs {0, 3} and {1, 2}, mostly.
    for (let t = 0; t < 200; t++) {
      const pair = rng.next() < 0.9 ? (rng.next() < 0.5 ? [0, 3] : [1, 2]) : [rng.int(2), 2 + rng.int(2)]
      choices.push(...pair)
    }
    s.record([choices], 2)
    const groups = placeExperts(s, 0, 2)
    expect(groups.map(g => g.join(',')).sort()).toEqual(['0,3', '1,2'])
    expect(s.withinGroupShare(0, groups)).toBeGreaterThan(0.85)
  })
})
