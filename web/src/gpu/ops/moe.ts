/**
 * Mixture-of-Experts ops (HF Mixtral's MixtralSparseMoeBlock, Qwen2-MoE): router top-k,
 * dispatch (stable counting sort of the T·k slots by expert), gather, grouped SwiGLU expert FFN,
 * weighted combine, and the backward of each. Shaders: shaders/moe_*.wgsl (one file per binding
 * set); CPU twins: web/src/gpu/cpu/moe.ts.
 *
 * A MoE layer's forward (x: (T, C), router weight wr: (E, C)):
 *   const { weights, experts } = routerTopK(linear(x, wr), 2)        // (T, 2), i32 (T, 2)
 *   const { order, slotRow, offsets } = moeDispatch(experts, E)      // i32 (2T), (2T), (E + 1)
 *   const xs = moeGather(x, order, 2)                                // (2T, C), rows sorted by expert
 *   const ys = expertFFN(xs, offsets, w1, w3, w2)                    // (2T, C)
 *   const out = moeCombine(ys, slotRow, weights)                     // (T, C)
 *
 * E in the FFN ops is whatever w1/w3/w2 hold: a peer hosting a subset of the experts passes its
 * local stack and builds offsets for it. Nothing is read back to the host: the FFN kernels find
 * each tile's expert from the offsets on the GPU. Every reduction has a fixed order (no float
 * atomics), so results are bit-reproducible on one device.
 *
 * Index inputs (experts, order, slotRow, offsets) are validated on the host for CPU tensors; on
 * the GPU they are not read back, and the kernels clamp them into range instead of faulting.
 *
 * Expert weights may be kept in their file encoding (f16, bf16, GGUF blocks: inference only) and
 * split into row parts of whole experts (split.ts): expertFFN then runs three grouped GEMMs that
 * decode the weights as they load them (shaders/moe_ffn_quant.wgsl), one per part, with the
 * SwiGLU between them. The router stays f32.
 */
