/**
 * Servers that lie, for the verification tests: a span backend wrapper that computes honestly
 * (so its caches stay right and a lie cannot be told from its timing) and then alters some
 * outputs the way an attacker or a broken peer would.
 */
import type { ClientEnds } from '../../web/src/swarm/client/generate.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../../web/src/swarm/server/backend.ts'
import { SpanWrapper } from '../../web/src/swarm/server/span-wrapper.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { BLOCKS, C, fakeEnds, FakeCache, FakeSpanBackend, V } from './fakes.ts'

/**
 * fakes.ts's head repeats the last token whatever the hidden state, so equal tokens would prove
 * little: this head hashes the state (sin of a large multiple of each logit), so any change in a
 * final row changes the tokens, while honest fake servers agree bit for bit.
 */
export const hashedEnds: ClientEnds = {
  eosTokenIds: [],
  embed: fakeEnds.embed,
  async logits (h) {
    const base = await fakeEnds.logits(h)
    return base.map(v => Math.sin(v * 997))
  }
}

/** Greedy tokens in one process without the swarm, with hashedEnds: the honest reference. */
export async function hashedGreedy (prompt: number[], n: number): Promise<number[]> {
  const be = new FakeSpanBackend('fake', 0, BLOCKS)
  const cache = be.createCache(prompt.length + n, 0, BLOCKS)
  let [h] = await be.forward([{ cache, hidden: await hashedEnds.embed(prompt), tokens: prompt.length }])
  const out: number[] = []
  for (;;) {
    const logits = await hashedEnds.logits(h.subarray(h.length - C))
    let best = 0
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i
    out.push(best)
    if (out.length >= n) return out
    ;[h] = await be.forward([{ cache, hidden: await hashedEnds.embed([best]), tokens: 1 }])
  }
}

/** Fake blocks of another model: block b computes with block b + 100's weights. */
export class OtherFakeModel extends FakeSpanBackend {
  override createCache (capacity: number, start: number, end: number): FakeCache {
    return super.createCache(capacity, start + 100, end + 100)
  }
}

export type LieKind = 'scale' | 'small-scale' | 'noise' | 'zeros' | 'replay' | 'model'

/** Which forward calls lie: all, each with probability `p` (seeded), from the `after`-th on, before the `until`-th. */
export interface LieWhen { p?: number, after?: number, until?: number, seed?: number }

/** Wraps `inner`; lies on the steps `when` picks, the way `kind` says. */
export class LyingBackend extends SpanWrapper {
  /** Forward calls that lied. */
  lies = 0
  private calls = 0
  private readonly rng: Rng
  /** Last honest output per row count, from any session: what a `replay` liar answers with. */
  private readonly seen = new Map<number, Float32Array>()

  constructor (inner: SpanBackend, readonly kind: LieKind, readonly when: LieWhen = {}, private readonly other?: SpanBackend) {
    super(inner)
    this.rng = new Rng(when.seed ?? 7)
  }

  override createCache (capacity: number, start: number, end: number): SpanCache {
    const c = this.inner.createCache(capacity, start, end)
    // A different model computes along on caches of its own.
    if (this.other !== undefined) otherCaches.set(c, this.other.createCache(capacity, start, end))
    return c
  }

  override async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    const outs = await this.inner.forward(steps)
    const others = this.other === undefined ? undefined : await this.other.forward(steps.map(s => ({ ...s, cache: otherCaches.get(s.cache)! })))
    return outs.map((y, i) => {
      const call = this.calls++
      const lie = (this.when.after === undefined || call >= this.when.after) && (this.when.until === undefined || call < this.when.until) && (this.when.p === undefined || this.rng.next() < this.when.p)
      const prev = this.seen.get(y.length)
      this.seen.set(y.length, y.slice())
      if (!lie) return y
      const out = this.alter(y, prev, others?.[i])
      if (out !== y) this.lies++
      return out
    })
  }

  private alter (y: Float32Array, prev: Float32Array | undefined, other: Float32Array | undefined): Float32Array {
    switch (this.kind) {
      case 'scale': return y.map(v => v * 1.5)
      case 'small-scale': return y.map(v => v * 1.03)
      case 'noise': {
        const rms = Math.sqrt(y.reduce((a, v) => a + v * v, 0) / y.length)
        return y.map(v => v + 0.05 * rms * this.rng.normal())
      }
      case 'zeros': return new Float32Array(y.length)
      // Another step's output (another session's, or an earlier one): the right shape, the wrong numbers.
      case 'replay': return prev ?? y
      case 'model': return other!
    }
  }
}

const otherCaches = new WeakMap<SpanCache, SpanCache>()
