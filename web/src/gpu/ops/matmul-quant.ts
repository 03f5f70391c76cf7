import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/matmul-quant.ts'
import { dequantize } from '../cpu/dequant.ts'
import type { GpuInfo } from '../device.ts'
import { shapeString, type WeightDType } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type KernelDecl, type Variant } from '../kernel.ts'
import { blockInfo, isBlockDType, isWeightDType, storageBytes, WEIGHT_DTYPES } from '../quant-types.ts'
import { rowParts } from '../split.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, groups, isCpu } from './util.ts'
import { bytesOf, weightType } from './weight-decode.ts'

/**
 * The matmul with weights kept in their file encoding (issue #10): out (M, N) = x (M, K) ·
 * dequant(w)ᵀ + bias, w (N, K) in any weight dtype, read as packed blocks by
 * shaders/matmul_quant.wgsl; CPU twin in cpu/matmul-quant.ts. `linear` (ops/matmul.ts) routes
 * every non-f32 weight here.
 *
 * Tolerances, GPU vs twin, for |x| ≤ 1 and weights of ~0.05 (test data), K ≤ 2048: both decode
 * the same values up to an FMA (a few ulps of the row scale); the GPU sums in f32 in its own order
 * (the twin in f64), so the error grows like √K·ε·Σ|x·w|. The f16 variant rounds x and the
 * decoded weights to f16 in the tiles (WGSL may round either way: ≤ 2⁻¹⁰ relative each), so
 * each product is off by ≤ 2⁻⁹ relative and an output by ≤ atol + absSumRtol·Σₖ|x·w|.
 */
export const TOLERANCE = {
  matmulQuant: { atol: 1e-4, rtol: 1e-4 },
  matmulQuantF16: { atol: 1e-5, absSumRtol: 2 ** -9 },
  dequantize: { atol: 1e-6, rtol: 1e-6 }
} as const

const BINDINGS = [
  { name: 'x', type: 'f32' }, //    (M, K)
  { name: 'xv', type: 'vec4<f32>' }, // x again, 16 bytes a load (gemv_cols, when K % 4 = 0)
  { name: 'w', type: 'u32' }, //    (N, K) weight bytes as words
  { name: 'bias', type: 'f32' }, // (ldo), read only when HAS_BIAS
  { name: 'out', type: 'f32', access: 'read_write' } // (M, ldo)
] as const
const UNIFORMS = [
  { name: 'M', type: 'u32' },
  { name: 'N', type: 'u32' }, //     rows of w (of this part)
  { name: 'K', type: 'u32' },
  { name: 'units', type: 'u32' }, // units of UNIT values per row
  { name: 'n0', type: 'u32' }, //    first output column this dispatch writes
  { name: 'ldo', type: 'u32' } //    elements between rows of out
] as const

const GEMV = defineKernel({ name: 'matmul_quant_gemv', shader: 'matmul_quant', entry: 'gemv', bindings: BINDINGS, uniforms: UNIFORMS })
const GEMV_COLS = defineKernel({ name: 'matmul_quant_gemv_cols', shader: 'matmul_quant', entry: 'gemv_cols', bindings: BINDINGS, uniforms: UNIFORMS })
const TILED = defineKernel({ name: 'matmul_quant_tiled', shader: 'matmul_quant', entry: 'tiled', bindings: BINDINGS, uniforms: UNIFORMS })
const DEQUANT = defineKernel({ name: 'matmul_quant_dequant', shader: 'matmul_quant', entry: 'dequant', bindings: BINDINGS, uniforms: UNIFORMS })

/**
 * Decode (M ≤ GEMV_MAX_M) takes a GEMV: on GPUs `gemv` (one workgroup per output column), on
 * software adapters `gemv_cols` (one thread per COLS columns, no barriers); longer inputs the tiled kernel.
 */
export const GEMV_MAX_M = 8
/** Threads per GEMV workgroup (splitting a row's units). */
const GEMV_WG = 64
/** gemv_cols: threads per workgroup and output columns per thread (bench/kernels.ts --gemv-sweep). */
export const GEMV_COLS_CONFIG = { wg: 16, cols: 8 }
/** Output tile of the tiled kernel: TM rows of x × TN weight rows, 4 × 4 per thread. */
const TILE = 32
/** Threads per workgroup of the dequant entry (4 values each). */
const DEQUANT_WG = 64