import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/moe.ts'
import { shapeString, type DType, type TypedArray } from '../dtype.ts'
import { GpuArgumentError, ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import { blockInfo, isWeightDType, storageBytes } from '../quant-types.ts'
import { rowParts } from '../split.ts'
import type { Tensor } from '../tensor.ts'
import { swiglu } from './elementwise.ts'
import { backendOf, expectDType, expectRank, expectShape, groups, isCpu } from './util.ts'
import { bytesOf, expectWeightDType, weightType } from './weight-decode.ts'

/** GPU vs CPU twin tolerances per op (f32 on the GPU vs f64-accumulated twins). */
export const TOLERANCE = {
  /** Weights: a few ulps of exp and one division. Expert ids must match exactly. */
  routerTopK: { atol: 1e-6, rtol: 1e-5 },
  routerTopKBackward: { atol: 1e-6, rtol: 1e-4 },
  /** Integer results: exact. */
  moeDispatch: { atol: 0, rtol: 0 },
  /** Pure copies: exact. */
  moeGather: { atol: 0, rtol: 0 },
  /** k-term f32 sums. */
  moeGatherBackward: { atol: 1e-6, rtol: 1e-6 },
  /**
   * Dot products of length C and I in f32 (tile order) vs f64. Seen on SwiftShader at C, I ≤ 96:
   * ≤ 2 % of this bound (forward), ≤ 5 % (backward); the margin covers K ≈ 4096 (error ~ √K).
   */
  expertFFN: { atol: 2e-6, rtol: 2e-5 },
  /**
   * Weights in a file encoding: the same f32 GEMMs on decoded weights (decoding is a few ulps of
   * the block scale), SwiGLU in a separate pass. Seen on SwiftShader (C, I ≤ 256, decoded
   * weights ≤ 0.5, |x| ≤ 1): ≤ 22 % of this bound (q4_k/q6_k; ≤ 9 % for the others).
   */
  expertFFNQuant: { atol: 2e-5, rtol: 2e-4 },
  expertFFNBackward: { atol: 4e-6, rtol: 4e-5 },
  moeCombine: { atol: 1e-6, rtol: 1e-5 },
  /** dWeights is a length-C dot product (tree order on the GPU). */
  moeCombineBackward: { atol: 2e-6, rtol: 2e-5 }
} as const

// ---- kernel declarations and variants ----

/**
 * Workgroup size of the kernels with one thread per token or slot and a short serial loop
 * (router: over E; combine dWeights: over C). No barriers, so size only affects occupancy.
 */
const PER_ROW_WG = 64
/**
 * Slots per dispatch chunk = workgroup size of the dispatch passes (and the scan's segment
 * count). 64, not 256: software adapters (SwiftShader) pay per workgroup for zeroing workgroup
 * memory and for each barrier, both in proportion to the threads.
 */
const DISPATCH_WG = 64
/** Workgroup size of the flat gather / combine kernels (one thread per output element). */
const FLAT_WG = 256

const PER_ROW_VARIANT: Variant = { key: `wg${PER_ROW_WG}`, workgroupSize: [PER_ROW_WG] }
const DISPATCH_VARIANT: Variant = { key: `wg${DISPATCH_WG}`, workgroupSize: [DISPATCH_WG] }
const FLAT_VARIANT: Variant = { key: `wg${FLAT_WG}`, workgroupSize: [FLAT_WG] }

/** Tile of the grouped expert GEMMs. */
export interface FfnTile {
  /** Output rows (token rows, or weight rows in the dW kernel) per workgroup. */
  bm: number
  /** Output columns per workgroup. */
  bn: number
  /** Reduction depth staged in workgroup memory per step. */
  bk: number
  /** Threads per workgroup along columns (x) and rows (y); each computes (bm/wgY)·(bn/wgX) outputs. */
  wgX: number
  wgY: number
}

/**
 * Row-grouped kernels (up, down, backward hidden/dx): 16 rows × 32 columns per workgroup of
 * 8×4 threads (4×4 outputs each), depth 16. 32 threads is one warp on real GPUs; 16-row tiles
 * waste less on the few rows of decode. On SwiftShader a 16×16-thread, 10 KiB workgroup cost
 * ~7.6 ms before doing any work (zeroing workgroup memory, barriers: both ∝ threads), this one
 * ~0.6 ms, at the same throughput. The widest kernel (backward hidden: 5 tiles) stages
 * 2·16·16 + 3·16·32 floats = 8 KiB.
 */
export const FFN_TILE: FfnTile = { bm: 16, bn: 32, bk: 16, wgX: 8, wgY: 4 }
/** Weight-gradient kernel (2 staged tiles, 4 KiB): 32×32 outputs per 8×8 threads, depth 16. */
export const FFN_DW_TILE: FfnTile = { bm: 32, bn: 32, bk: 16, wgX: 8, wgY: 8 }

/** WebGPU's default maxComputeWorkgroupStorageSize, in bytes: every adapter has at least this. */
const WORKGROUP_STORAGE_BYTES = 16384
/** Most shared tiles any FFN kernel stages (ffn_backward_hidden: xs, dys, w1, w3, w2). */
const FFN_MAX_TILES = 5

/** Builds the FFN variant for a tile (CONTRIBUTING.md STYLE 5): the constants the shaders and dispatches share. */
export function ffnVariant (t: FfnTile = FFN_TILE): Variant {
  if (t.bm % t.wgY !== 0 || t.bn % t.wgX !== 0) throw new GpuArgumentError(`ffnVariant: tile ${t.bm}×${t.bn} is not a multiple of the workgroup ${t.wgY}×${t.wgX}`)
  if (FFN_MAX_TILES * t.bk * Math.max(t.bm, t.bn) * 4 > WORKGROUP_STORAGE_BYTES) throw new GpuArgumentError(`ffnVariant: tile ${t.bm}×${t.bn}×${t.bk} needs more than ${WORKGROUP_STORAGE_BYTES} B of workgroup memory`)
  return {
    key: `bm${t.bm}-bn${t.bn}-bk${t.bk}-wg${t.wgX}x${t.wgY}`,
    workgroupSize: [t.wgX, t.wgY],
    constants: { BM: t.bm, BN: t.bn, BK: t.bk, RM: t.bm / t.wgY, RN: t.bn / t.wgX }
  }
}
const FFN_VARIANT = ffnVariant(FFN_TILE)
const FFN_DW_VARIANT = ffnVariant(FFN_DW_TILE)

/** T: tokens, E: experts, k: choices per token, renormalize: 0 | 1. */
const ROUTER_UNIFORMS = [{ name: 'T', type: 'u32' }, { name: 'E', type: 'u32' }, { name: 'k', type: 'u32' }, { name: 'renormalize', type: 'u32' }] as const
const ROUTER = defineKernel({
  name: 'router_topk', shader: 'moe_router', entry: 'router_topk',
  bindings: [
    { name: 'logits', type: 'f32' }, // (T, E)
    { name: 'weights', type: 'f32', access: 'read_write' }, // (T, k)
    { name: 'experts', type: 'i32', access: 'read_write' } // (T, k)
  ],
  uniforms: ROUTER_UNIFORMS
})

const ROUTER_BACKWARD = defineKernel({
  name: 'router_topk_backward', shader: 'moe_router_backward', entry: 'router_topk_backward',
  bindings: [
    { name: 'logits', type: 'f32' }, // (T, E)
    { name: 'experts', type: 'i32' }, // (T, k)
    { name: 'dweights', type: 'f32' }, // (T, k)
    { name: 'dlogits', type: 'f32', access: 'read_write' } // (T, E)
  ],
  uniforms: ROUTER_UNIFORMS
})

/** The three dispatch passes share one binding set: the sort's state. */
const DISPATCH_BINDINGS = [
  { name: 'experts', type: 'i32' }, // (n)
  { name: 'counts', type: 'u32', access: 'read_write' }, // (E, nChunks)
  { name: 'order', type: 'i32', access: 'read_write' }, // (n)
  { name: 'slotRow', type: 'i32', access: 'read_write' }, // (n)
  { name: 'offsets', type: 'i32', access: 'read_write' } // (E + 1)
] as const
/** n: slots (T·k), E: experts, nChunks: ⌈n / DISPATCH_WG⌉. */
const DISPATCH_UNIFORMS = [{ name: 'n', type: 'u32' }, { name: 'E', type: 'u32' }, { name: 'nChunks', type: 'u32' }] as const
const DISPATCH_COUNT = defineKernel({ name: 'dispatch_count', shader: 'moe_dispatch', entry: 'dispatch_count', bindings: DISPATCH_BINDINGS, uniforms: DISPATCH_UNIFORMS })
const DISPATCH_SCAN = defineKernel({ name: 'dispatch_scan', shader: 'moe_dispatch', entry: 'dispatch_scan', bindings: DISPATCH_BINDINGS, uniforms: DISPATCH_UNIFORMS })
const DISPATCH_SCATTER = defineKernel({ name: 'dispatch_scatter', shader: 'moe_dispatch', entry: 'dispatch_scatter', bindings: DISPATCH_BINDINGS, uniforms: DISPATCH_UNIFORMS })

const GATHER_BINDINGS = [
  { name: 'src', type: 'f32' }, // (srcRows, C)
  { name: 'idx', type: 'i32' }, // gather: order (rows); sum: slotRow (rows·k)
  { name: 'dst', type: 'f32', access: 'read_write' } // (rows, C)
] as const
/** rows: dst rows, srcRows: src rows (indices clamp to it), C: columns, k: choices per token. */
const GATHER_UNIFORMS = [{ name: 'rows', type: 'u32' }, { name: 'srcRows', type: 'u32' }, { name: 'C', type: 'u32' }, { name: 'k', type: 'u32' }] as const
const GATHER_ROWS = defineKernel({ name: 'gather_rows', shader: 'moe_gather', entry: 'gather_rows', bindings: GATHER_BINDINGS, uniforms: GATHER_UNIFORMS })
const SUM_ROWS = defineKernel({ name: 'sum_rows', shader: 'moe_gather', entry: 'sum_rows', bindings: GATHER_BINDINGS, uniforms: GATHER_UNIFORMS })

/** T: tokens, C: columns, k: choices per token, N = T·k: rows of ys. */
const COMBINE_UNIFORMS = [{ name: 'T', type: 'u32' }, { name: 'C', type: 'u32' }, { name: 'k', type: 'u32' }, { name: 'N', type: 'u32' }] as const
const COMBINE = defineKernel({
  name: 'combine', shader: 'moe_combine', entry: 'combine',
  bindings: [
    { name: 'ys', type: 'f32' }, // (N, C)
    { name: 'slotRow', type: 'i32' }, // (N)
    { name: 'weights', type: 'f32' }, // (T, k)
    { name: 'out', type: 'f32', access: 'read_write' } // (T, C)
  ],
  uniforms: COMBINE_UNIFORMS
})
const COMBINE_BACKWARD_BINDINGS = [
  { name: 'ys', type: 'f32' }, // (N, C)
  { name: 'slotRow', type: 'i32' }, // (N)
  { name: 'weights', type: 'f32' }, // (T, k)
  { name: 'dout', type: 'f32' }, // (T, C)
  { name: 'dys', type: 'f32', access: 'read_write' }, // (N, C)
  { name: 'dweights', type: 'f32', access: 'read_write' } // (T, k)
] as const
const COMBINE_BACKWARD_DYS = defineKernel({ name: 'combine_backward_dys', shader: 'moe_combine_backward', entry: 'combine_backward_dys', bindings: COMBINE_BACKWARD_BINDINGS, uniforms: COMBINE_UNIFORMS })
const COMBINE_BACKWARD_DWEIGHTS = defineKernel({ name: 'combine_backward_dweights', shader: 'moe_combine_backward', entry: 'combine_backward_dweights', bindings: COMBINE_BACKWARD_BINDINGS, uniforms: COMBINE_UNIFORMS })

/** N: rows (dispatched slots), C: model width, I: expert hidden width, E: local experts. */
const FFN_UNIFORMS = [{ name: 'N', type: 'u32' }, { name: 'C', type: 'u32' }, { name: 'I', type: 'u32' }, { name: 'E', type: 'u32' }] as const
const FFN_UP = defineKernel({
  name: 'ffn_up', shader: 'moe_ffn_up', entry: 'ffn_up',
  bindings: [
    { name: 'xs', type: 'f32' }, // (N, C)
    { name: 'offsets', type: 'i32' }, // (E + 1)
    { name: 'w1', type: 'f32' }, // (E, I, C)
    { name: 'w3', type: 'f32' }, // (E, I, C)
    { name: 'h', type: 'f32', access: 'read_write' } // (N, I)
  ],
  uniforms: FFN_UNIFORMS
})
const FFN_DOWN = defineKernel({
  name: 'ffn_down', shader: 'moe_ffn_down', entry: 'ffn_down',
  bindings: [
    { name: 'h', type: 'f32' }, // (N, I)
    { name: 'offsets', type: 'i32' }, // (E + 1)
    { name: 'w2', type: 'f32' }, // (E, C, I)
    { name: 'ys', type: 'f32', access: 'read_write' } // (N, C)
  ],
  uniforms: FFN_UNIFORMS
})
const FFN_BACKWARD_HIDDEN = defineKernel({
  name: 'ffn_backward_hidden', shader: 'moe_ffn_backward_hidden', entry: 'ffn_backward_hidden',
  bindings: [
    { name: 'xs', type: 'f32' }, // (N, C)
    { name: 'dys', type: 'f32' }, // (N, C)
    { name: 'offsets', type: 'i32' }, // (E + 1)
    { name: 'w1', type: 'f32' }, // (E, I, C)
    { name: 'w3', type: 'f32' }, // (E, I, C)
    { name: 'w2', type: 'f32' }, // (E, C, I)
    { name: 'hg', type: 'f32', access: 'read_write' } // (3, N, I) = [h; da; db]
  ],
  uniforms: FFN_UNIFORMS
})
const FFN_BACKWARD_DX = defineKernel({
  name: 'ffn_backward_dx', shader: 'moe_ffn_backward_dx', entry: 'ffn_backward_dx',
  bindings: [
    { name: 'hg', type: 'f32' }, // (3, N, I)
    { name: 'offsets', type: 'i32' }, // (E + 1)
    { name: 'w1', type: 'f32' }, // (E, I, C)
    { name: 'w3', type: 'f32' }, // (E, I, C)
    { name: 'dxs', type: 'f32', access: 'read_write' } // (N, C)
  ],
  uniforms: FFN_UNIFORMS
})
const FFN_BACKWARD_DW = defineKernel({
  name: 'ffn_backward_dw', shader: 'moe_ffn_backward_dw', entry: 'ffn_backward_dw',
  bindings: [
    { name: 'lhs', type: 'f32' }, // (…, N, M) from element lhsOff
    { name: 'rhs', type: 'f32' }, // (…, N, Nc) from element rhsOff
    { name: 'offsets', type: 'i32' }, // (E + 1)
    { name: 'out', type: 'f32', access: 'read_write' } // (E, M, Nc)
  ],
  uniforms: [
    { name: 'N', type: 'u32' }, { name: 'M', type: 'u32' }, { name: 'Nc', type: 'u32' }, { name: 'E', type: 'u32' }, // rows, out rows, out cols, experts
    { name: 'lhsOff', type: 'u32' }, { name: 'rhsOff', type: 'u32' } // in elements
  ]
})

/** One grouped GEMM on decoded weights: the three projections of expertFFN on quantized or split experts. */
const FFN_QUANT_BINDINGS = [
  { name: 'x', type: 'f32' }, // (N, K)
  { name: 'offsets', type: 'i32' }, // (E + 1), rows of the experts in w
  { name: 'w', type: 'u32' }, // (E, Nout, K) in its file encoding, as words
  { name: 'out', type: 'f32', access: 'read_write' } // (N, Nout)
] as const
/** N: rows, K: depth, Nout: out columns, E: experts in w. */
const FFN_QUANT_UNIFORMS = [{ name: 'N', type: 'u32' }, { name: 'K', type: 'u32' }, { name: 'Nout', type: 'u32' }, { name: 'E', type: 'u32' }] as const
const FFN_QUANT = defineKernel({ name: 'ffn_quant', shader: 'moe_ffn_quant', entry: 'ffn_quant', bindings: FFN_QUANT_BINDINGS, uniforms: FFN_QUANT_UNIFORMS })
/** Software adapters, few rows: one thread per output, no workgroup memory (same module). */
const FFN_QUANT_ROWS = defineKernel({ name: 'ffn_quant_rows', shader: 'moe_ffn_quant', entry: 'ffn_quant_rows', bindings: FFN_QUANT_BINDINGS, uniforms: FFN_QUANT_UNIFORMS })
/** Threads per workgroup of ffn_quant_rows. */
const FFN_ROWS_WG = 64
/** `kernel: 'auto'` takes ffn_quant_rows on software adapters up to this many rows (decode). */
const FFN_ROWS_MAX_N = 8

/** The ffn_quant_rows variant: the module's tile constants (WGSL resolves every entry's names) and WG_X = FFN_ROWS_WG. */
export function ffnQuantRowsVariant (dtype: DType): Variant {
  const v = ffnQuantVariant(dtype)
  return { ...v, key: `rows-wg${FFN_ROWS_WG}-${dtype}`, workgroupSize: [FFN_ROWS_WG], entry: 'ffn_quant_rows' }
}

/**
 * The ffn_quant variant for a weight dtype: the FFN tile plus WTYPE and UNIT
 * (shaders/lib/weight_decode_vec4.wgsl: 32-value units of the GGUF blocks, 4 for f32/f16/bf16).
 * The tile depth BK must be a multiple of 4 (the loader takes 4 values at a time).
 */
export function ffnQuantVariant (dtype: DType, t: FfnTile = FFN_TILE): Variant {
  const v = ffnVariant(t)
  if (t.bk % 4 !== 0) throw new GpuArgumentError(`ffnQuantVariant: tile depth ${t.bk} is not a multiple of 4`)
  const WTYPE = weightType('expertFFN', 'w', dtype)
  const UNIT = blockInfo(dtype).elems >= 32 ? 32 : 4
  return { ...v, key: `${v.key}-${dtype}`, constants: { ...v.constants, WTYPE, UNIT } }
}

/** Every MoE kernel with the variant it ships with (for compile-all checks). */
export const MOE_KERNELS = [
  [ROUTER, PER_ROW_VARIANT], [ROUTER_BACKWARD, PER_ROW_VARIANT],
  [DISPATCH_COUNT, DISPATCH_VARIANT], [DISPATCH_SCAN, DISPATCH_VARIANT], [DISPATCH_SCATTER, DISPATCH_VARIANT],
  [GATHER_ROWS, FLAT_VARIANT], [SUM_ROWS, FLAT_VARIANT], [COMBINE, FLAT_VARIANT],
  [COMBINE_BACKWARD_DYS, FLAT_VARIANT], [COMBINE_BACKWARD_DWEIGHTS, PER_ROW_VARIANT],
  [FFN_UP, FFN_VARIANT], [FFN_DOWN, FFN_VARIANT], [FFN_BACKWARD_HIDDEN, FFN_VARIANT], [FFN_BACKWARD_DX, FFN_VARIANT], [FFN_BACKWARD_DW, FFN_DW_VARIANT],
  ...(['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'] as const).map(d => [FFN_QUANT, ffnQuantVariant(d)] as const),
  ...(['f32', 'q4_k', 'q6_k'] as const).map(d => [FFN_QUANT_ROWS, ffnQuantRowsVariant(d)] as const)
] as const

// ---- host-side checks ----

function f32s (t: Tensor): Float32Array { return t.data as Float32Array }
function i32s (t: Tensor): Int32Array { return t.data as Int32Array }

function expectCount (op: string, what: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new ShapeError(op, `${what} must be an integer ≥ ${min}, got ${v}`)
}

/** CPU tensors only (GPU ids are not read back): every id in [0, bound). */
function expectIndices (op: string, name: string, ids: TypedArray, bound: number): void {
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]
    if (!(v >= 0 && v < bound)) throw new ShapeError(op, `${name}[${i}] = ${v} is outside [0, ${bound})`)
  }
}

