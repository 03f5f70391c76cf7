/**
 * One span served by several copies (swarm/server/spread-span.ts): each session's cache lives in
 * the copy holding fewest, its steps go there, outputs equal one copy's bit for bit; the block
 * server batches each copy's (lane's) steps apart, so a forward is one copy's sessions together.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'
import { loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { BlockServer } from '../../web/src/swarm/server/block-server.ts'
import { SpreadSpanBackend } from '../../web/src/swarm/server/spread-span.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { C, FakeSpanBackend } from './fakes.ts'

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

/** [session, tokens] per round: odd prefills, sessions joining late and sitting out. */
const ROUNDS: Array<Array<[number, number]>> = [
  [[0, 5], [1, 3], [2, 2]],
  [[0, 1], [1, 1], [2, 1], [3, 6]],
  [[2, 1], [0, 1]],
  [[3, 1], [1, 1], [0, 2], [2, 1]]
]

const servers: BlockServer[] = []
afterEach(() => { for (const s of servers.splice(0)) s.stop() })

describe('spread span (copies of one span)', () => {
  it('forwards equal one copy bit for bit; caches spread evenly, each step in its cache\'s copy', async () => {
    const source = sourceFrom('models/byte-llama')
    const spread = new SpreadSpanBackend([await loadSpanBackend(source, cpu, 'm', 0, 3), await loadSpanBackend(source, cpu, 'm', 0, 3)])
    const one = await loadSpanBackend(source, cpu, 'm', 0, 3)
    const H = one.hiddenSize
    expect(spread.pipelineDepth).toBe(2)
    const caches = Array.from({ length: 4 }, () => [spread.createCache(16, 0, 3), one.createCache(16, 0, 3)] as const)
    expect(caches.map(([c]) => spread.lane(c))).toEqual([0, 1, 0, 1])
    expect(spread.caches).toEqual([2, 2])
    const rng = new Rng(5)
    for (const round of ROUNDS) {
      const steps = round.map(([s, T]) => ({ s, T, hidden: rng.uniform(T * H).map(x => 2 * x - 1) }))
      const got = await spread.forward(steps.map(x => ({ cache: caches[x.s][0], hidden: x.hidden, tokens: x.T })))
      const ref = await one.forward(steps.map(x => ({ cache: caches[x.s][1], hidden: x.hidden, tokens: x.T })))
      steps.forEach((x, j) => {
        expect(bits(got[j])).toEqual(bits(ref[j]))
        expect(caches[x.s][0].length).toBe(caches[x.s][1].length)
      })
    }
    // A freed cache frees its place (twice counts once); the next cache goes to the emptier copy.
    caches[1][0].dispose()
    caches[1][0].dispose()
    expect(spread.caches).toEqual([2, 1])
    expect(spread.lane(spread.createCache(8, 0, 3))).toBe(1)
    // A cache of another backend is refused, by name.
    await expect(spread.forward([{ cache: caches[0][1], hidden: new Float32Array(H), tokens: 1 }])).rejects.toThrow(SwarmArgumentError)
    spread.dispose()
    one.dispose()
  })

  it('refuses copies that differ', () => {
    expect(() => new SpreadSpanBackend([new FakeSpanBackend('m', 0, 2), new FakeSpanBackend('m', 0, 3)])).toThrow(SwarmArgumentError)
    expect(() => new SpreadSpanBackend([])).toThrow(SwarmArgumentError)
  })

  it('a block server batches each copy\'s steps apart: one forward per copy, all its sessions', async () => {
    // Only timers are faked: batchWindowMs 0 collects on the next turn (setImmediate).
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval'] })
    try {
      const parts = [new FakeSpanBackend('m', 0, 2), new FakeSpanBackend('m', 0, 2)]
      for (const p of parts) p.pipelineDepth = 2
      const net = new MemoryNetwork({ seed: 3 })
      const backend = new SpreadSpanBackend(parts)
      const server = new BlockServer({ transport: net.endpoint('S'), backend, cacheBudgetBytes: 1 << 20, batchWindowMs: 0, clock: new ManualClock(), log: () => {} })
      server.start()
      servers.push(server)
      const ask = async (from: string, m: InferMsg): Promise<InferMsg> => readInfer(await server.handle(from, writeInfer(m)))
      const peers = ['A', 'B', 'C', 'D']
      const ids: string[] = []
      // Opened one by one: lanes 0, 1, 0, 1.
      for (const p of peers) {
        const o = await ask(p, { type: 'open', model: 'm', start: 0, end: 2, maxTokens: 4 })
        if (o.type !== 'opened') throw new Error(`not opened: ${o.type}`)
        ids.push(o.session)
      }
      const outs = await Promise.all(peers.map(async (p, i) => await ask(p, { type: 'step', session: ids[i], position: 0, hidden: { shape: [1, C], data: new Float32Array(C).fill(0.1 * (i + 1)) } })))
      expect(outs.map(o => o.type)).toEqual(['output', 'output', 'output', 'output'])
      // Without lanes the server's half-the-sessions rule would send [A, B] then [C, D]: two rows
      // of each batch to each copy, forwards of 1 row.
      expect(parts.map(p => p.forwardCalls)).toEqual([[2], [2]])
      expect(server.stats.batches).toBe(2)
    } finally {
      vi.useRealTimers()
    }
  })
})