export type QuantKernel = 'gemv' | 'gemv_cols' | 'tiled'
const isGemv = (k: QuantKernel): boolean => k !== 'tiled'

/** What the variant builder looks at. */
export interface QuantMatmulSpec {
  dtype: WeightDType
  kernel: QuantKernel
  /** Rows of x (GEMVs: rounded up to MR ∈ {1, 2, 4, 8}, loads clamped, stores guarded). */
  M: number
  hasBias: boolean
  /** Dequantized tiles in f16 (tiled only; needs `shader-f16`). @default false */
  f16?: boolean
  /** gemv_cols: threads per workgroup and columns per thread. @default GEMV_COLS_CONFIG */
  cols?: { wg: number, cols: number }
}

/** Values per unit: a q8_0/q4_0 block or a 32-value K-quant sub-block; 4 elements for f32/f16/bf16. */
function unitOf (dtype: WeightDType): number {
  return isBlockDType(dtype) ? 32 : 4
}

/** Units per row of K values. */
export function unitsPerRow (dtype: WeightDType, K: number): number {
  return Math.ceil(K / unitOf(dtype))
}

/**
 * The variant for one dtype and kernel (CONTRIBUTING.md STYLE 5): WTYPE and UNIT select the decoder, MR the rows
 * of the GEMV, T the element type of the tiled kernel's workgroup tiles.
 */
export function quantMatmulVariant (s: QuantMatmulSpec): Variant {
  const f16 = s.f16 === true
  if (f16 && s.kernel !== 'tiled') throw new ShapeError('matmulQuant', 'the f16 variant exists for the tiled kernel only')
  if (isGemv(s.kernel) && !(s.M >= 1 && s.M <= GEMV_MAX_M)) throw new ShapeError('matmulQuant', `the GEMV takes 1 ≤ M ≤ ${GEMV_MAX_M}, got M = ${s.M}`)
  const cc = s.cols ?? GEMV_COLS_CONFIG
  if (!(Number.isInteger(cc.cols) && cc.cols >= 1 && cc.cols <= 8 && Number.isInteger(cc.wg) && cc.wg >= 1 && cc.wg <= 256)) {
    throw new ShapeError('matmulQuant', `gemv_cols takes 1 ≤ cols ≤ 8 and 1 ≤ wg ≤ 256, got cols ${cc.cols}, wg ${cc.wg}`)
  }
  const mr = isGemv(s.kernel) ? 2 ** Math.ceil(Math.log2(s.M)) : 1
  const wg: [number, number] = s.kernel === 'gemv' ? [GEMV_WG, 1] : s.kernel === 'gemv_cols' ? [cc.wg, 1] : [TILE / 4, TILE / 4]
  const shape = s.kernel === 'tiled' ? `-t${TILE}` : s.kernel === 'gemv' ? `-mr${mr}` : `-mr${mr}-wg${cc.wg}-c${cc.cols}`
  return {
    key: `${s.kernel}-${s.dtype}${shape}${f16 ? '-f16' : ''}${s.hasBias ? '-bias' : ''}`,
    entry: s.kernel,
    workgroupSize: wg,
    elem: f16 ? 'f16' : 'f32',
    constants: { WTYPE: weightType('matmulQuant', 'w', s.dtype), UNIT: unitOf(s.dtype), MR: mr, COLS: s.kernel === 'gemv_cols' ? cc.cols : 1, TM: TILE, TN: TILE, HAS_BIAS: s.hasBias }
  }
}

/** Every (kernel, variant) the runtime can pick for a dtype (the tests compile each). */
export function quantMatmulVariants (dtype: WeightDType, f16: boolean): Array<[KernelDecl, Variant]> {
  const out: Array<[KernelDecl, Variant]> = []
  for (const hasBias of [false, true]) {
    for (const M of [1, 2, 4, 8]) {
      out.push([GEMV, quantMatmulVariant({ dtype, kernel: 'gemv', M, hasBias })])
      out.push([GEMV_COLS, quantMatmulVariant({ dtype, kernel: 'gemv_cols', M, hasBias })])
    }
    out.push([TILED, quantMatmulVariant({ dtype, kernel: 'tiled', M: GEMV_MAX_M + 1, hasBias })])
    if (f16) out.push([TILED, quantMatmulVariant({ dtype, kernel: 'tiled', M: GEMV_MAX_M + 1, hasBias, f16: true })])
  }
  out.push([DEQUANT, dequantVariant(dtype)])
  return out
}

