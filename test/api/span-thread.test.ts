/**
 * The embedded peer's blocks on a Node worker thread (cli/span-thread.ts: the page's span-worker
 * behind worker_threads): forwards equal the in-thread backend bit for bit, batched sessions at
 * different positions included; greedy tokens of concurrent generations through a server whose
 * span runs there (two batches in flight, pipelineDepth 2; or two copies on two threads) equal
 * their unbatched in-thread runs.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { loadThreadSpan } from '../../web/src/cli/span-thread.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import type { SpanBackend, SpanCache } from '../../web/src/swarm/server/backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { WorkerComputeError } from '../../web/src/ui/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'

const DIR = 'models/byte-llama'
const source = sourceFrom(DIR)
const MODEL = 'byte-llama'
const disposables: Array<{ dispose: () => void }> = []
afterAll(() => { for (const d of disposables.splice(0)) d.dispose() })

/** [session, tokens] per round: odd prefills, sessions joining late and sitting out. */
const ROUNDS: Array<Array<[number, number]>> = [
  [[0, 5], [1, 3]],
  [[0, 1], [1, 1], [2, 7]],
  [[0, 1], [2, 1]],
  [[1, 1], [2, 1], [0, 2]]
]

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

describe('block span on a worker thread (npm start\'s embedded peer)', () => {
  it('forwards equal the in-thread backend bit for bit; cache lengths follow; pipelineDepth 2', async () => {
    const thread = await loadThreadSpan(DIR, MODEL, 0, 3)
    disposables.push(thread)
    const local = await loadSpanBackend(source, cpu, MODEL, 0, 3)
    expect(thread.pipelineDepth).toBe(2)
    expect([thread.hiddenSize, thread.cacheBytesPerToken]).toEqual([local.hiddenSize, local.cacheBytesPerToken])
    const C = local.hiddenSize
    const rng = new Rng(11)
    const caches: Array<[SpanCache, SpanCache]> = Array.from({ length: 3 }, () => [thread.createCache(16, 0, 3), local.createCache(16, 0, 3)])
    for (const round of ROUNDS) {
      const steps = round.map(([s, T]) => ({ s, T, hidden: rng.uniform(T * C).map(x => 2 * x - 1) }))
      const got = await thread.forward(steps.map(x => ({ cache: caches[x.s][0], hidden: x.hidden, tokens: x.T })))
      const ref = await local.forward(steps.map(x => ({ cache: caches[x.s][1], hidden: x.hidden, tokens: x.T })))
      steps.forEach((x, j) => {
        expect(bits(got[j])).toEqual(bits(ref[j]))
        expect(caches[x.s][0].length).toBe(caches[x.s][1].length)
      })
    }
    for (const [a, b] of caches) { a.dispose(); b.dispose() }
    // A freed cache is gone in the thread: a step on it fails with an error naming it.
    await expect(thread.forward([{ cache: caches[0][0], hidden: new Float32Array(C), tokens: 1 }])).rejects.toThrow(WorkerComputeError)
    local.dispose()
  })

  it('greedy tokens of 4 concurrent generations through a server on the thread equal their unbatched in-thread runs', async () => {
    const { ends, config } = await loadClientEnds(source, cpu)
    const prompts = ['The man', 'It was a', 'In the ', 'She said'].map(p => [...new TextEncoder().encode(p)])
    const run = async (loadSpan: (s: number, e: number) => Promise<SpanBackend>, concurrent: boolean): Promise<{ tokens: number[][], maxBatch: number }> => {
      const net = new MemoryNetwork({ seed: 5 })
      const dir = new MemoryDirectory()
      const role = new ServerRole({ transport: net.endpoint('s'), directory: dir, model: MODEL, numBlocks: config.numLayers, span: { start: 0, end: 3 }, loadSpan, cacheBudgetBytes: 1 << 22, log: () => {} })
      await role.start()
      try {
        const gen = async (p: number[], i: number): Promise<number[]> => {
          const client = new InferenceClient({ transport: net.endpoint(`c${i}`), directory: dir, model: MODEL, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, timeoutMs: 60_000, hedge: false })
          return (await swarmGenerate(client, ends, p, { maxNewTokens: 12, stopTokens: [] })).tokens
        }
        const tokens = concurrent ? await Promise.all(prompts.map(gen)) : await prompts.reduce<Promise<number[][]>>(async (acc, p, i) => [...await acc, await gen(p, i)], Promise.resolve([]))
        return { tokens, maxBatch: role.server!.stats.maxBatch }
      } finally {
        await role.stop()
      }
    }
    const alone = await run(async (s, e) => await loadSpanBackend(source, cpu, MODEL, s, e, { batching: false }), false)
    const threaded = await run(async (s, e) => await loadThreadSpan(DIR, MODEL, s, e), true)
    // Two copies on two threads (spread-span.ts), as npm start runs on ≥ 2 cores.
    const twoThreads = await run(async (s, e) => await loadThreadSpan(DIR, MODEL, s, e, 2), true)
    expect(alone.maxBatch).toBe(1)
    expect(threaded.maxBatch).toBeGreaterThanOrEqual(2)
    expect(twoThreads.maxBatch).toBeGreaterThanOrEqual(2)
    expect(threaded.tokens).toEqual(alone.tokens)
    expect(twoThreads.tokens).toEqual(alone.tokens)
    expect(threaded.tokens.every(t => t.length === 12)).toBe(true)
  })
})
