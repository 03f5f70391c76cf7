/**
 * One span served by several copies of it (each on its own thread: `npm start`'s embedded peer,
 * cli/span-thread.ts): each session's KV cache lives in one copy, chosen when the cache is made
 * (the copy holding fewest), and a batch's steps go to their caches' copies, which run at once.
 *
 * Why: with the API's per-token work off the relay's thread (its client shares the embedded
 * peer's libp2p node, cli/api.ts), the one span thread became the floor at 8 streams — busy while
 * the relay's thread idled (BENCHMARKS.md § API). Two copies put both groups of sessions on
 * cores at once, where there are cores for them (≥ 3: cli/api.ts). Results do not change: every step of a session runs in the same copy, and a
 * batched forward's rows equal their unbatched runs whatever else shares the batch
 * (batched-span.ts), so greedy tokens equal a single copy's (test/swarm/spread-span.test.ts).
 * The cost is memory: each copy holds the span's weights.
 */
import { SwarmArgumentError } from '../errors.ts'
import type { SpanBackend, SpanCache, SpanStep } from './backend.ts'

/** A cache of one copy, with the copy it lives in. */
class SpreadCache implements SpanCache {
  private disposed = false

  constructor (readonly inner: SpanCache, readonly part: number, private readonly onDispose: () => void) {}

  get length (): number { return this.inner.length }
  get capacity (): number { return this.inner.capacity }
  get start (): number { return this.inner.start }
  get end (): number { return this.inner.end }

  dispose (): void {
    if (this.disposed) return
    this.disposed = true
    this.inner.dispose()
    this.onDispose()
  }
}

export class SpreadSpanBackend implements SpanBackend {
  readonly model: string
  readonly start: number
  readonly end: number
  readonly hiddenSize: number
  readonly cacheBytesPerToken: number
  /** Each copy takes its own depth of forwards queued. */
  readonly pipelineDepth: number
  /** Live caches per copy. */
  readonly caches: number[]

  /** @param parts copies of one span (same model, blocks, sizes); this backend owns them. */
  constructor (private readonly parts: readonly SpanBackend[]) {
    const first = parts[0]
    if (first === undefined) throw new SwarmArgumentError('a spread span needs at least one copy')
    for (const p of parts) {
      if (p.model !== first.model || p.start !== first.start || p.end !== first.end || p.hiddenSize !== first.hiddenSize || p.cacheBytesPerToken !== first.cacheBytesPerToken) {
        throw new SwarmArgumentError(`the copies of a spread span differ: ${p.model} [${p.start}, ${p.end}) C ${p.hiddenSize} vs ${first.model} [${first.start}, ${first.end}) C ${first.hiddenSize}`)
      }
    }
    this.model = first.model
    this.start = first.start
    this.end = first.end
    this.hiddenSize = first.hiddenSize
    this.cacheBytesPerToken = first.cacheBytesPerToken
    this.pipelineDepth = parts.reduce((a, p) => a + (p.pipelineDepth ?? 1), 0)
    this.caches = parts.map(() => 0)
  }

  readonly lane = (cache: SpanCache): number => cache instanceof SpreadCache ? cache.part : 0

  createCache (capacity: number, start: number, end: number): SpanCache {
    let part = 0
    for (let i = 1; i < this.parts.length; i++) if (this.caches[i] < this.caches[part]) part = i
    const inner = this.parts[part].createCache(capacity, start, end)
    this.caches[part]++
    return new SpreadCache(inner, part, () => { this.caches[part]-- })
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    // Each copy's steps, in the batch's order, with their places in it.
    const byPart = this.parts.map(() => ({ steps: [] as SpanStep[], at: [] as number[] }))
    steps.forEach((s, i) => {
      if (!(s.cache instanceof SpreadCache)) throw new SwarmArgumentError('a step\'s cache was not made by this spread span')
      const g = byPart[s.cache.part]
      g.steps.push({ cache: s.cache.inner, hidden: s.hidden, tokens: s.tokens })
      g.at.push(i)
    })
    const outs = new Array<Float32Array>(steps.length)
    // Every copy's forward settles before this one does: none is left running unobserved.
    const settled = await Promise.allSettled(byPart.map(async (g, p) => {
      if (g.steps.length === 0) return
      const got = await this.parts[p].forward(g.steps)
      got.forEach((o, j) => { outs[g.at[j]] = o })
    }))
    for (const r of settled) if (r.status === 'rejected') throw r.reason
    return outs
  }

  dispose (): void {
    for (const p of this.parts) p.dispose()
  }
}