export interface MatmulQuantOptions {
  /** (N) added to every row of the result. */
  bias?: Tensor
  /** Forces the kernel (tests, benchmarks). @default M ≤ 8: 'gemv_cols' on software adapters, else 'gemv'; M > 8: 'tiled' */
  kernel?: QuantKernel
  /** gemv_cols shape (benchmark sweeps). @default GEMV_COLS_CONFIG */
  cols?: { wg: number, cols: number }
  /** Tiled kernel with f16 tiles. @default true where the device has shader-f16 */
  f16?: boolean
}

/** The kernel and tile precision for M rows on this adapter. */
export function planQuantMatmul (info: Pick<GpuInfo, 'f16' | 'software'>, M: number, o: MatmulQuantOptions = {}): { kernel: QuantKernel, f16: boolean } {
  // software adapters run barriers and workgroup memory as CPU work: one thread per column wins there
  const kernel = o.kernel ?? (M > GEMV_MAX_M ? 'tiled' : info.software ? 'gemv_cols' : 'gemv')
  const f16 = kernel === 'tiled' && (o.f16 ?? info.f16)
  if (f16 && !info.f16) throw new ShapeError('matmulQuant', 'f16 tiles need the shader-f16 feature, which this device lacks')
  return { kernel, f16 }
}

function checkWeight (op: string, w: Tensor): WeightDType {
  const dtype = w.dtype
  if (!isWeightDType(dtype)) throw new ShapeError(op, `w must be a weight dtype (${WEIGHT_DTYPES.join(', ')}), got ${dtype}`)
  const K = w.shape[w.rank - 1]
  const { elems } = blockInfo(dtype)
  if (K % elems !== 0) throw new ShapeError(op, `w ${shapeString(w.shape)} ${dtype}: K = ${K} is not a multiple of the ${elems}-value block`)
  const want = storageBytes(dtype, w.shape)
  if (w.storage.bytes !== want) throw new ShapeError(op, `w ${shapeString(w.shape)} ${dtype} must hold ${want} bytes, has ${w.storage.bytes}`)
  return dtype
}

/**
 * out (M, N) = x (M, K) · dequant(w)ᵀ + bias; x f32, w (N, K) in any weight dtype (possibly split
 * into row parts: each part writes its own columns), bias (N) f32.
 */
