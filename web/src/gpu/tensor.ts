import { checkShape, numel, shapeString, type DType, type TypedArray } from './dtype.ts'
import { SplitTensorError, TensorStateError } from './errors.ts'
import type { Backend } from './backend.ts'

/** Where a tensor's elements live: a typed array (CPU) or a GPU buffer. Shared by reshape views. */
export interface Storage {
  /** CPU backend: the elements. */
  data?: TypedArray
  /** WebGPU backend: the buffer (may be larger than `bytes`, it comes from a pool). */
  buffer?: GPUBuffer
  /**
   * WebGPU backend, tensors larger than one binding (split.ts): consecutive row parts along
   * dim 0, each a tensor with its own buffer and shape (rows_i, ...rest). No `buffer` then.
   */
  parts?: readonly Tensor[]
  /** Meaningful bytes. */
  bytes: number
  /** Live tensors viewing this storage; released at 0. */
  refs: number
  release: () => void
}

/**
 * An n-d array on one backend. Row-major and contiguous; `reshape` makes views.
 * Tensors are released explicitly with `dispose()` or by `tidy()`.
 */
export class Tensor {
  readonly shape: readonly number[]
  readonly dtype: DType
  readonly backend: Backend
  /** Extra layout facts some dtypes need, e.g. `{ block: 32 }` for q8. */
  readonly meta: Readonly<Record<string, number>>
  private _storage: Storage | undefined

  constructor (backend: Backend, shape: readonly number[], dtype: DType, storage: Storage, meta: Record<string, number> = {}) {
    checkShape(shape, 'Tensor')
    this.backend = backend
    this.shape = Object.freeze([...shape])
    this.dtype = dtype
    this.meta = Object.freeze({ ...meta })
    this._storage = storage
    trackInScope(this)
  }

  get numel (): number { return numel(this.shape) }
  get rank (): number { return this.shape.length }
  get disposed (): boolean { return this._storage === undefined }

  /** The storage; throws once disposed (use-after-free is a bug worth a loud error). */
  get storage (): Storage {
    if (this._storage === undefined) throw new TensorStateError(`tensor ${shapeString(this.shape)} ${this.dtype} used after dispose()`)
    return this._storage
  }

  /** CPU elements (throws on a GPU tensor). */
  get data (): TypedArray {
    const d = this.storage.data
    if (d === undefined) throw new TensorStateError('tensor.data on a GPU tensor: use await tensor.read()')
    return d
  }

  /** GPU buffer (throws on a CPU tensor and on a tensor split into row parts). */
  get buffer (): GPUBuffer {
    const s = this.storage
    if (s.parts !== undefined) throw new SplitTensorError('tensor.buffer', `${this.dtype} tensor ${shapeString(this.shape)} is split into ${s.parts.length} row parts (larger than one binding)`)
    if (s.buffer === undefined) throw new TensorStateError('tensor.buffer on a CPU tensor')
    return s.buffer
  }

  /** True when the tensor is stored as row parts along dim 0 (larger than one binding). */
  get split (): boolean { return this.storage.parts !== undefined }

  /**
   * A view with another shape over the same elements. A split tensor keeps its dim 0 (its
   * parts are whole rows), so only the trailing dims may change.
   */
  reshape (shape: readonly number[]): Tensor {
    if (numel(shape) !== this.numel) throw new TensorStateError(`reshape ${shapeString(this.shape)} -> ${shapeString(shape)}: element counts differ`)
    const s = this.storage
    if (s.parts !== undefined) return this.reshapeParts(s.parts, shape)
    s.refs++
    return new Tensor(this.backend, shape, this.dtype, s, { ...this.meta })
  }

  private reshapeParts (parts: readonly Tensor[], shape: readonly number[]): Tensor {
    if (shape.length === 0 || shape[0] !== this.shape[0]) throw new SplitTensorError('reshape', `${shapeString(this.shape)} -> ${shapeString(shape)}: a tensor split into row parts keeps its dim 0`)
    const views = parts.map(p => keep(p.reshape([p.shape[0], ...shape.slice(1)])))
    const storage: Storage = { parts: views, bytes: this.storage.bytes, refs: 1, release: () => { for (const v of views) v.dispose() } }
    return new Tensor(this.backend, shape, this.dtype, storage, { ...this.meta })
  }

  /** Copies the elements to the host. */
  async read (): Promise<TypedArray> {
    return await this.backend.read(this)
  }

  /** Reads an f32 tensor as a Float32Array (throws for other dtypes). */
  async readF32 (): Promise<Float32Array> {
    const d = await this.read()
    if (!(d instanceof Float32Array)) throw new TensorStateError(`readF32 on a ${this.dtype} tensor`)
    return d
  }

  dispose (): void {
    const s = this._storage
    if (s === undefined) return
    this._storage = undefined
    if (--s.refs === 0) s.release()
  }
}

// ---- tidy: dispose every tensor made inside fn except those it returns ----

const scopes: Set<Tensor>[] = []

function trackInScope (t: Tensor): void {
  scopes[scopes.length - 1]?.add(t)
}

type Kept = Tensor | Tensor[] | Record<string, Tensor> | void | undefined | number

function collectKept (out: unknown, keep: Set<Tensor>): void {
  if (out instanceof Tensor) keep.add(out)
  else if (Array.isArray(out)) for (const x of out) collectKept(x, keep)
  else if (out !== null && typeof out === 'object') for (const x of Object.values(out)) collectKept(x, keep)
}

/**
 * Runs fn and disposes the tensors it created, except those reachable from its result
 * (a tensor, array or plain object of tensors). Synchronous only: GPU work is encoded, not awaited.
 */
export function tidy<T extends Kept> (fn: () => T): T {
  const scope = new Set<Tensor>()
  scopes.push(scope)
  let out: T
  try {
    out = fn()
  } finally {
    scopes.pop()
  }
  const keep = new Set<Tensor>()
  collectKept(out, keep)
  for (const t of scope) {
    if (keep.has(t)) scopes[scopes.length - 1]?.add(t)
    else t.dispose()
  }
  return out
}

/** Keeps a tensor alive past the enclosing tidy(). */
export function keep (t: Tensor): Tensor {
  for (const s of scopes) s.delete(t)
  return t
}