/** CPU tensors only: offsets non-decreasing within [0, N]. */
function expectOffsets (op: string, offsets: Int32Array, N: number): void {
  for (let e = 0; e < offsets.length; e++) {
    const lo = e === 0 ? 0 : offsets[e - 1]
    if (offsets[e] < lo || offsets[e] > N) throw new ShapeError(op, `offsets must be non-decreasing within [0, N=${N}], got [${Array.from(offsets).join(', ')}]`)
  }
}

// ---- router ----

export interface RouterTopK {
  /** (T, k) f32: routing weight of each choice (sums to 1 per token when renormalised). */
  weights: Tensor
  /** (T, k) i32: chosen experts, by descending logit (ties → lower index). */
  experts: Tensor
}

/**
 * Softmax over experts (f32), top-k, and (Mixtral) renormalisation of the k weights to sum 1;
 * `renormalize = false` keeps the softmax probabilities (Qwen2-MoE norm_topk_prob = false).
 * logits: (T, E) f32.
 */
export function routerTopK (logits: Tensor, k: number, renormalize = true): RouterTopK {
  const op = 'routerTopK'
  const be = backendOf(op, logits)
  expectDType(op, 'logits', logits, 'f32')
  expectRank(op, 'logits', logits, 2)
  const [T, E] = logits.shape
  if (!Number.isInteger(k) || k < 1 || k > E) throw new ShapeError(op, `k=${k} must be an integer in [1, E=${E}] for logits ${shapeString(logits.shape)}`)
  if (isCpu(be)) {
    const r = twin.routerTopK(f32s(logits), T, E, k, renormalize)
    return { weights: cpu.wrap(r.weights, [T, k]), experts: cpu.wrap(r.experts, [T, k], 'i32') }
  }
  const g = be as GpuBackend
  const weights = g.empty([T, k])
  const experts = g.empty([T, k], 'i32')
  g.run(ROUTER, PER_ROW_VARIANT, { logits, weights, experts }, { T, E, k, renormalize: renormalize ? 1 : 0 }, g.grid1d(groups(T, PER_ROW_WG)))
  return { weights, experts }
}

