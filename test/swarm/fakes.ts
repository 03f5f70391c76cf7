/**
 * Deterministic stand-ins for the model, so the swarm's logic is tested without WebGPU:
 * a "block" whose output depends on every earlier input (like attention), so a server that lost
 * its KV cache, or got it rebuilt wrongly, gives different numbers.
 */
import { Rng } from '../../web/src/util/rng.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../../web/src/swarm/server/backend.ts'
import type { ClientEnds } from '../../web/src/swarm/client/generate.ts'

export const C = 8
export const V = 32
export const BLOCKS = 6

function vec (seed: number, n: number): Float32Array {
  return new Rng(seed).uniform(n)
}

/** Block b: y_t = x_t + tanh((Σ_{s≤t} x_s) · w_b / (t + 1)) · u_b, (T, C) → (T, C). */
export class FakeCache implements SpanCache {
  /** Per block in [start, end): running sum of inputs (C). */
  sums: Float32Array[]
  length = 0
  disposed = false
  constructor (readonly capacity: number, readonly start: number, readonly end: number) {
    this.sums = Array.from({ length: end - start }, () => new Float32Array(C))
  }

  dispose (): void { this.disposed = true }
}

export function fakeBlock (b: number, sum: Float32Array, x: Float32Array, t: number): Float32Array {
  const w = vec(1000 + b, C)
  const u = vec(2000 + b, C)
  for (let i = 0; i < C; i++) sum[i] += x[i]
  let dot = 0
  for (let i = 0; i < C; i++) dot += sum[i] * w[i]
  const g = Math.tanh(dot / (t + 1))
  const y = new Float32Array(C)
  for (let i = 0; i < C; i++) y[i] = x[i] + g * u[i]
  return y
}

export class FakeSpanBackend implements SpanBackend {
  readonly hiddenSize = C
  readonly cacheBytesPerToken = 2 * C * 4
  forwardCalls: number[] = []
  /** Makes the next forward fail (device loss). */
  failNext = false
  /** Delay per forward call, ms (so concurrent sessions' steps queue up). */
  delayMs = 0
  /** When set, each forward waits for this promise (a step held as long as a test needs). */
  gate: Promise<void> | undefined
  /** Forwards the server may hand over at once (SpanBackend.pipelineDepth). */
  pipelineDepth = 1

  constructor (readonly model: string, readonly start: number, readonly end: number) {}

  createCache (capacity: number, start: number, end: number): FakeCache {
    return new FakeCache(capacity, start, end)
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    this.forwardCalls.push(steps.length)
    if (this.delayMs > 0) await new Promise(r => setTimeout(r, this.delayMs))
    if (this.gate !== undefined) await this.gate
    if (this.failNext) {
      this.failNext = false
      throw new Error('device lost')
    }
    return steps.map(s => {
      const cache = s.cache as FakeCache
      const out = new Float32Array(s.tokens * C)
      for (let t = 0; t < s.tokens; t++) {
        let x: Float32Array = s.hidden.slice(t * C, (t + 1) * C)
        for (let b = cache.start; b < cache.end; b++) x = fakeBlock(b, cache.sums[b - cache.start], x, cache.length + t)
        out.set(x, t * C)
      }
      cache.length += s.tokens
      return out
    })
  }

  dispose (): void {}
}

/** Embedding table (V, C) and a tied head, with an EOS id no test reaches by accident. */
export const fakeEnds: ClientEnds = {
  eosTokenIds: [],
  async embed (ids) {
    const out = new Float32Array(ids.length * C)
    ids.forEach((id, t) => out.set(vec(id + 1, C), t * C))
    return out
  },
  async logits (h) {
    const out = new Float32Array(V)
    for (let v = 0; v < V; v++) {
      const e = vec(v + 1, C)
      for (let i = 0; i < C; i++) out[v] += h[i] * e[i] * 3
    }
    return out
  }
}

/** Greedy tokens computed in one process, without the swarm: the reference. */
export async function localGreedy (prompt: number[], n: number): Promise<number[]> {
  const be = new FakeSpanBackend('fake', 0, BLOCKS)
  const cache = be.createCache(prompt.length + n, 0, BLOCKS)
  let [h] = await be.forward([{ cache, hidden: await fakeEnds.embed(prompt), tokens: prompt.length }])
  const out: number[] = []
  for (;;) {
    const logits = await fakeEnds.logits(h.subarray(h.length - C))
    let best = 0
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i
    out.push(best)
    if (out.length >= n) return out
    ;[h] = await be.forward([{ cache, hidden: await fakeEnds.embed([best]), tokens: 1 }])
  }
}
