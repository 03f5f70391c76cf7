/**
 * Reuses GPU buffers by size class. Released buffers wait in `pending` until the next
 * submit: a queue.writeBuffer into a reused buffer must not overtake commands still
 * being encoded that read its old contents.
 */
// Numeric flags (spec values): module-level code may run before Node's WebGPU globals exist.
/** STORAGE | COPY_SRC | COPY_DST */
const STORAGE_USAGE = 0x80 | 0x04 | 0x08
/** UNIFORM | COPY_DST */
export const UNIFORM_USAGE = 0x40 | 0x08

/** Smallest buffer handed out, in bytes: bindings of size 0 are invalid. */
const MIN_BYTES = 16

/** Rounds up to a size class: powers of two and 1.5× powers of two (< 50 % waste). */
export function sizeClass (bytes: number): number {
  const b = Math.max(MIN_BYTES, Math.ceil(bytes / 4) * 4)
  const p = 2 ** Math.ceil(Math.log2(b))
  return (p * 3) / 4 >= b ? (p * 3) / 4 : p
}

/** Exact size of a buffer for `bytes` (weights: no size-class waste, never above the device limit). */
function exactSize (bytes: number): number {
  return Math.max(MIN_BYTES, Math.ceil(bytes / 4) * 4)
}

export interface PoolStats {
  /** Bytes in buffers handed out and not yet released. */
  inUseBytes: number
  /** Highest inUseBytes since start (or since the last resetPeak()). */
  peakInUseBytes: number
  /** Bytes in buffers waiting for reuse. */
  freeBytes: number
  /** Buffers created since start. */
  created: number
  /** acquire() calls served from the free lists. */
  reused: number
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>()
  private pending: Array<[string, GPUBuffer]> = []
  /** Exact-size buffers: destroyed once released, never pooled (their sizes rarely recur). */
  private readonly exact = new WeakSet<GPUBuffer>()
  readonly stats: PoolStats = { inUseBytes: 0, peakInUseBytes: 0, freeBytes: 0, created: 0, reused: 0 }

  constructor (private readonly device: GPUDevice) {}

  /**
   * A buffer of at least `bytes`: a size class (reuse across shapes), or with `exact` a new
   * buffer of the bytes rounded to 4 (uploaded weights: they live long, and a class could pass
   * the device limit), destroyed when released: pooling every size would hold memory forever.
   */
  acquire (bytes: number, usage: number = STORAGE_USAGE, exact = false): GPUBuffer {
    const size = exact ? exactSize(bytes) : sizeClass(bytes)
    this.stats.inUseBytes += size
    this.stats.peakInUseBytes = Math.max(this.stats.peakInUseBytes, this.stats.inUseBytes)
    if (exact) {
      this.stats.created++
      const b = this.device.createBuffer({ size, usage })
      this.exact.add(b)
      return b
    }
    const key = `${usage}:${size}`
    const list = this.free.get(key)
    const reused = list?.pop()
    if (reused !== undefined) {
      this.stats.reused++
      this.stats.freeBytes -= size
      return reused
    }
    this.stats.created++
    return this.device.createBuffer({ size, usage })
  }

  release (buffer: GPUBuffer): void {
    this.stats.inUseBytes -= buffer.size
    this.pending.push([`${buffer.usage}:${buffer.size}`, buffer])
  }

  /**
   * Called after each submit: released buffers become reusable; exact-size ones are destroyed
   * (WebGPU keeps a destroyed buffer's memory until the submitted work using it has finished).
   */
  recycle (): void {
    for (const [key, buf] of this.pending) {
      if (this.exact.has(buf)) { buf.destroy(); continue }
      let list = this.free.get(key)
      if (list === undefined) this.free.set(key, (list = []))
      list.push(buf)
      this.stats.freeBytes += buf.size
    }
    this.pending = []
  }

  /** Starts a new peak measurement from the bytes in use now. */
  resetPeak (): void {
    this.stats.peakInUseBytes = this.stats.inUseBytes
  }

  /** Destroys every free buffer (e.g. after a model is unloaded). */
  trim (): void {
    for (const list of this.free.values()) for (const b of list) b.destroy()
    this.free.clear()
    this.stats.freeBytes = 0
  }
}
