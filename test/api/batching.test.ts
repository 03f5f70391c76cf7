/**
 * Continuous batching on a block server (swarm/server/batched-span.ts): several sessions' steps as
 * one forward over stacked rows equal each session run alone — on the CPU twins and on WebGPU,
 * with sessions at different positions, prefill and decode rows mixed, sessions joining and
 * leaving — and greedy tokens of concurrent generations through a server equal their unbatched
 * runs.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { loadClientEnds, loadSpanBackend, type ModelSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import type { SpanCache } from '../../web/src/swarm/server/backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

const source = sourceFrom('models/byte-llama')
const MODEL = 'byte-llama'
const roles: ServerRole[] = []
afterAll(async () => { for (const r of roles.splice(0)) await r.stop() })

/** Schedule of steps: [session, tokens] per round; sessions join late and leave early. */
const ROUNDS: Array<Array<[number, number]>> = [
  [[0, 5], [1, 3]], // two prefills of odd lengths
  [[0, 1], [1, 1], [2, 7]], // session 2 joins with its prefill while 0 and 1 decode
  [[0, 1], [2, 1]], // session 1 sits out a step
  [[1, 1], [2, 1], [3, 2]], // session 0 has left; 3 joins
  [[1, 1], [2, 1], [3, 1]]
]

/** atol 0: equal bit for bit. */
async function compareBatched (be: Backend, atol: number): Promise<void> {
  const batched = await loadSpanBackend(source, be, MODEL, 0, 3)
  const single = await loadSpanBackend(source, be, MODEL, 0, 3, { batching: false })
  const C = batched.hiddenSize
  const rng = new Rng(7)
  const caches: Array<[SpanCache, SpanCache]> = Array.from({ length: 4 }, () => [batched.createCache(16, 0, 3), single.createCache(16, 0, 3)])
  try {
    for (const round of ROUNDS) {
      const steps = round.map(([s, T]) => ({ s, T, hidden: rng.uniform(T * C).map(x => 2 * x - 1) }))
      const got = await batched.forward(steps.map(x => ({ cache: caches[x.s][0], hidden: x.hidden, tokens: x.T })))
      for (const [j, x] of steps.entries()) {
        const [ref] = await single.forward([{ cache: caches[x.s][1], hidden: x.hidden, tokens: x.T }])
        expect(got[j].length).toBe(x.T * C)
        if (atol === 0) expect(new Uint32Array(got[j].buffer, got[j].byteOffset, got[j].length)).toEqual(new Uint32Array(ref.buffer, ref.byteOffset, ref.length))
        else assertClose(got[j], ref, { atol, rtol: atol })
        expect(caches[x.s][0].length).toBe(caches[x.s][1].length)
      }
    }
  } finally {
    for (const [a, b] of caches) { a.dispose(); b.dispose() }
    batched.dispose()
    single.dispose()
  }
}

describe('batched span forward (byte-llama)', () => {
  it('CPU backend: stacked sessions equal each session alone, bit for bit', async () => {
    // Every op is per row, and the blocked matmul sums each output in the same order whatever M is.
    await compareBatched(cpu, 0)
  })

  it('WebGPU: stacked sessions equal each session alone', async () => {
    await compareBatched(await testGpu(), 2e-4)
  })

  it('refuses a session twice in one batch and a step past its cache', async () => {
    const b: ModelSpanBackend = await loadSpanBackend(source, cpu, MODEL, 0, 3)
    const c = b.createCache(4, 0, 3)
    const h = new Float32Array(b.hiddenSize)
    await expect(b.forward([{ cache: c, hidden: h, tokens: 1 }, { cache: c, hidden: h, tokens: 1 }])).rejects.toThrow(/twice/)
    await expect(b.forward([{ cache: c, hidden: new Float32Array(5 * b.hiddenSize), tokens: 5 }])).rejects.toThrow(/remaining/)
    c.dispose()
    b.dispose()
  })

  it('greedy tokens of 4 concurrent generations through one batching server equal their unbatched runs', async () => {
    const { ends, config } = await loadClientEnds(source, cpu)
    const prompts = ['The man', 'It was a', 'In the ', 'She said'].map(p => [...new TextEncoder().encode(p)])
    const run = async (batching: boolean, concurrent: boolean): Promise<{ tokens: number[][], maxBatch: number }> => {
      const net = new MemoryNetwork({ seed: 5 })
      const dir = new MemoryDirectory()
      const role = new ServerRole({
        transport: net.endpoint('s'), directory: dir, model: MODEL, numBlocks: config.numLayers, span: { start: 0, end: 3 },
        loadSpan: async (s, e) => await loadSpanBackend(source, cpu, MODEL, s, e, { batching }), cacheBudgetBytes: 1 << 22, log: () => {}
      })
      await role.start()
      roles.push(role)
      const gen = async (p: number[], i: number): Promise<number[]> => {
        const client = new InferenceClient({ transport: net.endpoint(`c${i}`), directory: dir, model: MODEL, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, timeoutMs: 60_000, hedge: false })
        return (await swarmGenerate(client, ends, p, { maxNewTokens: 12, stopTokens: [] })).tokens
      }
      const tokens = concurrent ? await Promise.all(prompts.map(gen)) : await prompts.reduce<Promise<number[][]>>(async (acc, p, i) => [...await acc, await gen(p, i)], Promise.resolve([]))
      const maxBatch = role.server!.stats.maxBatch
      await role.stop()
      return { tokens, maxBatch }
    }
    const alone = await run(false, false)
    const together = await run(true, true)
    expect(alone.maxBatch).toBe(1)
    expect(together.maxBatch).toBeGreaterThanOrEqual(2)
    expect(together.tokens).toEqual(alone.tokens)
    expect(together.tokens.every(t => t.length === 12)).toBe(true)
  })
})
