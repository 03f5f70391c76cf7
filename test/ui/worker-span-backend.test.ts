/**
 * WorkerSpanBackend against the real span-worker module, run in this process behind a fake Worker
 * that moves messages the way a browser does (structured clone with transfer, asynchronously):
 * its forwards equal the in-process backend's bit for bit, cache lengths follow the worker's,
 * and failures come back as WorkerComputeError naming the problem. (The browser run, WebGPU in a
 * real worker, is e2e/page.spec.ts.)
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import type { SpanBackend } from '../../web/src/swarm/server/backend.ts'
import { WorkerSpanBackend } from '../../web/src/ui/compute/worker-span-backend.ts'
import { loadWorkerExpertLayer } from '../../web/src/ui/compute/worker-expert-layer.ts'
import { loadExpertLayer } from '../../web/src/swarm/moe/model-layers.ts'
import { WorkerComputeError } from '../../web/src/ui/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'

const DIR = 'test/fixtures/tiny-llama'

type Handler = ((ev: { data: unknown }) => void) | null
/** The worker module's `self`. */
const scope: { postMessage: (m: unknown, transfer?: Transferable[]) => void, onmessage: Handler } = { postMessage: () => {}, onmessage: null }
const deliver = (to: () => Handler, m: unknown, transfer: Transferable[] = []): void => {
  const data = structuredClone(m, { transfer })
  setTimeout(() => { to()?.({ data }) }, 0)
}

class FakeWorker {
  onmessage: Handler = null
  onerror: ((ev: { message: string }) => void) | null = null
  terminated = false
  constructor (readonly url: URL, readonly opts: WorkerOptions) {
    scope.postMessage = (m, transfer) => { if (!this.terminated) deliver(() => this.onmessage, m, transfer) }
  }

  postMessage (m: unknown, transfer: Transferable[] = []): void {
    if (!this.terminated) deliver(() => scope.onmessage, m, transfer)
  }

  terminate (): void { this.terminated = true }
}

const g = globalThis as unknown as { self?: unknown, Worker?: unknown }
const saved = { self: g.self, Worker: g.Worker }

describe('WorkerSpanBackend', () => {
  let local: SpanBackend
  beforeAll(async () => {
    g.self = scope
    g.Worker = FakeWorker
    await import('../../web/src/ui/compute/span-worker.ts')
    local = await loadSpanBackend(sourceFrom(DIR), cpu, 'tiny', 0, 2)
  })
  afterAll(() => { g.self = saved.self; g.Worker = saved.Worker; local.dispose() })

  it('loads in the worker (with progress) and forwards exactly as the in-process backend, cache lengths included', async () => {
    const progress: number[] = []
    const remote = await WorkerSpanBackend.load({ url: DIR, model: 'tiny', start: 0, end: 2, device: 'cpu', onProgress: p => progress.push(p.bytesLoaded) })
    expect(progress.length).toBeGreaterThan(0)
    expect(remote.hiddenSize).toBe(local.hiddenSize)
    expect(remote.cacheBytesPerToken).toBe(local.cacheBytesPerToken)
    const rng = new Rng(7)
    const C = local.hiddenSize
    const rand = (t: number): Float32Array => Float32Array.from({ length: t * C }, () => rng.next() * 2 - 1)
    // Two sessions batched, one on a sub-span; a prompt of odd length, then single tokens.
    const lc = [local.createCache(16, 0, 2), local.createCache(16, 1, 2)]
    const rc = [remote.createCache(16, 0, 2), remote.createCache(16, 1, 2)]
    for (const T of [5, 1, 1]) {
      const hs = [rand(T), rand(T)]
      const want = await local.forward(hs.map((h, i) => ({ cache: lc[i], hidden: h, tokens: T })))
      const got = await remote.forward(hs.map((h, i) => ({ cache: rc[i], hidden: h, tokens: T })))
      expect(got).toEqual(want)
      expect(rc.map(c => c.length)).toEqual(lc.map(c => c.length))
      // The caller's arrays are not detached by the transfer.
      expect(hs[0].length).toBe(T * C)
    }
    expect(rc[0].length).toBe(7)
    remote.dispose()
    for (const c of lc) c.dispose()
  })

  it('names failures: a span outside the loaded one, an overfull cache, a stopped worker, a bad model URL', async () => {
    const remote = await WorkerSpanBackend.load({ url: DIR, model: 'tiny', start: 1, end: 2, device: 'cpu' })
    expect(() => remote.createCache(4, 0, 2)).toThrow(/not within/)
    const c = remote.createCache(2, 1, 2)
    const C = remote.hiddenSize
    await expect(remote.forward([{ cache: c, hidden: new Float32Array(3 * C), tokens: 3 }])).rejects.toThrow(WorkerComputeError)
    remote.dispose()
    await expect(remote.forward([{ cache: c, hidden: new Float32Array(C), tokens: 1 }])).rejects.toThrow(/stopped/)
    await expect(WorkerSpanBackend.load({ url: 'test/fixtures/no-such-model', model: 'x', start: 0, end: 1, device: 'cpu' })).rejects.toThrow(/loading blocks 0:1 in the worker/)
  })

  it("runs one MoE layer's experts in the worker exactly as in the page; names a non-MoE layer and a stopped worker", async () => {
    const MIX = 'test/fixtures/tiny-mixtral'
    const local = await loadExpertLayer(sourceFrom(MIX), cpu, 'mix', 1)
    const progress: number[] = []
    const remote = await loadWorkerExpertLayer({ url: MIX, model: 'mix', layer: 1, device: 'cpu', onProgress: p => progress.push(p.bytesLoaded) })
    expect(progress.length).toBeGreaterThan(0)
    const C = (JSON.parse(readFileSync(`${MIX}/config.json`, 'utf8')) as { hidden_size: number }).hidden_size
    const rng = new Rng(11)
    const rows = (n: number): Float32Array => Float32Array.from({ length: n * C }, () => rng.next() * 2 - 1)
    // Odd row counts, an expert twice, experts out of order.
    const items = [{ expert: 3, rows: rows(1), count: 1 }, { expert: 0, rows: rows(3), count: 3 }, { expert: 3, rows: rows(2), count: 2 }]
    const want = await local.run(items)
    const got = await remote.run(items)
    expect(got).toEqual(want)
    expect(items[1].rows.length).toBe(3 * C) // not detached by the transfer
    remote.dispose()
    await expect(remote.run(items)).rejects.toThrow(/stopped/)
    local.dispose()
    await expect(loadWorkerExpertLayer({ url: DIR, model: 'tiny', layer: 0, device: 'cpu' })).rejects.toThrow(/loading experts of layer 0 in the worker: .*not a MoE layer/)
  })
})