export function matmulQuant (x: Tensor, w: Tensor, opts: MatmulQuantOptions = {}): Tensor {
  const be = backendOf('linear', x, w, opts.bias)
  expectDType('matmulQuant', 'x', x, 'f32')
  expectRank('matmulQuant', 'x', x, 2)
  expectRank('matmulQuant', 'w', w, 2)
  const [M, K] = x.shape
  const [N, Kw] = w.shape
  if (K !== Kw) throw new ShapeError('matmulQuant', `inner dimensions differ: x ${shapeString(x.shape)} · w ${shapeString(w.shape)}ᵀ (K ${K} vs ${Kw})`)
  const bias = opts.bias
  if (bias !== undefined) {
    expectDType('matmulQuant', 'bias', bias, 'f32')
    if (bias.rank !== 1 || bias.shape[0] !== N) throw new ShapeError('matmulQuant', `bias must have shape (${N}), got ${shapeString(bias.shape)}`)
  }
  const parts = rowParts(w)
  if (isCpu(be)) {
    const dtype = checkWeight('matmulQuant', w)
    return cpu.wrap(twin.matmulQuant(x.data as Float32Array, bytesOf(w.data), dtype, M, N, K, bias?.data as Float32Array | undefined), [M, N])
  }
  const g = be as GpuBackend
  const out = g.empty([M, N])
  if (M * N === 0 || K === 0) {
    if (M * N > 0) fillBias(g, out, M, N, bias)
    return out
  }
  const plan = planQuantMatmul(g.info, M, opts)
  const hasBias = bias !== undefined
  const dispatch = (xs: Tensor, os: Tensor, rows: number): void => {
    for (const p of parts) {
      const dtype = checkWeight('matmulQuant', p.t)
      const uniforms = { M: rows, N: p.rows, K, units: unitsPerRow(dtype, K), n0: p.row0, ldo: N }
      const bind = { x: xs, xv: xs, w: p.t, bias: bias ?? xs, out: os }
      if (plan.kernel === 'gemv') g.run(GEMV, quantMatmulVariant({ dtype, kernel: 'gemv', M: rows, hasBias }), bind, uniforms, g.grid1d(p.rows))
      else if (plan.kernel === 'gemv_cols') {
        const cc = opts.cols ?? GEMV_COLS_CONFIG
        g.run(GEMV_COLS, quantMatmulVariant({ dtype, kernel: 'gemv_cols', M: rows, hasBias, cols: cc }), bind, uniforms, g.grid1d(groups(p.rows, cc.wg * cc.cols)))
      } else g.run(TILED, quantMatmulVariant({ dtype, kernel: 'tiled', M: rows, hasBias, f16: plan.f16 }), bind, uniforms, [groups(p.rows, TILE), groups(rows, TILE), 1])
    }
  }
  if (plan.kernel === 'tiled' || M <= GEMV_MAX_M) {
    dispatch(x, out, M)
    return out
  }
  for (let m0 = 0; m0 < M; m0 += GEMV_MAX_M) { // GEMV forced past 8 rows: 8 at a time, every part into one slice
    const rows = Math.min(GEMV_MAX_M, M - m0)
    const xs = sliceRows(g, x, m0, rows)
    const os = g.empty([rows, N])
    dispatch(xs, os, rows)
    g.copy(os, out, 0, m0 * N * 4, rows * N * 4)
    os.dispose(); xs.dispose()
  }
  return out
}

/** Rows [m0, m0 + rows) of x (M, K) as a new tensor (a copy inside the batch). */
function sliceRows (g: GpuBackend, x: Tensor, m0: number, rows: number): Tensor {
  const K = x.shape[1]
  const t = g.empty([rows, K])
  g.copy(x, t, m0 * K * 4, 0, rows * K * 4)
  return t
}

/** K = 0: out = bias broadcast (or zeros). */
function fillBias (g: GpuBackend, out: Tensor, M: number, N: number, bias?: Tensor): void {
  if (bias === undefined) { g.write(out, new Float32Array(M * N)); return }
  for (let m = 0; m < M; m++) g.copy(bias, out, 0, m * N * 4, N * 4)
}

function dequantVariant (dtype: WeightDType): Variant {
  return {
    key: `dequant-${dtype}-wg${DEQUANT_WG}`,
    entry: 'dequant',
    workgroupSize: [DEQUANT_WG],
    constants: { WTYPE: weightType('dequantizeTensor', 't', dtype), UNIT: unitOf(dtype), MR: 1, COLS: 1, TM: TILE, TN: TILE, HAS_BIAS: false }
  }
}

/** A weight tensor (..., K) in any weight dtype → f32 of the same shape: tests and small tensors. */
export function dequantizeTensor (t: Tensor): Tensor {
  const be = backendOf('dequantizeTensor', t)
  if (t.rank < 1) throw new ShapeError('dequantizeTensor', `t must have rank ≥ 1, got ${shapeString(t.shape)}`)
  const K = t.shape[t.rank - 1]
  const N = t.numel / Math.max(K, 1)
  if (isCpu(be)) {
    const dtype = checkWeight('dequantizeTensor', t)
    return cpu.wrap(dequantize(dtype, bytesOf(t.data), t.numel), t.shape)
  }
  const g = be as GpuBackend
  const out = g.empty(t.shape)
  if (t.numel === 0) return out
  const dtype = checkWeight('dequantizeTensor', t)
  const variant = dequantVariant(dtype)
  const rows = t.rank === 1 ? 1 : N
  const flat = t.reshape([rows, K])
  g.run(DEQUANT, variant, { x: flat, xv: flat, w: flat, bias: flat, out }, { M: 1, N: rows, K, units: unitsPerRow(dtype, K), n0: 0, ldo: K }, g.grid1d(groups(rows * Math.ceil(K / 4), DEQUANT_WG)))
  flat.dispose()
  return out
}
