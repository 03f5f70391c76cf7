import { hostTensorData, type Backend } from './backend.ts'
import { acquireDevice, type AcquireOptions, type GpuInfo } from './device.ts'
import { numel, shapeString, type DType, type TypedArray } from './dtype.ts'
import { DeviceError, KernelCompileError, SplitTensorError, TensorStateError, TensorTooLargeError } from './errors.ts'
import { generateHeader, packUniforms, uniformBytes, type KernelDecl, type Variant } from './kernel.ts'
import { BufferPool, sizeClass, UNIFORM_USAGE } from './pool.ts'
import { storageBytes } from './quant-types.ts'
import { loadShaderSources, shaderSource } from './shader-source.ts'
import { readSplit, storeSplit, writeSplit } from './split.ts'
import { Tensor } from './tensor.ts'

/** Dispatches encoded before an automatic submit: bounds command-buffer size and latency. */
const MAX_DISPATCHES_PER_SUBMIT = 512
/**
 * Uploads of at least this many bytes get an exact-size buffer, not a size class (up to 50 %
 * larger): weights are the bulk of a peer's memory and live as long as the model.
 */
const EXACT_UPLOAD_BYTES = 1 << 20

interface CompiledKernel {
  pipeline: GPUComputePipeline
  layout: GPUBindGroupLayout
}

export interface GpuBackendOptions extends AcquireOptions {
  /**
   * Uploads larger than this many bytes are stored as row parts along dim 0 (split.ts). Tests
   * force a small value to exercise split weights; it never rises above the device's limits.
   * @default the device's min(maxStorageBufferBindingSize, maxBufferSize)
   */
  maxBindingBytes?: number
}

export interface GpuStats {
  dispatches: number
  submits: number
  pipelines: number
}

/**
 * The WebGPU backend: pipeline cache, buffer pool, and batching of many dispatches into one
 * compute pass and one submit. Work is encoded synchronously and submitted on `flush()`,
 * on `read()`/`sync()`, or every MAX_DISPATCHES_PER_SUBMIT dispatches.
 */
export class GpuBackend implements Backend {
  readonly kind = 'webgpu' as const
  readonly pool: BufferPool
  readonly stats: GpuStats = { dispatches: 0, submits: 0, pipelines: 0 }
  private readonly pipelines = new Map<string, CompiledKernel>()
  private encoder: GPUCommandEncoder | undefined
  private pass: GPUComputePassEncoder | undefined
  private uniformsInFlight: GPUBuffer[] = []
  private pendingDispatches = 0
  private readonly errors: Error[] = []
  private lost: string | undefined
  /** Bytes one binding may hold: uploads above it are split into row parts (split.ts). */
  readonly splitBytes: number

  private constructor (readonly device: GPUDevice, readonly info: GpuInfo, maxBindingBytes?: number) {
    this.pool = new BufferPool(device)
    const device_ = Math.min(info.limits.maxStorageBufferBindingSize, info.limits.maxBufferSize)
    this.splitBytes = Math.floor(Math.min(device_, maxBindingBytes ?? Infinity) / 4) * 4
    if (!(this.splitBytes >= 4)) throw new TensorStateError(`GpuBackend: maxBindingBytes must be at least 4, got ${String(maxBindingBytes)}`)
    void device.lost.then(l => { this.lost = `device lost (${l.reason}): ${l.message}` })
  }

  /** Acquires an adapter and device (browser or Node) and loads the bundled shaders. */
  static async create (opts: GpuBackendOptions = {}): Promise<GpuBackend> {
    const { device, info } = await acquireDevice(opts)
    await loadShaderSources()
    return new GpuBackend(device, info, opts.maxBindingBytes)
  }

  // ---- tensors ----

  private alloc (shape: readonly number[], dtype: DType, bytes: number, meta: Record<string, number> = {}, exact = false): Tensor {
    const max = this.info.limits.maxBufferSize
    if (bytes > max) throw new TensorTooLargeError(`${dtype} tensor ${shapeString(shape)}: ${bytes} bytes exceed the device's maxBufferSize (${max}); only uploaded tensors are split into row parts`)
    const buffer = this.pool.acquire(bytes, undefined, exact || sizeClass(bytes) > max)
    const storage = { buffer, bytes, refs: 1, release: () => this.pool.release(buffer) }
    return new Tensor(this, shape, dtype, storage, meta)
  }

  /** Uninitialised (pooled) memory the next op overwrites. `bytes` defaults to the stored size (storageBytes). */
  empty (shape: readonly number[], dtype: DType = 'f32', bytes?: number, meta?: Record<string, number>): Tensor {
    return this.alloc(shape, dtype, bytes ?? (dtype === 'q8' ? numel(shape) : storageBytes(dtype, shape)), meta)
  }

  zeros (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const t = this.empty(shape, dtype)
    this.copyEncoder().clearBuffer(t.buffer)
    return t
  }