/**
 * Gradient of the router weights w.r.t. the logits, through the softmax and the
 * renormalisation (the top-k choice is not differentiated).
 * logits: (T, E) f32, experts: (T, k) i32, dWeights: (T, k) f32 → dlogits (T, E).
 */
export function routerTopKBackward (logits: Tensor, experts: Tensor, dWeights: Tensor, renormalize = true): Tensor {
  const op = 'routerTopKBackward'
  const be = backendOf(op, logits, experts, dWeights)
  expectDType(op, 'logits', logits, 'f32')
  expectDType(op, 'experts', experts, 'i32')
  expectDType(op, 'dWeights', dWeights, 'f32')
  expectRank(op, 'logits', logits, 2)
  expectRank(op, 'experts', experts, 2)
  const [T, E] = logits.shape
  const k = experts.shape[1]
  expectShape(op, 'experts', experts, [T, -1])
  expectShape(op, 'dWeights', dWeights, [T, k])
  if (k < 1 || k > E) throw new ShapeError(op, `k=${k} (experts ${shapeString(experts.shape)}) must be in [1, E=${E}] for logits ${shapeString(logits.shape)}`)
  if (isCpu(be)) {
    expectIndices(op, 'experts', experts.data, E)
    return cpu.wrap(twin.routerTopKBackward(f32s(logits), i32s(experts), f32s(dWeights), T, E, k, renormalize), [T, E])
  }
  const g = be as GpuBackend
  const dlogits = g.empty([T, E])
  g.run(ROUTER_BACKWARD, PER_ROW_VARIANT, { logits, experts, dweights: dWeights, dlogits }, { T, E, k, renormalize: renormalize ? 1 : 0 }, g.grid1d(groups(T, PER_ROW_WG)))
  return dlogits
}

