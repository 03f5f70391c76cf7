import { dequantize } from '../../gpu/cpu/dequant.ts'
import type { WeightDType } from '../../gpu/dtype.ts'
import { dtypeFromGgml } from '../../gpu/quant-types.ts'
import type { ModelConfig } from '../config.ts'
import { CorruptWeightsError, MissingTensorError, TensorShapeMismatchError, WeightsSourceError } from '../errors.ts'
import type { ParamSpec } from '../params.ts'
import type { ModelSource } from '../source.ts'
import type { HostParam, LoadProgress, ProgressFn } from '../weights.ts'
import { ROPE_FREQS, ggufConfig, qkPermuted } from './config.ts'
import { GgufMetadataError } from './errors.ts'
import { GGML, ggmlTypeName } from './ggml-types.ts'
import { ggufNameOf } from './names.ts'
import { readGgufHeader, readGgufTensor, type GgufHeader, type GgufTensorInfo } from './read.ts'

/**
 * Loading parameters from one GGUF file: only the byte ranges of the tensors asked for (a
 * block server reads its blocks, a client the embedding and head), nearby ranges coalesced.
 * Weights keep their file encoding (`keepDtypes`), or are widened to f32 on the host (the
 * reference path of the tests, and training). Norm weights, biases and the MoE router are
 * always f32: they are tiny and the ops that read them take f32.
 */

/** Adjacent tensors closer than this are fetched in one read (fewer HTTP requests). */
const COALESCE_GAP_BYTES = 64 * 1024
/** One read never exceeds this (bounds host memory: each read is uploaded before the next). */
const MAX_READ_BYTES = 64 * 1024 * 1024

export interface GgufLoadOptions {
  /** Keep weights in their file dtype; false widens every tensor to f32 on the host. @default true */
  keepDtypes?: boolean
  onProgress?: ProgressFn
}

/** An opened GGUF model file: its header and configuration (read once, header bytes only). */
export class GgufModelFile {
  readonly config: ModelConfig
  private readonly permuted: boolean

  private constructor (readonly source: ModelSource, readonly file: string, readonly header: GgufHeader, ropeFreqFactors?: number[]) {
    this.config = ggufConfig(header, ropeFreqFactors)
    this.permuted = qkPermuted(header)
  }

  /** Reads the header (and the few bytes of `rope_freqs.weight` when present). */
  static async open (source: ModelSource, file: string): Promise<GgufModelFile> {
    const header = await readGgufHeader(source, file)
    const freqs = header.tensors.get(ROPE_FREQS)
    let factors: number[] | undefined
    if (freqs !== undefined) {
      if (freqs.type !== GGML.F32) throw new GgufMetadataError(ROPE_FREQS, `tensor must be F32, got ${ggmlTypeName(freqs.type)}`)
      factors = Array.from(new Float32Array((await readGgufTensor(source, file, freqs)).slice().buffer))
    }
    return new GgufModelFile(source, file, header, factors)
  }

  /** The GGUF tensor of a parameter, its shape checked; throws naming what is missing or wrong. */
  locate (spec: ParamSpec): GgufTensorInfo {
    const name = ggufNameOf(spec.name)
    const info = this.header.tensors.get(name)
    if (info === undefined) throw new MissingTensorError(name, `not in ${this.source.label}/${this.file}`)
    if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) throw new TensorShapeMismatchError(name, spec.shape, info.shape)
    return info
  }

  /**
   * Reads the given parameters; `each` receives every one as soon as its bytes are in (upload
   * it there, so at most one read's worth of weights is on the host at a time).
   */
  async load (specs: readonly ParamSpec[], each: (name: string, p: HostParam) => void, opts: GgufLoadOptions = {}): Promise<void> {
    const keep = opts.keepDtypes ?? true
    const wants = specs.map(spec => {
      const info = this.locate(spec)
      return { spec, info, dtype: dtypeFromGgml(info.type, info.name) }
    })
    const progress: LoadProgress = { bytesLoaded: 0, bytesTotal: wants.reduce((a, w) => a + w.info.bytes, 0), tensorsLoaded: 0, tensorsTotal: wants.length }
    opts.onProgress?.({ ...progress })
    wants.sort((a, b) => a.info.offset - b.info.offset)
    let i = 0
    while (i < wants.length) {
      let j = i + 1
      let end = wants[i].info.offset + wants[i].info.bytes
      while (j < wants.length && wants[j].info.offset - end <= COALESCE_GAP_BYTES && wants[j].info.offset + wants[j].info.bytes - wants[i].info.offset <= MAX_READ_BYTES) {
        end = Math.max(end, wants[j].info.offset + wants[j].info.bytes)
        j++
      }
      const start = wants[i].info.offset
      const bytes = await this.source.read(this.file, start, end - start)
      if (bytes.byteLength !== end - start) throw new CorruptWeightsError(`${this.source.label}/${this.file}: short read at tensor '${wants[i].info.name}'`)
      for (let k = i; k < j; k++) {
        const { spec, info, dtype } = wants[k]
        let raw = bytes.subarray(info.offset - start, info.offset - start + info.bytes)
        if (this.permuted) raw = this.unpermute(spec, raw)
        each(spec.name, this.hostParam(spec, info, dtype, raw, keep))
        progress.bytesLoaded += info.bytes
        progress.tensorsLoaded++
      }
      opts.onProgress?.({ ...progress })
      i = j
    }
  }

  private hostParam (spec: ParamSpec, info: GgufTensorInfo, dtype: WeightDType, raw: Uint8Array, keep: boolean): HostParam {
    const small = spec.shape.length === 1 || spec.name.endsWith('block_sparse_moe.gate.weight')
    if (keep && !small && dtype !== 'f32') return { shape: spec.shape, dtype, data: raw }
    const n = spec.shape.reduce((a, b) => a * b, 1)
    const data = dtype === 'f32' ? new Float32Array(raw.slice().buffer) : dequantize(dtype, raw, n)
    for (let e = 0; e < data.length; e++) {
      if (!Number.isFinite(data[e])) throw new CorruptWeightsError(`tensor '${info.name}': non-finite value ${data[e]} at element ${e}`)
    }
    return { shape: spec.shape, dtype: 'f32', data }
  }

  /**
   * Undoes llama.cpp's Q/K row permutation (convert_hf_to_gguf.py `LlamaModel.permute`): within
   * each head of D rows, HF row j·D/2 + i was written as row 2i + j. Whole rows move, so this is
   * exact for every encoding (a row is whole blocks).
   */
  private unpermute (spec: ParamSpec, raw: Uint8Array): Uint8Array {
    const m = /self_attn\.([qk])_proj\.(weight|bias)$/.exec(spec.name)
    if (m === null) return raw
    const c = this.config
    const heads = m[1] === 'q' ? c.numHeads : c.numKvHeads
    const rows = spec.shape[0]
    const D = rows / heads
    if (!Number.isInteger(D) || D % 2 !== 0) throw new WeightsSourceError(`tensor '${ggufNameOf(spec.name)}': ${rows} rows are not ${heads} heads of an even width`)
    const rowBytes = raw.byteLength / rows
    const out = new Uint8Array(raw.byteLength)
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < 2; j++) {
        for (let i = 0; i < D / 2; i++) {
          const from = (h * D + 2 * i + j) * rowBytes
          out.set(raw.subarray(from, from + rowBytes), (h * D + j * D / 2 + i) * rowBytes)
        }
      }
    }
    return out
  }
}
