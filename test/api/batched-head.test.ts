/**
 * The API's shared LM head (web/src/api/batched-head.ts): rows asked for in one turn go through
 * one forward, each row's logits equal the per-row head's bit for bit on the CPU, and concurrent
 * greedy generations through the API's generator equal their one-at-a-time runs.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { BatchedHead } from '../../web/src/api/batched-head.ts'
import { ColocatedPeers } from '../../web/src/api/colocated.ts'
import { loadSwarmModel, SwarmGenerator } from '../../web/src/api/swarm-generator.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { Rng } from '../../web/src/util/rng.ts'

const source = sourceFrom('models/byte-llama')
const MODEL = 'byte-llama'
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => { for (const c of cleanups.splice(0)) await c() })

const bits = (x: Float32Array): number[] => [...new Uint32Array(x.buffer, x.byteOffset, x.length)]

describe('BatchedHead', () => {
  it('one forward for the rows of one turn; each row bit-equal to the per-row head', async () => {
    const { lm, ends, config } = await loadClientEnds(source, cpu)
    const C = config.hiddenSize
    const rng = new Rng(11)
    for (const M of [1, 3, 5, 8]) {
      const head = new BatchedHead(lm.head, cpu)
      const rows = Array.from({ length: M }, () => rng.uniform(C, -3, 3))
      const got = await Promise.all(rows.map(async r => await head.logits(r)))
      expect(head.stats).toEqual({ forwards: 1, rows: M, maxRows: M })
      for (const [i, r] of rows.entries()) {
        const ref = await ends.logits(r)
        expect(got[i].length).toBe(config.vocabSize)
        expect(bits(got[i])).toEqual(bits(ref))
      }
      // A row asked for after the turn goes into the next forward.
      await head.logits(rows[0])
      expect(head.stats.forwards).toBe(2)
    }
  })

  it('refuses a row of the wrong width, and a failed forward fails only its own rows', async () => {
    const { lm, config } = await loadClientEnds(source, cpu)
    const head = new BatchedHead(lm.head, cpu)
    await expect(head.logits(new Float32Array(config.hiddenSize + 1))).rejects.toBeInstanceOf(SwarmArgumentError)
    expect(head.stats.forwards).toBe(0)
    const broken = new BatchedHead({ ...lm.head, config: lm.head.config, forward: () => { throw new Error('device lost') } } as unknown as typeof lm.head, cpu)
    const a = broken.logits(new Float32Array(config.hiddenSize))
    const b = broken.logits(new Float32Array(config.hiddenSize))
    await expect(a).rejects.toThrow(/device lost/)
    await expect(b).rejects.toThrow(/device lost/)
    expect(await head.logits(new Float32Array(config.hiddenSize))).toHaveLength(config.vocabSize)
  })
})

describe('the API generator with a shared head', () => {
  it('greedy tokens of 6 concurrent generations equal their one-at-a-time runs; the head batched them', async () => {
    // The server co-located, as npm start runs it: the sessions of one server batch get their
    // outputs in one turn (MemoryNetwork would deliver one message per turn).
    const net = new MemoryNetwork({ seed: 8 })
    const peers = new ColocatedPeers()
    const dir = new MemoryDirectory()
    const role = new ServerRole({
      transport: peers.wrap(net.endpoint('s')), directory: dir, model: MODEL, numBlocks: 3, span: { start: 0, end: 3 },
      loadSpan: async (a, b) => await loadSpanBackend(source, cpu, MODEL, a, b), cacheBudgetBytes: 1 << 22, log: () => {}
    })
    await role.start()
    cleanups.push(async () => { await role.stop() })
    const model = await loadSwarmModel({ transport: peers.wrap(net.endpoint('api')), directory: dir, id: MODEL, source, backend: cpu, timeoutMs: 60_000, hedge: false })
    const gen = new SwarmGenerator([model])
    const prompts = ['The jury', 'It was', 'In the city ', 'She ', 'A new law', 'He said that'].map(p => [...new TextEncoder().encode(p)])
    const run = async (prompt: number[]): Promise<number[]> => {
      const r = await gen.generate(MODEL, prompt, { maxTokens: 10, stopTokens: [], temperature: 0 }, () => {}, new AbortController().signal)
      expect(r.finish).toBe('length')
      return r.tokens
    }
    const alone: number[][] = []
    for (const p of prompts) alone.push(await run(p))
    expect(model.head?.stats.maxRows).toBe(1)
    const together = await Promise.all(prompts.map(run))
    expect(together).toEqual(alone)
    expect(model.head!.stats.maxRows).toBeGreaterThanOrEqual(2)
  })
})
