import { CorruptWeightsError, MissingTensorError, TensorShapeMismatchError, WeightsSourceError } from './errors.ts'
import type { WeightDType } from '../gpu/dtype.ts'
import type { ParamSpec } from './params.ts'
import { decodeToF32, headerLength, parseHeader, type StHeader, type StTensorInfo } from './safetensors.ts'
import { readJson, type ModelSource } from './source.ts'

const SINGLE_FILE = 'model.safetensors'
const INDEX_FILE = 'model.safetensors.index.json'

/** Adjacent tensors closer than this are fetched in one read (fewer HTTP requests). */
const COALESCE_GAP_BYTES = 64 * 1024
/** One read never exceeds this (bounds memory per request). */
const MAX_READ_BYTES = 64 * 1024 * 1024

export interface LoadProgress {
  bytesLoaded: number
  bytesTotal: number
  tensorsLoaded: number
  tensorsTotal: number
}

export type ProgressFn = (p: LoadProgress) => void

/** A parameter on the host, ready to upload: f32 values, or a weight's bytes in its dtype. */
export interface HostParam {
  shape: number[]
  dtype: WeightDType
  /** Float32Array when dtype is f32; otherwise the raw bytes (GGUF blocks, f16/bf16 words). */
  data: Float32Array | Uint8Array
}

/** Host-side f32 parameters by in-memory name (see params.ts), ready to upload. */
export type HostWeights = Map<string, { shape: number[], data: Float32Array }>

/**
 * An opened checkpoint: which file holds each tensor, and each file's header (read lazily,
 * 8 bytes + the JSON header per file, never the data).
 */
export class WeightIndex {
  private readonly headers = new Map<string, Promise<StHeader>>()

  private constructor (readonly source: ModelSource, readonly fileOf: ReadonlyMap<string, string> | undefined) {}

  /** Reads model.safetensors.index.json when present, else expects model.safetensors. */
  static async open (source: ModelSource): Promise<WeightIndex> {
    const idx = await readJson(source, INDEX_FILE)
    if (idx !== undefined) {
      const map = (idx as { weight_map?: unknown }).weight_map
      if (map === null || typeof map !== 'object') throw new CorruptWeightsError(`${source.label}/${INDEX_FILE}: no weight_map object`)
      const fileOf = new Map<string, string>()
      for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new CorruptWeightsError(`${source.label}/${INDEX_FILE}: weight_map['${k}'] is not a file name`)
        fileOf.set(k, v)
      }
      return new WeightIndex(source, fileOf)
    }
    if (await source.size(SINGLE_FILE) === undefined) throw new WeightsSourceError(`${source.label}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found`)
    return new WeightIndex(source, undefined)
  }

  header (file: string): Promise<StHeader> {
    let h = this.headers.get(file)
    if (h === undefined) {
      h = (async () => {
        const size = await this.source.size(file)
        if (size === undefined) throw new WeightsSourceError(`${this.source.label}/${file}: file not found`)
        const n = headerLength(await this.source.read(file, 0, Math.min(8, size)), file, size)
        return parseHeader(await this.source.read(file, 8, n), file, size)
      })()
      this.headers.set(file, h)
    }
    return h
  }

  /** Where a tensor lives, or throws MissingTensorError naming it. */
  async locate (name: string): Promise<{ file: string, info: StTensorInfo }> {
    const file = this.fileOf === undefined ? SINGLE_FILE : this.fileOf.get(name)
    if (file === undefined) throw new MissingTensorError(name, `not in ${INDEX_FILE} of ${this.source.label}`)
    const info = (await this.header(file)).tensors.get(name)
    if (info === undefined) throw new MissingTensorError(name, `not in ${this.source.label}/${file}`)
    return { file, info }
  }

  /** Every tensor name the checkpoint declares. */
  async names (): Promise<string[]> {
    if (this.fileOf !== undefined) return [...this.fileOf.keys()]
    return [...(await this.header(SINGLE_FILE)).tensors.keys()]
  }
}

interface Want { spec: ParamSpec, part: number, file: string, info: StTensorInfo }

/**
 * Loads the given parameters (HF tensors, stacking per-expert tensors), upcast to f32 on the
 * host. Only the byte ranges of these tensors are read; nearby ranges are coalesced.
 */