// ---- dispatch ----

export interface MoeDispatch {
  /** (T·k) i32: order[r] = slot t·k + j placed in row r (rows grouped by expert, slots ascending). */
  order: Tensor
  /** (T·k) i32: row of slot s (the inverse permutation of order). */
  slotRow: Tensor
  /** (E + 1) i32: rows of expert e are [offsets[e], offsets[e+1]); offsets[E] = T·k. */
  offsets: Tensor
}

/**
 * Stable counting sort of the T·k (token, choice) slots by expert: histogram per chunk,
 * exclusive scan, scatter. experts: (T, k) i32 with ids in [0, E) (clamped on the GPU).
 */
export function moeDispatch (experts: Tensor, E: number): MoeDispatch {
  const op = 'moeDispatch'
  const be = backendOf(op, experts)
  expectDType(op, 'experts', experts, 'i32')
  expectRank(op, 'experts', experts, 2)
  expectCount(op, `E (for experts ${shapeString(experts.shape)})`, E, 1)
  const n = experts.numel
  if (isCpu(be)) {
    expectIndices(op, 'experts', experts.data, E)
    const r = twin.moeDispatch(i32s(experts), E)
    return { order: cpu.wrap(r.order, [n], 'i32'), slotRow: cpu.wrap(r.slotRow, [n], 'i32'), offsets: cpu.wrap(r.offsets, [E + 1], 'i32') }
  }
  const g = be as GpuBackend
  const order = g.empty([n], 'i32')
  const slotRow = g.empty([n], 'i32')
  if (n === 0) return { order, slotRow, offsets: g.zeros([E + 1], 'i32') }
  const offsets = g.empty([E + 1], 'i32')
  const nChunks = groups(n, DISPATCH_WG)
  const counts = g.empty([E, nChunks], 'u32')
  const bind = { experts, counts, order, slotRow, offsets }
  const u = { n, E, nChunks }
  g.run(DISPATCH_COUNT, DISPATCH_VARIANT, bind, u, g.grid1d(nChunks))
  g.run(DISPATCH_SCAN, DISPATCH_VARIANT, bind, u, [1])
  g.run(DISPATCH_SCATTER, DISPATCH_VARIANT, bind, u, g.grid1d(nChunks))
  counts.dispose() // the pool reuses it only after this batch is submitted
  return { order, slotRow, offsets }
}