  tensor (data: TypedArray | number[], shape: readonly number[], dtype: DType = 'f32', meta?: Record<string, number>): Tensor {
    const typed = hostTensorData(data, shape, dtype, false) // GGUF blocks: the file's bytes, padded to 4 on upload
    if (typed.byteLength > this.splitBytes) return storeSplit(this, typed, shape, dtype, this.splitBytes, meta)
    return this.storeWhole(typed, shape, dtype, meta)
  }

  /** Uploads data that fits one binding into one exact-size buffer (split.ts stores each part with it). */
  storeWhole (data: TypedArray, shape: readonly number[], dtype: DType, meta?: Record<string, number>): Tensor {
    const t = this.alloc(shape, dtype, data.byteLength, meta, data.byteLength >= EXACT_UPLOAD_BYTES)
    this.upload(t.buffer, data)
    return t
  }

  write (t: Tensor, data: TypedArray): void {
    if (t.backend !== this) throw new TensorStateError('write: tensor belongs to another backend')
    if (data.byteLength !== t.storage.bytes) throw new TensorStateError(`write: ${data.byteLength} bytes into a ${t.storage.bytes}-byte tensor ${shapeString(t.shape)}`)
    const parts = t.storage.parts
    if (parts !== undefined) { writeSplit(t, parts, data); return }
    this.flush() // queued writes overtake encoded-but-unsubmitted commands
    this.upload(t.buffer, data)
  }