export async function loadHostWeights (index: WeightIndex, specs: readonly ParamSpec[], onProgress?: ProgressFn): Promise<HostWeights> {
  const wants: Want[] = []
  for (const spec of specs) {
    for (let p = 0; p < spec.hfNames.length; p++) {
      const { file, info } = await index.locate(spec.hfNames[p])
      if (info.shape.length !== spec.hfShape.length || info.shape.some((d, i) => d !== spec.hfShape[i])) {
        throw new TensorShapeMismatchError(spec.hfNames[p], spec.hfShape, info.shape)
      }
      wants.push({ spec, part: p, file, info })
    }
  }
  const out: HostWeights = new Map()
  for (const spec of specs) out.set(spec.name, { shape: spec.shape, data: new Float32Array(spec.shape.reduce((a, b) => a * b, 1)) })
  const progress: LoadProgress = { bytesLoaded: 0, bytesTotal: wants.reduce((a, w) => a + w.info.end - w.info.begin, 0), tensorsLoaded: 0, tensorsTotal: wants.length }
  onProgress?.({ ...progress })

  // Group by file, sort by offset, coalesce into reads.
  const byFile = new Map<string, Want[]>()
  for (const w of wants) byFile.set(w.file, [...(byFile.get(w.file) ?? []), w])
  for (const [file, ws] of byFile) {
    ws.sort((a, b) => a.info.begin - b.info.begin)
    let i = 0
    while (i < ws.length) {
      let j = i + 1
      let end = ws[i].info.end
      while (j < ws.length && ws[j].info.begin - end <= COALESCE_GAP_BYTES && ws[j].info.end - ws[i].info.begin <= MAX_READ_BYTES) {
        end = Math.max(end, ws[j].info.end)
        j++
      }
      const start = ws[i].info.begin
      const bytes = await index.source.read(file, start, end - start)
      if (bytes.byteLength !== end - start) throw new CorruptWeightsError(`${file}: short read for tensor '${ws[i].info.name}'`)
      for (let k = i; k < j; k++) {
        const w = ws[k]
        const f32 = decodeToF32(bytes.subarray(w.info.begin - start, w.info.end - start), w.info.dtype)
        out.get(w.spec.name)?.data.set(f32, w.part * f32.length)
        progress.bytesLoaded += w.info.end - w.info.begin
        progress.tensorsLoaded++
      }
      onProgress?.({ ...progress })
      i = j
    }
  }
  return out
}

/**
 * Loads parameters for inference, keeping 2-D F16/BF16 weights in 16 bits (their file bytes;
 * stacked experts concatenated); norms, biases, the MoE router and F32 tensors arrive as f32.
 * `each` receives every parameter once all of its tensors are in.
 */
export async function loadHostParams (index: WeightIndex, specs: readonly ParamSpec[], each: (name: string, p: HostParam) => void, onProgress?: ProgressFn): Promise<void> {
  const wide: ParamSpec[] = []
  const narrow: Array<{ spec: ParamSpec, dtype: 'f16' | 'bf16' }> = []
  for (const spec of specs) {
    const first = (await index.locate(spec.hfNames[0])).info
    const small = spec.shape.length === 1 || spec.name.endsWith('block_sparse_moe.gate.weight')
    if (small || first.dtype === 'F32') wide.push(spec)
    else narrow.push({ spec, dtype: first.dtype === 'F16' ? 'f16' : 'bf16' })
  }
  const host = await loadHostWeights(index, wide, onProgress)
  checkFinite(host)
  for (const [name, w] of host) each(name, { shape: w.shape, dtype: 'f32', data: w.data })
  for (const { spec, dtype } of narrow) {
    const want = dtype === 'f16' ? 'F16' : 'BF16'
    const parts: Uint8Array[] = []
    for (const hf of spec.hfNames) {
      const { file, info } = await index.locate(hf)
      if (info.dtype !== want) throw new CorruptWeightsError(`tensor '${hf}' is ${info.dtype} but '${spec.hfNames[0]}' of the same parameter is ${want}`)
      if (info.shape.length !== spec.hfShape.length || info.shape.some((d, i) => d !== spec.hfShape[i])) throw new TensorShapeMismatchError(hf, spec.hfShape, info.shape)
      parts.push(await index.source.read(file, info.begin, info.end - info.begin))
    }
    const data = parts.length === 1 ? parts[0] : new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0))
    if (parts.length > 1) parts.reduce((at, p) => { data.set(p, at); return at + p.byteLength }, 0)
    each(spec.name, { shape: spec.shape, dtype, data })
  }
}

/** Splits in-memory parameters (stacked experts) back into HF-named tensors. */
export function toHfTensors (specs: readonly ParamSpec[], values: ReadonlyMap<string, Float32Array>): Array<{ name: string, shape: number[], data: Float32Array }> {
  const out: Array<{ name: string, shape: number[], data: Float32Array }> = []
  for (const s of specs) {
    const v = values.get(s.name)
    if (v === undefined) throw new MissingTensorError(s.name, 'not among the values to write')
    const each = s.hfShape.reduce((a, b) => a * b, 1)
    s.hfNames.forEach((n, p) => out.push({ name: n, shape: s.hfShape, data: v.slice(p * each, (p + 1) * each) }))
  }
  return out
}

/** Loads config.json from a source. */
export async function readConfigJson (source: ModelSource): Promise<unknown> {
  const cfg = await readJson(source, 'config.json')
  if (cfg === undefined) throw new WeightsSourceError(`${source.label}: config.json not found`)
  return cfg
}

/** Sanity check used by loaders: every weight is finite (a NaN checkpoint fails loudly, naming the tensor). */
export function checkFinite (w: HostWeights): void {
  for (const [name, { data }] of w) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new CorruptWeightsError(`tensor '${name}': non-finite value ${data[i]} at element ${i}`)
    }
  }
}