// ---- gather ----

/** xs[r] = x[⌊order[r] / k⌋]: token rows copied into expert order. x: (T, C), order: (T·k) i32 → (T·k, C). */
export function moeGather (x: Tensor, order: Tensor, k: number): Tensor {
  const op = 'moeGather'
  const be = backendOf(op, x, order)
  expectDType(op, 'x', x, 'f32')
  expectDType(op, 'order', order, 'i32')
  expectRank(op, 'x', x, 2)
  expectCount(op, 'k', k, 1)
  const [T, C] = x.shape
  const N = T * k
  expectShape(op, `order (for x ${shapeString(x.shape)}, k=${k})`, order, [N])
  if (isCpu(be)) {
    expectIndices(op, 'order', order.data, N)
    return cpu.wrap(twin.moeGather(f32s(x), i32s(order), C, k), [N, C])
  }
  const g = be as GpuBackend
  const xs = g.empty([N, C])
  g.run(GATHER_ROWS, FLAT_VARIANT, { src: x, idx: order, dst: xs }, { rows: N, srcRows: T, C, k }, g.grid1d(groups(N * C, FLAT_WG)))
  return xs
}

/** dx[t] = Σ_j dxs[slotRow[t·k + j]] (j ascending, no atomics). dxs: (T·k, C), slotRow: (T·k) i32 → (T, C). */
export function moeGatherBackward (dxs: Tensor, slotRow: Tensor, T: number, k: number): Tensor {
  const op = 'moeGatherBackward'
  const be = backendOf(op, dxs, slotRow)
  expectDType(op, 'dxs', dxs, 'f32')
  expectDType(op, 'slotRow', slotRow, 'i32')
  expectCount(op, 'T', T, 0)
  expectCount(op, 'k', k, 1)
  expectRank(op, 'dxs', dxs, 2)
  const N = T * k
  const C = dxs.shape[1]
  expectShape(op, `dxs (for T=${T}, k=${k})`, dxs, [N, C])
  expectShape(op, `slotRow (for T=${T}, k=${k})`, slotRow, [N])
  if (isCpu(be)) {
    expectIndices(op, 'slotRow', slotRow.data, N)
    return cpu.wrap(twin.moeGatherBackward(f32s(dxs), i32s(slotRow), T, C, k), [T, C])
  }
  const g = be as GpuBackend
  const dx = g.empty([T, C])
  g.run(SUM_ROWS, FLAT_VARIANT, { src: dxs, idx: slotRow, dst: dx }, { rows: T, srcRows: N, C, k }, g.grid1d(groups(T * C, FLAT_WG)))
  return dx
}

// ---- expert FFN ----

interface FfnDims { N: number, C: number, I: number, E: number }

/** Weights in any weight dtype (`weights: 'any'`) or f32 only (the backward). */
function checkFfn (op: string, xs: Tensor, offsets: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, weights: 'f32' | 'any' = 'f32'): FfnDims {
  expectDType(op, 'xs', xs, 'f32')
  for (const [name, t] of [['w1', w1], ['w3', w3], ['w2', w2]] as const) {
    if (weights === 'f32' && t.dtype !== 'f32' && isWeightDType(t.dtype)) throw new ShapeError(op, `${name} is ${t.dtype}: quantized weights are for inference (train f32 weights)`)
    if (weights === 'f32') expectDType(op, name, t, 'f32')
    else weightType(op, name, t.dtype)
  }
  expectDType(op, 'offsets', offsets, 'i32')
  expectRank(op, 'xs', xs, 2)
  expectRank(op, 'w1', w1, 3)
  const [N, C] = xs.shape
  const [E, I, C1] = w1.shape
  if (C1 !== C) throw new ShapeError(op, `w1 ${shapeString(w1.shape)} must be (E, I, C=${C}) for xs ${shapeString(xs.shape)}`)
  if (E < 1) throw new ShapeError(op, `w1 ${shapeString(w1.shape)} holds no experts`)
  expectShape(op, `w3 (like w1 ${shapeString(w1.shape)})`, w3, [E, I, C])
  expectShape(op, `w2 (for w1 ${shapeString(w1.shape)})`, w2, [E, C, I])
  expectShape(op, `offsets (for ${E} experts)`, offsets, [E + 1])
  for (const [name, t] of [['w1', w1], ['w3', w3], ['w2', w2]] as const) {
    try { storageBytes(t.dtype, t.shape) } catch (e) { throw new ShapeError(op, `${name}: ${(e as Error).message}`) }
  }
  return { N, C, I, E }
}

/**
 * Row tiles dispatched along y. Only non-empty experts add a partial tile, and at most min(E, N)
 * experts are non-empty, so Σ_e ⌈n_e / BM⌉ ≤ ⌊(N + min(E, N)·(BM − 1)) / BM⌋. Decode (N ≤ E)
 * launches no surplus; otherwise the few surplus workgroups exit at once.
 */
function rowTiles (N: number, E: number): number {
  const bm = FFN_TILE.bm
  return Math.floor((N + Math.min(E, N) * (bm - 1)) / bm)
}

