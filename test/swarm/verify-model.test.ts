/**
 * Verification on the real model (tiny-mixtral) over the seeded in-process network: honest
 * servers on different hardware paths — CPU twins with an f32 KV cache, CPU twins with an f16 KV
 * cache, WebGPU (SwiftShader) in f32, the span split over two servers — verify each other in
 * strict mode without a single mismatch; a server that adds 5 % noise or answers from another
 * model (tiny-llama's blocks, same width) is caught and the tokens equal the fixture's.
 */
import { readFileSync } from 'node:fs'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { tidy } from '../../web/src/gpu/tensor.ts'
import { loadBlocks, type BlockSpan, type KvCache } from '../../web/src/model/model.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../../web/src/swarm/client/generate.ts'
import { loadClientEnds, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../../web/src/swarm/server/backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { testGpu } from '../helpers/gpu.ts'
import { LyingBackend, type LieKind } from './verify-hostile.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
const MODEL = 'tiny-mixtral'
const source = sourceFrom(DIR)
const RELAXED_MS = 60_000

let ends: ClientEnds
let gpu: GpuBackend
beforeAll(async () => {
  ends = (await loadClientEnds(source, cpu)).ends
  gpu = await testGpu()
})
const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

/** A span whose sessions keep an f16 KV cache (on the CPU twins: the rounding a shader-f16 adapter does). */
class F16KvBackend implements SpanBackend {
  readonly hiddenSize: number
  readonly cacheBytesPerToken: number
  constructor (readonly model: string, readonly span: BlockSpan) {
    this.hiddenSize = span.config.hiddenSize
    this.cacheBytesPerToken = 2 * span.config.numKvHeads * span.config.headDim * 2
  }

  get start (): number { return this.span.range.start }
  get end (): number { return this.span.range.end }
  createCache (capacity: number, start: number, end: number): SpanCache & { kv: KvCache } {
    if (start !== this.start || end !== this.end) throw new Error(`F16KvBackend serves [${this.start}, ${this.end}) only`)
    const kv = this.span.newCache(capacity, 'f16')
    return { kv, start, end, get length () { return kv.length }, get capacity () { return kv.capacity }, dispose: () => kv.dispose() }
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    const out: Float32Array[] = []
    for (const s of steps) {
      const kv = (s.cache as SpanCache & { kv: KvCache }).kv
      const y = tidy(() => this.span.forward(this.span.backend.tensor(s.hidden, [s.tokens, this.hiddenSize]), kv))
      out.push(await y.readF32())
      y.dispose()
    }
    return out
  }

  dispose (): void {}
}

type Kind = 'cpu' | 'cpu-f16kv' | 'webgpu'
interface Spec { peer: string, start: number, end: number, rtt: number, kind: Kind, lie?: LieKind }

async function backendOf (kind: Kind, start: number, end: number): Promise<SpanBackend> {
  if (kind === 'cpu-f16kv') return new F16KvBackend(MODEL, await loadBlocks(source, cpu, { start, end }))
  const be: Backend = kind === 'webgpu' ? gpu : cpu
  return await loadSpanBackend(source, be, MODEL, start, end)
}

async function swarm (seed: number, specs: Spec[]): Promise<InferenceClient> {
  const net = new MemoryNetwork({ seed })
  const dir = new MemoryDirectory()
  for (const s of specs) {
    const role = new ServerRole({
      transport: net.endpoint(s.peer), directory: dir, model: MODEL, numBlocks: 2, span: { start: s.start, end: s.end },
      loadSpan: async (a, b) => {
        const honest = await backendOf(s.kind, a, b)
        if (s.lie === undefined) return honest
        const other = s.lie === 'model' ? await loadSpanBackend(sourceFrom('test/fixtures/tiny-llama'), cpu, MODEL, a, b) : undefined
        return new LyingBackend(honest, s.lie, {}, other)
      },
      cacheBudgetBytes: 1 << 22, throughput: 100
    })
    await role.start()
    roles.push(role)
  }
  const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model: MODEL, numBlocks: 2, hiddenSize: 64, timeoutMs: RELAXED_MS, hedgeFloorMs: RELAXED_MS, verify: { rate: 1 } })
  for (const s of specs) client.rttMs.set(s.peer, s.rtt)
  return client
}

describe('verification on tiny-mixtral (seeded network)', () => {
  it('honest servers on CPU f32, CPU f16 KV, WebGPU f32 and a split span check each other in strict mode: no mismatch, fixture tokens', async () => {
    const kinds: Kind[] = ['cpu', 'cpu-f16kv', 'webgpu']
    let worst = 0
    // Each backend takes the route once (lowest RTT), the next one verifies it, the split is the third opinion.
    for (let i = 0; i < kinds.length; i++) {
      const specs: Spec[] = kinds.map((kind, j) => ({ peer: kind, start: 0, end: 2, rtt: 1 + ((j - i + kinds.length) % kinds.length), kind }))
      specs.push({ peer: 'a', start: 0, end: 1, rtt: 50, kind: 'cpu' }, { peer: 'b', start: 1, end: 2, rtt: 50, kind: 'cpu-f16kv' })
      const client = await swarm(i + 1, specs)
      const r = await swarmGenerate(client, ends, ref.prompt, { maxNewTokens: 6 })
      expect(r.tokens, kinds[i]).toEqual(ref.greedy.slice(0, 6))
      expect(r.session.route.map(s => s.peer)).toEqual([kinds[i]])
      const st = client.verify!.stats
      expect(st.mismatches, kinds[i]).toBe(0)
      expect(st.liars).toEqual([])
      expect(st.positionsCompared).toBe(ref.prompt.length + 5)
      worst = Math.max(worst, st.maxAgreeingDeviation)
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
    // The f16 cache does round: the check compared numbers that differ, and stayed under the threshold.
    expect(worst).toBeGreaterThan(1e-5)
  })

  for (const lie of ['noise', 'model'] as const) {
    it(`a server that ${lie === 'noise' ? 'adds 5 % noise' : 'answers from another model'} is caught in strict mode; tokens equal the fixture`, async () => {
      const client = await swarm(7, [
        { peer: 'liar', start: 1, end: 2, rtt: 0.1, kind: 'cpu', lie },
        { peer: 's0', start: 0, end: 1, rtt: 1, kind: 'cpu' },
        { peer: 'v1', start: 1, end: 2, rtt: 2, kind: 'cpu-f16kv' },
        { peer: 'v2', start: 0, end: 2, rtt: 30, kind: 'cpu' }
      ])
      const r = await swarmGenerate(client, ends, ref.prompt, { maxNewTokens: ref.greedy.length })
      expect(r.tokens).toEqual(ref.greedy)
      expect(client.verify!.stats.liars).toEqual(['liar'])
      expect(client.bans.isLiar('v1')).toBe(false)
    })
  }
})
