/**
 * A span backend that wraps another and forwards everything to it: the base for wrappers that
 * change one thing about a span (when its forward finishes, what it answers) and must otherwise
 * look exactly like the span they wrap to a block server.
 */
import type { SpanBackend, SpanCache, SpanStep } from './backend.ts'

export class SpanWrapper implements SpanBackend {
  constructor (readonly inner: SpanBackend) {}
  get model (): string { return this.inner.model }
  get start (): number { return this.inner.start }
  get end (): number { return this.inner.end }
  get hiddenSize (): number { return this.inner.hiddenSize }
  get cacheBytesPerToken (): number { return this.inner.cacheBytesPerToken }
  get pipelineDepth (): number | undefined { return this.inner.pipelineDepth }
  get lane (): ((cache: SpanCache) => number) | undefined { return this.inner.lane?.bind(this.inner) }

  createCache (capacity: number, start: number, end: number): SpanCache {
    return this.inner.createCache(capacity, start, end)
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    return await this.inner.forward(steps)
  }

  dispose (): void {
    this.inner.dispose()
  }
}