/**
 * Grouped SwiGLU expert MLP (HF MixtralBlockSparseTop2MLP, weights in (out, in) layout stacked
 * over experts): ys[r] = w2[e]·(silu(w1[e]·xs[r]) ⊙ (w3[e]·xs[r])) for r in [offsets[e], offsets[e+1]).
 * xs: (N, C), offsets: (E + 1) i32, w1, w3: (E, I, C), w2: (E, C, I) → ys (N, C).
 * Rows outside [offsets[0], offsets[E]) belong to no local expert and get 0.
 * The weights may each be in any weight dtype (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k;
 * C and I then multiples of the block) and split into parts of whole experts.
 */
export function expertFFN (xs: Tensor, offsets: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, opts: ExpertFFNOptions = {}): Tensor {
  const op = 'expertFFN'
  const be = backendOf(op, xs, offsets, w1, w3, w2)
  const { N, C, I, E } = checkFfn(op, xs, offsets, w1, w3, w2, 'any')
  const packed = [w1, w3, w2].some(w => w.dtype !== 'f32' || w.split)
  if (isCpu(be)) {
    expectOffsets(op, i32s(offsets), N)
    if (!packed) return cpu.wrap(twin.expertFFN(f32s(xs), i32s(offsets), f32s(w1), f32s(w3), f32s(w2), N, C, I, E), [N, C])
    const w = (t: Tensor): twin.PackedWeights => ({ dtype: expectWeightDType(op, 'weight', t), bytes: bytesOf(t.data) })
    return cpu.wrap(twin.expertFFNWeights(f32s(xs), i32s(offsets), w(w1), w(w3), w(w2), N, C, I, E), [N, C])
  }
  const g = be as GpuBackend
  if (packed) return expertFFNPacked(g, xs, offsets, w1, w3, w2, { N, C, I, E }, opts.kernel ?? 'auto')
  const ys = g.zeros([N, C])
  const h = g.empty([N, I])
  const u = { N, C, I, E }
  g.run(FFN_UP, FFN_VARIANT, { xs, offsets, w1, w3, h }, u, [groups(I, FFN_TILE.bn), rowTiles(N, E)])
  g.run(FFN_DOWN, FFN_VARIANT, { h, offsets, w2, ys }, u, [groups(C, FFN_TILE.bn), rowTiles(N, E)])
  h.dispose()
  return ys
}

/**
 * expertFFN on weights in a file encoding or split: gate a = xs·w1ᵀ and up b = xs·w3ᵀ (N, I), h =
 * silu(a) ⊙ b, ys = h·w2ᵀ (N, C); each GEMM runs once per row part of its weight, with that
 * part's slice of the offsets (its experts' rows).
 */
function expertFFNPacked (g: GpuBackend, xs: Tensor, offsets: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, d: FfnDims, kernel: 'auto' | 'tiled' | 'rows'): Tensor {
  const rows = kernel === 'rows' || (kernel === 'auto' && g.info.software && d.N <= FFN_ROWS_MAX_N)
  const grouped = (x: Tensor, w: Tensor, out: Tensor, K: number, Nout: number): void => {
    const variant = rows ? ffnQuantRowsVariant(w.dtype) : ffnQuantVariant(w.dtype)
    for (const p of rowParts(w)) {
      const offs = p.rows === d.E ? offsets : g.empty([p.rows + 1], 'i32')
      if (offs !== offsets) g.copy(offsets, offs, p.row0 * 4, 0, (p.rows + 1) * 4)
      const u = { N: d.N, K, Nout, E: p.rows }
      if (rows) g.run(FFN_QUANT_ROWS, variant, { x, offsets: offs, w: p.t, out }, u, g.grid1d(groups(d.N * Nout, FFN_ROWS_WG)))
      else g.run(FFN_QUANT, variant, { x, offsets: offs, w: p.t, out }, u, [groups(Nout, FFN_TILE.bn), rowTiles(d.N, p.rows)])
      if (offs !== offsets) offs.dispose() // the pool reuses it only after this batch is submitted
    }
  }
  const a = g.zeros([d.N, d.I])
  const b = g.zeros([d.N, d.I])
  grouped(xs, w1, a, d.C, d.I)
  grouped(xs, w3, b, d.C, d.I)
  const h = swiglu(a, b)
  a.dispose()
  b.dispose()
  const ys = g.zeros([d.N, d.C])
  grouped(h, w2, ys, d.I, d.C)
  h.dispose()
  return ys
}

export interface ExpertFFNOptions {
  /**
   * Weights in a file encoding or split: 'tiled' (shared tiles, barriers) or 'rows' (one thread
   * per output, no workgroup memory: software adapters). For tests and benchmarks.
   * @default 'auto': 'rows' on software adapters for up to 8 rows, else 'tiled'
   */
  kernel?: 'auto' | 'tiled' | 'rows'
}

export interface ExpertFFNGrads {
  dxs: Tensor // (N, C)
  dw1: Tensor // (E, I, C)
  dw3: Tensor // (E, I, C)
  dw2: Tensor // (E, C, I)
}

/**
 * Gradients of Σ dys ⊙ expertFFN(xs, offsets, w1, w3, w2). The hidden activations are
 * recomputed (not stored by the forward). Deterministic: every weight-gradient element is one
 * thread's serial sum over its expert's rows, in row order.
 */