  private upload (buffer: GPUBuffer, data: TypedArray): void {
    if (data.byteLength === 0) return
    if (data.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    } else { // writeBuffer needs a multiple of 4 bytes
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4)
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
      this.device.queue.writeBuffer(buffer, 0, padded)
    }
  }

  async read (t: Tensor): Promise<TypedArray> {
    if (t.backend !== this) throw new TensorStateError('read: tensor belongs to another backend')
    const parts = t.storage.parts
    if (parts !== undefined) return await readSplit(t, parts)
    const bytes = t.storage.bytes
    const size = Math.max(4, Math.ceil(bytes / 4) * 4)
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    this.copyEncoder().copyBufferToBuffer(t.buffer, 0, staging, 0, size)
    this.flush()
    try {
      await staging.mapAsync(GPUMapMode.READ)
      await this.throwPendingErrors()
      const raw = staging.getMappedRange().slice(0, bytes)
      switch (t.dtype) {
        case 'f32': return new Float32Array(raw)
        case 'i32': return new Int32Array(raw)
        case 'u32': return new Uint32Array(raw)
        case 'f16': case 'bf16': return new Uint16Array(raw)
        case 'q8': case 'q8_0': case 'q4_0': case 'q4_k': case 'q5_k': case 'q6_k': return new Uint8Array(raw)
      }
    } finally {
      staging.destroy()
    }
  }

  /** Copies bytes between tensors inside the current batch (offsets and size multiples of 4). */
  copy (src: Tensor, dst: Tensor, srcOffset = 0, dstOffset = 0, bytes = src.storage.bytes): void {
    if (bytes === 0) return
    for (const t of [src, dst]) if (t.split) throw new SplitTensorError('copy', `${t.dtype} tensor ${shapeString(t.shape)} is split into row parts (copy its parts)`)
    if (srcOffset % 4 !== 0 || dstOffset % 4 !== 0 || bytes % 4 !== 0) throw new TensorStateError(`copy: offsets and size must be multiples of 4 (got ${srcOffset}, ${dstOffset}, ${bytes})`)
    if (srcOffset + bytes > src.storage.bytes || dstOffset + bytes > dst.storage.bytes) throw new TensorStateError(`copy: ${bytes} bytes out of range (src ${src.storage.bytes}, dst ${dst.storage.bytes})`)
    this.copyEncoder().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes)
  }

  // ---- kernels ----

  private compile (decl: KernelDecl, variant: Variant): { module: GPUShaderModule, layout: GPUBindGroupLayout, code: string } {
    const code = generateHeader(decl, variant) + shaderSource(decl.shader)
    const module = this.device.createShaderModule({ label: `${decl.name}/${variant.key}`, code })
    const entries: GPUBindGroupLayoutEntry[] = decl.bindings.map((b, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: (b.access ?? 'read') === 'read' ? 'read-only-storage' : 'storage' }
    }))
    if (decl.uniforms.length > 0) entries.push({ binding: decl.bindings.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } })
    return { module, layout: this.device.createBindGroupLayout({ entries }), code }
  }

  private pipeline (decl: KernelDecl, variant: Variant): CompiledKernel {
    const key = `${decl.name}/${variant.key}`
    const hit = this.pipelines.get(key)
    if (hit !== undefined) return hit
    this.device.pushErrorScope('validation')
    const { module, layout } = this.compile(decl, variant)
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: variant.entry ?? decl.entry ?? 'main' }
    })
    void this.device.popErrorScope().then(err => {
      if (err !== null) this.errors.push(new KernelCompileError(`kernel ${key}: ${err.message}`))
    })
    const compiled = { pipeline, layout }
    this.pipelines.set(key, compiled)
    this.stats.pipelines++
    return compiled
  }

  /** Compiles a variant ahead of use without blocking (async pipeline creation). */
  async prepare (decl: KernelDecl, variant: Variant): Promise<void> {
    const key = `${decl.name}/${variant.key}`
    if (this.pipelines.has(key)) return
    const { module, layout } = this.compile(decl, variant)
    try {
      const pipeline = await this.device.createComputePipelineAsync({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: variant.entry ?? decl.entry ?? 'main' }
      })
      if (!this.pipelines.has(key)) { this.pipelines.set(key, { pipeline, layout }); this.stats.pipelines++ }
    } catch (e) {
      const info = await module.getCompilationInfo()
      const msgs = info.messages.map(m => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')
      throw new KernelCompileError(`kernel ${key}: ${(e as Error).message}${msgs !== '' ? ` — ${msgs}` : ''}`)
    }
  }

  /**
   * Encodes one dispatch. `bindings` maps each declared binding name to a tensor;
   * `uniforms` gives each declared uniform; `workgroups` is the dispatch grid.
   */
  run (decl: KernelDecl, variant: Variant, bindings: Readonly<Record<string, Tensor>>, uniforms: Readonly<Record<string, number>>, workgroups: readonly [number, number?, number?]): void {
    const [x, y = 1, z = 1] = workgroups
    if (x === 0 || y === 0 || z === 0) return
    const max = this.info.limits.maxComputeWorkgroupsPerDimension
    if (x > max || y > max || z > max) throw new DeviceError(`kernel ${decl.name}: dispatch (${x}, ${y}, ${z}) exceeds ${max} workgroups per dimension`)
    const { pipeline, layout } = this.pipeline(decl, variant)
    const entries: GPUBindGroupEntry[] = decl.bindings.map((b, i) => {
      const t = bindings[b.name]
      if (t === undefined) throw new TensorStateError(`kernel ${decl.name}: binding '${b.name}' not given`)
      if (t.backend !== this) throw new TensorStateError(`kernel ${decl.name}: binding '${b.name}' is not a WebGPU tensor`)
      if (t.split) throw new SplitTensorError(`kernel ${decl.name}`, `binding '${b.name}' (${t.dtype} ${shapeString(t.shape)}) is split into row parts (larger than one binding); only linear, embedding and expertFFN take split tensors`)
      return { binding: i, resource: { buffer: t.buffer } }
    })
    if (decl.uniforms.length > 0) {
      const ub = this.pool.acquire(uniformBytes(decl), UNIFORM_USAGE)
      this.device.queue.writeBuffer(ub, 0, packUniforms(decl, uniforms))
      this.uniformsInFlight.push(ub)
      entries.push({ binding: decl.bindings.length, resource: { buffer: ub } })
    }
    const group = this.device.createBindGroup({ layout, entries })
    const pass = this.computePass()
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, group)
    pass.dispatchWorkgroups(x, y, z)
    this.stats.dispatches++
    if (++this.pendingDispatches >= MAX_DISPATCHES_PER_SUBMIT) this.flush()
  }

  /** Splits n workgroups over x and y when n exceeds the per-dimension limit. */
  grid1d (workgroups: number): [number, number] {
    const max = this.info.limits.maxComputeWorkgroupsPerDimension
    if (workgroups <= max) return [workgroups, 1]
    const y = Math.ceil(workgroups / max)
    return [Math.ceil(workgroups / y), y]
  }

  // ---- batching ----

  private computePass (): GPUComputePassEncoder {
    if (this.pass !== undefined) return this.pass
    this.encoder ??= this.device.createCommandEncoder()
    this.pass = this.encoder.beginComputePass()
    return this.pass
  }

  private copyEncoder (): GPUCommandEncoder {
    if (this.pass !== undefined) { this.pass.end(); this.pass = undefined }
    this.encoder ??= this.device.createCommandEncoder()
    return this.encoder
  }

  /** Submits everything encoded so far. */
  flush (): void {
    if (this.lost !== undefined) throw new DeviceError(this.lost)
    if (this.encoder === undefined) { this.pool.recycle(); return } // nothing encoded reads them
    if (this.pass !== undefined) { this.pass.end(); this.pass = undefined }
    this.device.pushErrorScope('out-of-memory')
    this.device.pushErrorScope('validation')
    this.device.queue.submit([this.encoder.finish()])
    for (const s of ['validation', 'out-of-memory']) {
      void this.device.popErrorScope().then(err => { if (err !== null) this.errors.push(new DeviceError(`${s} error: ${err.message}`)) })
    }
    this.encoder = undefined
    this.pendingDispatches = 0
    this.stats.submits++
    for (const u of this.uniformsInFlight) this.pool.release(u)
    this.uniformsInFlight = []
    this.pool.recycle()
  }

  private async throwPendingErrors (): Promise<void> {
    if (this.lost !== undefined) throw new DeviceError(this.lost)
    const e = this.errors.shift()
    if (e !== undefined) { this.errors.length = 0; throw e }
  }

  async sync (): Promise<void> {
    this.flush()
    await this.device.queue.onSubmittedWorkDone()
    await this.throwPendingErrors()
  }

  destroy (): void {
    this.flush()
    this.pool.trim()
    this.device.destroy()
  }
}

