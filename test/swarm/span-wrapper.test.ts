import { describe, expect, it } from 'vitest'
import type { SpanCache } from '../../web/src/swarm/server/backend.ts'
import { SpanWrapper } from '../../web/src/swarm/server/span-wrapper.ts'
import { FakeSpanBackend } from './fakes.ts'

describe('SpanWrapper', () => {
  it('looks to a block server exactly like the span it wraps', async () => {
    const inner = new FakeSpanBackend('fake', 1, 3)
    inner.pipelineDepth = 2
    const lanes = new WeakMap<SpanCache, number>()
    // A lane function that reads its own object: the wrapper must call it on the inner span.
    Object.assign(inner, { laneOf: lanes, lane (this: { laneOf: WeakMap<SpanCache, number> }, c: SpanCache) { return this.laneOf.get(c) ?? -1 } })
    const w = new SpanWrapper(inner)
    expect([w.model, w.start, w.end, w.hiddenSize, w.cacheBytesPerToken, w.pipelineDepth]).toEqual([inner.model, 1, 3, inner.hiddenSize, inner.cacheBytesPerToken, 2])
    const cache = w.createCache(4, 1, 3)
    lanes.set(cache, 1)
    expect(w.lane?.(cache)).toBe(1)
    const hidden = new Float32Array(inner.hiddenSize).fill(0.5)
    const viaWrapper = await w.forward([{ cache, hidden, tokens: 1 }])
    const direct = await inner.forward([{ cache: inner.createCache(4, 1, 3), hidden, tokens: 1 }])
    expect(viaWrapper).toEqual(direct)
    expect(cache.length).toBe(1)
  })

  it('has no lane where the inner span has none', () => {
    expect(new SpanWrapper(new FakeSpanBackend('fake', 0, 2)).lane).toBeUndefined()
  })
})