export function expertFFNBackward (xs: Tensor, offsets: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, dys: Tensor): ExpertFFNGrads {
  const op = 'expertFFNBackward'
  const be = backendOf(op, xs, offsets, w1, w3, w2, dys)
  const { N, C, I, E } = checkFfn(op, xs, offsets, w1, w3, w2)
  expectDType(op, 'dys', dys, 'f32')
  expectShape(op, `dys (like xs ${shapeString(xs.shape)})`, dys, [N, C])
  if (isCpu(be)) {
    expectOffsets(op, i32s(offsets), N)
    const r = twin.expertFFNBackward(f32s(xs), i32s(offsets), f32s(w1), f32s(w3), f32s(w2), f32s(dys), N, C, I, E)
    return { dxs: cpu.wrap(r.dxs, [N, C]), dw1: cpu.wrap(r.dw1, [E, I, C]), dw3: cpu.wrap(r.dw3, [E, I, C]), dw2: cpu.wrap(r.dw2, [E, C, I]) }
  }
  const g = be as GpuBackend
  const hg = g.empty([3, N, I]) // [h; da; db]
  const dxs = g.zeros([N, C])
  const dw1 = g.empty([E, I, C])
  const dw3 = g.empty([E, I, C])
  const dw2 = g.empty([E, C, I])
  const u = { N, C, I, E }
  g.run(FFN_BACKWARD_HIDDEN, FFN_VARIANT, { xs, dys, offsets, w1, w3, w2, hg }, u, [groups(I, FFN_TILE.bn), rowTiles(N, E)])
  g.run(FFN_BACKWARD_DX, FFN_VARIANT, { hg, offsets, w1, w3, dxs }, u, [groups(C, FFN_TILE.bn), rowTiles(N, E)])
  const NI = N * I
  const dw = FFN_DW_TILE
  g.run(FFN_BACKWARD_DW, FFN_DW_VARIANT, { lhs: hg, rhs: xs, offsets, out: dw1 }, { N, M: I, Nc: C, E, lhsOff: NI, rhsOff: 0 }, [groups(C, dw.bn), groups(I, dw.bm), E])
  g.run(FFN_BACKWARD_DW, FFN_DW_VARIANT, { lhs: hg, rhs: xs, offsets, out: dw3 }, { N, M: I, Nc: C, E, lhsOff: 2 * NI, rhsOff: 0 }, [groups(C, dw.bn), groups(I, dw.bm), E])
  g.run(FFN_BACKWARD_DW, FFN_DW_VARIANT, { lhs: dys, rhs: hg, offsets, out: dw2 }, { N, M: C, Nc: I, E, lhsOff: 0, rhsOff: 0 }, [groups(I, dw.bn), groups(C, dw.bm), E])
  hg.dispose()
  return { dxs, dw1, dw3, dw2 }
}

// ---- combine ----

function checkCombine (op: string, ys: Tensor, slotRow: Tensor, weights: Tensor): { T: number, k: number, N: number, C: number } {
  expectDType(op, 'ys', ys, 'f32')
  expectDType(op, 'slotRow', slotRow, 'i32')
  expectDType(op, 'weights', weights, 'f32')
  expectRank(op, 'ys', ys, 2)
  expectRank(op, 'weights', weights, 2)
  const [T, k] = weights.shape
  const N = T * k
  const C = ys.shape[1]
  expectShape(op, `ys (for weights ${shapeString(weights.shape)})`, ys, [N, C])
  expectShape(op, `slotRow (for weights ${shapeString(weights.shape)})`, slotRow, [N])
  return { T, k, N, C }
}

/** out[t] = Σ_j weights[t, j]·ys[slotRow[t·k + j]] (j ascending). ys: (T·k, C), slotRow: (T·k) i32, weights: (T, k) → (T, C). */
export function moeCombine (ys: Tensor, slotRow: Tensor, weights: Tensor): Tensor {
  const op = 'moeCombine'
  const be = backendOf(op, ys, slotRow, weights)
  const { T, k, N, C } = checkCombine(op, ys, slotRow, weights)
  if (isCpu(be)) {
    expectIndices(op, 'slotRow', slotRow.data, N)
    return cpu.wrap(twin.moeCombine(f32s(ys), i32s(slotRow), f32s(weights), T, C, k), [T, C])
  }
  const g = be as GpuBackend
  const out = g.empty([T, C])
  g.run(COMBINE, FLAT_VARIANT, { ys, slotRow, weights, out }, { T, C, k, N }, g.grid1d(groups(T * C, FLAT_WG)))
  return out
}

export interface CombineGrads {
  dys: Tensor // (T·k, C)
  dWeights: Tensor // (T, k)
}

/**
 * dys[slotRow[s]] = weights[s]·dout[t];  dWeights[s] = dout[t]·ys[slotRow[s]]   (s = t·k + j).
 * slotRow must be a permutation of [0, T·k) (as moeDispatch makes it) for dys to be fully written.
 */
export function moeCombineBackward (ys: Tensor, slotRow: Tensor, weights: Tensor, dout: Tensor): CombineGrads {
  const op = 'moeCombineBackward'
  const be = backendOf(op, ys, slotRow, weights, dout)
  const { T, k, N, C } = checkCombine(op, ys, slotRow, weights)
  expectDType(op, 'dout', dout, 'f32')
  expectShape(op, `dout (for weights ${shapeString(weights.shape)})`, dout, [T, C])
  if (isCpu(be)) {
    expectIndices(op, 'slotRow', slotRow.data, N)
    const r = twin.moeCombineBackward(f32s(ys), i32s(slotRow), f32s(weights), f32s(dout), T, C, k)
    return { dys: cpu.wrap(r.dys, [N, C]), dWeights: cpu.wrap(r.dWeights, [T, k]) }
  }
  const g = be as GpuBackend
  const dys = g.empty([N, C])
  const dWeights = g.empty([T, k])
  const bind = { ys, slotRow, weights, dout, dys, dweights: dWeights }
  g.run(COMBINE_BACKWARD_DYS, FLAT_VARIANT, bind, { T, C, k, N }, g.grid1d(groups(N * C, FLAT_WG)))
  g.run(COMBINE_BACKWARD_DWEIGHTS, PER_ROW_VARIANT, bind, { T, C, k, N }, g.grid1d(groups(N, PER_ROW_WG)))
  return { dys, dWeights }
}
