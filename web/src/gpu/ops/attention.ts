import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/attention.ts'
import { f16ToF32 } from '../cpu/quant.ts'
import { shapeString } from '../dtype.ts'
import { GpuArgumentError, ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, expectShape, isCpu } from './util.ts'

/*
 * Kernel family (shaders/attention*.wgsl), picked per call by `kernel: 'auto'`:
 * - hardware GPUs: 'prefill' (flash-attention forward, K/V tiles in workgroup memory) for T > 4,
 *   'decode' (kv length split over a workgroup's threads, and over workgroups for long caches,
 *   merged by attention_combine) for T ≤ 4; backward: attention_bwd_dq + attention_bwd_dkdv.
 * - software adapters (SwiftShader): 'rows', one thread per row and no workgroup memory. Dawn
 *   zero-initialises workgroup memory and on SwiftShader that makes pipeline creation cost
 *   ~0.85 ms of CPU per 4 bytes declared (16 KiB → ~3.5 s per pipeline, measured); the row
 *   kernels compile in ~0.1 s and run as fast there (CPU time per call, T = S = 256, Hq 4,
 *   Hkv 2, D 64: rows 211 ms, prefill 242 ms; decode kvLen 2048: rows 33 ms, decode 49 ms).
 * Tests run every kernel on every shape; `kernel` forces one.
 *
 * KV cache in f16 (adapters with `shader-f16`): the forward kernels read k/v as element type T,
 * compiled f32 or f16 by the variant (`kvVariant`), and widen each value to f32 as they load it;
 * scores, softmax and sums stay f32. kvWrite rounds new rows to f16 (attention_kv_write.wgsl).
 * The backward takes f32 k/v only (training keeps no cache).
 */

/**
 * GPU vs CPU twin (f64 definition), for q, k, v, dout uniform in ±1 and D ≤ 256. The kernels
 * sum in f32 in tile order; the backward compounds the forward's error through lse.
 * Measured worst |err| on SwiftShader (T = S up to 128, D 64–256, decode at kvLen 1024):
 * out 1.6e-7, lse 1.4e-6 (lse ≈ 7), dq 1.3e-7, dk 3.0e-7, dv 1.4e-6 (|dv| up to ~10).
 */
export const TOLERANCE = {
  attention: { atol: 1e-6, rtol: 1e-5 }, //          out and lse
  attentionBackward: { atol: 5e-6, rtol: 5e-5 }, //  dq, dk, dv
  kvWrite: { atol: 0, rtol: 0 }, //                  a copy
  /**
   * kvWrite into an f16 cache, compared as decoded values: WGSL lets f32 → f16 round to either
   * neighbour, so one f16 ulp (2^-10 relative; 2^-24 absolute for subnormals).
   */
  kvWriteF16: { atol: 2 ** -24, rtol: 2 ** -10 }
} as const

/** Largest head dim the kernels' tiles are sized for (Llama/Qwen/Mistral use 64–256). */
export const MAX_HEAD_DIM = 256

/**
 * Workgroup memory every tile plan fits in: 16 KiB is WebGPU's guaranteed
 * maxComputeWorkgroupStorageSize, so every device (and every peer of a swarm) runs the same
 * tiling, hence the same summation order.
 */
const WORKGROUP_BYTES = 16384
const WORKGROUP_FLOATS = WORKGROUP_BYTES / 4
/** Threads per workgroup of every attention kernel. */
const WG = 64
/** Dims one thread accumulates in the row-parallel kernels: bounds per-thread registers. */
const MAX_DPT = 16
/** Most keys (or queries) per tile: beyond this the per-tile loops only add registers. */
const MAX_TILE = 32
/** `kernel: 'auto'` uses the decode kernel up to this many query rows T. */
const DECODE_MAX_T = 4
/** Query rows (t, g) one decode workgroup carries: its per-thread accumulators are ROWS·⌈D/64⌉. */
const DECODE_MAX_ROWS = 8
/** Decode splits the kv length over workgroups until about this many run (fills a GPU's cores). */
const DECODE_TARGET_WORKGROUPS = 128
/** Fewest keys per decode split: below this the merge pass costs more than the parallelism gains. */
const DECODE_MIN_SPLIT_KEYS = 256
/** Threads per workgroup of the flat merge kernel. */
const COMBINE_WG = 256

// ---- tile plans (CONTRIBUTING.md STYLE 5): each returns the variant and the decisions its dispatch uses ----

/**
 * Row-parallel layout: LANES threads per row (a power of two), DPT dims each, DP = padded row,
 * RS = DP + 1 the row stride in workgroup memory (odd: no bank conflicts between rows).
 */
function lanesFor (D: number): { LANES: number, DPT: number, DP: number, RS: number } {
  let LANES = 1
  while (Math.ceil(D / LANES) > MAX_DPT) LANES *= 2
  const DPT = Math.max(1, Math.ceil(D / LANES))
  return { LANES, DPT, DP: LANES * DPT, RS: LANES * DPT + 1 }
}

function checkFits (kernel: string, floats: number): void {
  if (floats > WORKGROUP_FLOATS) throw new GpuArgumentError(`attention plan ${kernel}: ${floats * 4} bytes of workgroup memory exceed ${WORKGROUP_BYTES}`)
}

export interface PrefillPlan { variant: Variant, BQ: number, BK: number, LANES: number }

/** Forward prefill and backward dq: BQ query rows per workgroup, BK keys per tile. */
export function prefillPlan (D: number, kernel: 'attn_prefill' | 'attn_bwd_dq'): PrefillPlan {
  const { LANES, DPT, DP, RS } = lanesFor(D)
  const BQ = WG / LANES
  // prefill: q_s (BQ·RS) + k_s, v_s (2·BK·RS) + s_s (BQ·BK); dq adds do_s (BQ·RS).
  const qRows = kernel === 'attn_prefill' ? 1 : 2
  const BK = Math.min(MAX_TILE, Math.floor((WORKGROUP_FLOATS - qRows * BQ * RS) / (2 * RS + BQ)))
  checkFits(kernel, qRows * BQ * RS + BK * (2 * RS + BQ))
  return {
    variant: { key: `d${D}-l${LANES}-bq${BQ}-bk${BK}`, workgroupSize: [WG], constants: { HEAD_DIM: D, LANES, DPT, DP, RS, BQ, BK } },
    BQ, BK, LANES
  }
}

export interface DecodePlan { variant: Variant, ROWS: number }

/** Forward decode: ROWS query rows (of T·G) per workgroup, WG keys per tile. */
export function decodePlan (D: number, rows: number): DecodePlan {
  let ROWS = 1
  while (ROWS < Math.min(rows, DECODE_MAX_ROWS)) ROWS *= 2
  const DPT = Math.max(1, Math.ceil(D / WG))
  checkFits('attn_decode', ROWS * D + 2 * ROWS * WG)
  return { variant: { key: `d${D}-r${ROWS}`, workgroupSize: [WG], constants: { HEAD_DIM: D, ROWS, DPT } }, ROWS }
}

/**
 * How many workgroups share the kv length in decode, and the keys each takes. `keys` is the most
 * keys any query row sees (≥ 1); `forced` overrides the heuristic (tests). Heuristic chunks are a
 * multiple of the tile, WG keys.
 */
export function decodeSplit (keys: number, workgroups: number, forced?: number): { splits: number, chunk: number } {
  let chunk: number
  if (forced !== undefined) {
    chunk = Math.max(1, Math.ceil(keys / forced))
  } else {
    const want = Math.max(1, Math.min(Math.floor(keys / DECODE_MIN_SPLIT_KEYS), Math.ceil(DECODE_TARGET_WORKGROUPS / workgroups)))
    chunk = Math.ceil(Math.ceil(keys / want) / WG) * WG
  }
  return { splits: Math.max(1, Math.ceil(keys / chunk)), chunk }
}

export interface DkdvPlan { variant: Variant, BKB: number, BQB: number }

/** Backward dk/dv: BKB key rows per workgroup, BQB query rows per tile. */
export function dkdvPlan (D: number): DkdvPlan {
  const { LANES, DPT, DP, RS } = lanesFor(D)
  const BKB = WG / LANES
  // k_s, v_s (2·BKB·RS) + q_s, do_s (2·BQB·RS) + lse_s, dl_s (2·BQB) + p_s, ds_s (2·BKB·BQB)
  const BQB = Math.min(MAX_TILE, Math.floor((WORKGROUP_FLOATS - 2 * BKB * RS) / (2 * RS + 2 + 2 * BKB)))
  checkFits('attn_bwd_dkdv', 2 * BKB * RS + BQB * (2 * RS + 2 + 2 * BKB))
  return { variant: { key: `d${D}-l${LANES}-bk${BKB}-bq${BQB}`, workgroupSize: [WG], constants: { HEAD_DIM: D, LANES, DPT, DP, RS, BKB, BQB } }, BKB, BQB }
}

// ---- declarations ----

const SHAPE_UNIFORMS = [
  { name: 'T', type: 'u32' }, //       query rows
  { name: 'S', type: 'u32' }, //       k/v capacity rows
  { name: 'kvLen', type: 'u32' }, //   valid k/v rows
  { name: 'qOffset', type: 'u32' }, // absolute position of query row 0 (0 when not causal)
  { name: 'Hq', type: 'u32' }, //      query heads
  { name: 'Hkv', type: 'u32' }, //     kv heads
  { name: 'G', type: 'u32' }, //       Hq / Hkv
  { name: 'causal', type: 'u32' }, //  1: key j visible to query t iff j ≤ qOffset + t
  { name: 'scale', type: 'f32' }, //   multiplies q·k
  { name: 'chunk', type: 'u32' } //    decode: keys per kv split (others: unused)
] as const

const FORWARD_BINDINGS = [
  { name: 'q', type: 'f32' }, //   (T, Hq, D)
  { name: 'k', type: 'T' }, //     (S, Hkv, D) f32, or f16 for an f16 KV cache (see kvVariant)
  { name: 'v', type: 'T' }, //     (S, Hkv, D) like k
  { name: 'out', type: 'f32', access: 'read_write' }, // (T, Hq, D)
  { name: 'lse', type: 'f32', access: 'read_write' } //  (Hq, T)
] as const

const PREFILL = defineKernel({ name: 'attn_prefill', shader: 'attention', entry: 'attn_prefill', bindings: FORWARD_BINDINGS, uniforms: SHAPE_UNIFORMS })
/** Decode writes (splits, T, Hq, D) and (splits, Hq, T) into out and lse; splits = 1 is final. */
const DECODE = defineKernel({ name: 'attn_decode', shader: 'attention_decode', entry: 'attn_decode', bindings: FORWARD_BINDINGS, uniforms: SHAPE_UNIFORMS })

/** Software adapters: one thread per query row, no workgroup memory (same bindings as decode). */
const ROWS_FWD = defineKernel({ name: 'attn_rows', shader: 'attention_rows', entry: 'attn_rows', bindings: FORWARD_BINDINGS, uniforms: SHAPE_UNIFORMS })

const COMBINE = defineKernel({
  name: 'attn_combine', shader: 'attention_combine', entry: 'attn_combine',
  bindings: [
    { name: 'part_out', type: 'f32' }, // (splits, T, Hq, D)
    { name: 'part_lse', type: 'f32' }, // (splits, Hq, T)
    { name: 'out', type: 'f32', access: 'read_write' }, // (T, Hq, D)
    { name: 'lse', type: 'f32', access: 'read_write' } //  (Hq, T)
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, //      T·Hq·D
    { name: 'D', type: 'u32' }, //      head dim
    { name: 'T', type: 'u32' }, //      query rows
    { name: 'Hq', type: 'u32' }, //     query heads
    { name: 'splits', type: 'u32' } //  kv splits
  ]
})
const COMBINE_VARIANT: Variant = { key: `wg${COMBINE_WG}`, workgroupSize: [COMBINE_WG] }

/** Rounds f32 rows into an f16 cache (attention_kv_write.wgsl); needs `shader-f16`. */
const KV_WRITE = defineKernel({
  name: 'kv_write', shader: 'attention_kv_write', entry: 'kv_write',
  bindings: [
    { name: 'x', type: 'f32' }, // (T, Hkv, D)
    { name: 'cache', type: 'T', access: 'read_write' } // (S, Hkv, D) f16
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, //     values to write: T·Hkv·D
    { name: 'offset', type: 'u32' } // first cache element written: pos·Hkv·D
  ]
})
const KV_WRITE_WG = 256
const KV_WRITE_VARIANT: Variant = { key: `f16-wg${KV_WRITE_WG}`, workgroupSize: [KV_WRITE_WG], elem: 'f16' }

/** A forward variant reading k/v as f16 (an f16 KV cache) when `kvF16`, else as it is. */
export function kvVariant (v: Variant, kvF16: boolean): Variant {
  return kvF16 ? { ...v, key: `${v.key}-kv16`, elem: 'f16' } : v
}

const BWD_DQ_BINDINGS = [
    { name: 'q', type: 'f32' }, //    (T, Hq, D)
    { name: 'k', type: 'f32' }, //    (S, Hkv, D)
    { name: 'v', type: 'f32' }, //    (S, Hkv, D)
    { name: 'out', type: 'f32' }, //  (T, Hq, D) forward output
    { name: 'lse', type: 'f32' }, //  (Hq, T) forward log-sum-exp
    { name: 'dout', type: 'f32' }, // (T, Hq, D)
    { name: 'dq', type: 'f32', access: 'read_write' }, //   (T, Hq, D)
    { name: 'delta', type: 'f32', access: 'read_write' } // (Hq, T) rowsum(dout ⊙ out)
] as const
const BWD_DQ = defineKernel({ name: 'attn_bwd_dq', shader: 'attention_bwd_dq', entry: 'attn_bwd_dq', bindings: BWD_DQ_BINDINGS, uniforms: SHAPE_UNIFORMS })
/** Software adapters: one thread per query row (attention_bwd_rows_dq.wgsl). */
const BWD_ROWS_DQ = defineKernel({ name: 'attn_bwd_rows_dq', shader: 'attention_bwd_rows_dq', entry: 'attn_bwd_rows_dq', bindings: BWD_DQ_BINDINGS, uniforms: SHAPE_UNIFORMS })

const BWD_DKDV_BINDINGS = [
    { name: 'q', type: 'f32' }, //     (T, Hq, D)
    { name: 'k', type: 'f32' }, //     (S, Hkv, D)
    { name: 'v', type: 'f32' }, //     (S, Hkv, D)
    { name: 'lse', type: 'f32' }, //   (Hq, T)
    { name: 'delta', type: 'f32' }, // (Hq, T) from attn_bwd_dq
    { name: 'dout', type: 'f32' }, //  (T, Hq, D)
    { name: 'dk', type: 'f32', access: 'read_write' }, // (S, Hkv, D)
    { name: 'dv', type: 'f32', access: 'read_write' } //  (S, Hkv, D)
] as const
const BWD_DKDV = defineKernel({ name: 'attn_bwd_dkdv', shader: 'attention_bwd_dkdv', entry: 'attn_bwd_dkdv', bindings: BWD_DKDV_BINDINGS, uniforms: SHAPE_UNIFORMS })
/** Software adapters: one thread per key row (attention_bwd_rows_dkdv.wgsl). */
const BWD_ROWS_DKDV = defineKernel({ name: 'attn_bwd_rows_dkdv', shader: 'attention_bwd_rows_dkdv', entry: 'attn_bwd_rows_dkdv', bindings: BWD_DKDV_BINDINGS, uniforms: SHAPE_UNIFORMS })

// ---- validation ----

export interface AttentionOptions {
  /** Absolute position of query row 0: chunked prefill continuing a cache. @default kvLen − T */
  qOffset?: number
  /** Valid rows of k and v (a KV cache of capacity S); later rows are never read. @default S */
  kvLen?: number
  /** Multiplies q·k. @default 1/√D */
  scale?: number
  /** Query t (at position qOffset + t) sees keys j ≤ qOffset + t. @default true */
  causal?: boolean
  /**
   * Forward kernel: 'decode' splits the kv length over a workgroup's threads (few query rows),
   * 'prefill' tiles K/V in workgroup memory for many query rows, 'rows' runs one thread per query
   * row without workgroup memory (software adapters). For tests and benchmarks.
   * @default 'auto': 'rows' on software adapters, else 'decode' for T ≤ 4 and 'prefill' above
   */
  kernel?: 'auto' | 'prefill' | 'decode' | 'rows'
  /** 'decode' and 'rows' only: split the kv length over this many workgroups. For tests. @default by size */
  decodeSplits?: number
}

type Resolved = twin.AttnDims

/** `kv: 'f16'` lets k and v be an f16 cache (both the same dtype); the backward passes 'f32'. */
/** For error messages only, built when one is thrown: resolve runs for every attention call (each session, layer and token). */
function shapesOf (q: Tensor, k: Tensor, v: Tensor): string {
  return `q ${shapeString(q.shape)}, k ${shapeString(k.shape)}, v ${shapeString(v.shape)}`
}

function resolve (op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, kv: 'f32' | 'f16' = 'f32'): Resolved {
  expectRank(op, 'q (T, Hq, D)', q, 3)
  expectRank(op, 'k (S, Hkv, D)', k, 3)
  expectRank(op, 'v (S, Hkv, D)', v, 3)
  expectDType(op, 'q', q, 'f32')
  if (kv === 'f32') for (const [name, t] of [['k', k], ['v', v]] as const) expectDType(op, name, t, 'f32')
  else {
    expectDType(op, 'k', k, 'f32', 'f16')
    if (v.dtype !== k.dtype) throw new ShapeError(op, `k and v must share a dtype (an f32 or an f16 KV cache), got k ${k.dtype} and v ${v.dtype}`)
  }
  const [T, Hq, D] = q.shape
  const [S, Hkv] = k.shape
  if (k.shape[2] !== D || v.shape[0] !== S || v.shape[1] !== Hkv || v.shape[2] !== D) throw new ShapeError(op, `k and v must be (S, Hkv, D) with q's D: ${shapesOf(q, k, v)}`)
  if (Hkv === 0 || Hq % Hkv !== 0) throw new ShapeError(op, `query heads Hq must be a multiple of kv heads Hkv: ${shapesOf(q, k, v)}`)
  if (D === 0 || D > MAX_HEAD_DIM) throw new ShapeError(op, `head dim D must be in [1, ${MAX_HEAD_DIM}]: ${shapesOf(q, k, v)}`)
  const kvLen = opts.kvLen ?? S
  if (!Number.isInteger(kvLen) || kvLen < 0 || kvLen > S) throw new ShapeError(op, `kvLen ${kvLen} must be an integer in [0, S = ${S}]: ${shapesOf(q, k, v)}`)
  if (T > 0 && kvLen === 0) throw new ShapeError(op, `kvLen must be ≥ 1 when there are queries: ${shapesOf(q, k, v)}`)
  const causal = opts.causal ?? true
  const qOffset = causal ? opts.qOffset ?? kvLen - T : 0
  if (causal && (!Number.isInteger(qOffset) || qOffset < 0 || qOffset + T > kvLen)) {
    throw new ShapeError(op, `qOffset ${qOffset} with T = ${T} must satisfy 0 ≤ qOffset and qOffset + T ≤ kvLen = ${kvLen} (each query's own key must be in the cache): ${shapesOf(q, k, v)}`)
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D)
  if (!Number.isFinite(scale)) throw new ShapeError(op, `scale must be finite, got ${scale}`)
  return { T, S, Hq, Hkv, D, kvLen, qOffset, scale, causal }
}

function uniforms (r: Resolved): Record<string, number> {
  return { T: r.T, S: r.S, kvLen: r.kvLen, qOffset: r.qOffset, Hq: r.Hq, Hkv: r.Hkv, G: r.Hq / r.Hkv, causal: r.causal ? 1 : 0, scale: r.scale, chunk: 0 }
}

// ---- ops ----

/**
 * Causal grouped-query attention: q (T, Hq, D), k/v (S, Hkv, D) → out (T, Hq, D) and
 * lse (Hq, T), the log-sum-exp of the scaled scores each query row saw (for the backward).
 * Query t sits at position qOffset + t and sees keys [0, qOffset + t]; only the first kvLen rows
 * of k/v are read. Head h uses kv head ⌊h·Hkv/Hq⌋.
 */
export function attention (q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): { out: Tensor, lse: Tensor } {
  const op = 'attention'
  const be = backendOf(op, q, k, v)
  const r = resolve(op, q, k, v, opts, 'f16')
  const kvF16 = k.dtype === 'f16'
  if (isCpu(be)) {
    const widen = (t: Tensor): Float32Array => kvF16 ? Float32Array.from(t.data as Uint16Array, f16ToF32) : t.data as Float32Array
    const { out, lse } = twin.attention(q.data as Float32Array, widen(k), widen(v), r)
    return { out: cpu.wrap(Float32Array.from(out), q.shape), lse: cpu.wrap(Float32Array.from(lse), [r.Hq, r.T]) }
  }
  const g = be as GpuBackend
  if (kvF16) expectF16(op, g)
  const out = g.empty(q.shape)
  const lse = g.empty([r.Hq, r.T])
  const rows = r.T * (r.Hq / r.Hkv)
  if (rows === 0) return { out, lse }
  const kernel = opts.kernel ?? 'auto'
  if (opts.decodeSplits !== undefined && !(Number.isInteger(opts.decodeSplits) && opts.decodeSplits >= 1)) throw new ShapeError(op, `decodeSplits must be a positive integer, got ${opts.decodeSplits}`)
  const pick = kernel !== 'auto' ? kernel : g.info.software ? 'rows' : r.T <= DECODE_MAX_T ? 'decode' : 'prefill'
  if (pick === 'prefill') {
    const plan = prefillPlan(r.D, 'attn_prefill')
    g.run(PREFILL, kvVariant(plan.variant, kvF16), { q, k, v, out, lse }, uniforms(r), [Math.ceil(rows / plan.BQ), r.Hkv])
    return { out, lse }
  }
  // decode and rows: the kv length may be split over workgroups (grid z), merged by COMBINE.
  const keys = r.causal ? r.qOffset + r.T : r.kvLen // the most keys a query row sees
  let run: (o: Tensor, l: Tensor, chunk: number, splits: number) => void
  let workgroups: number
  if (pick === 'decode') {
    const plan = decodePlan(r.D, rows)
    const rowGroups = Math.ceil(rows / plan.ROWS)
    workgroups = rowGroups * r.Hkv
    run = (o, l, chunk, splits) => g.run(DECODE, kvVariant(plan.variant, kvF16), { q, k, v, out: o, lse: l }, { ...uniforms(r), chunk }, [rowGroups, r.Hkv, splits])
  } else {
    const variant: Variant = { key: `d${r.D}`, workgroupSize: [WG], constants: { HEAD_DIM: r.D } }
    const [gx, gy] = g.grid1d(Math.ceil((r.T * r.Hq) / WG))
    workgroups = gx * gy
    run = (o, l, chunk, splits) => g.run(ROWS_FWD, kvVariant(variant, kvF16), { q, k, v, out: o, lse: l }, { ...uniforms(r), chunk }, [gx, gy, splits])
  }
  const { splits, chunk } = decodeSplit(keys, workgroups, opts.decodeSplits)
  if (splits === 1) {
    run(out, lse, chunk, 1)
  } else {
    const partOut = g.empty([splits, r.T, r.Hq, r.D])
    const partLse = g.empty([splits, r.Hq, r.T])
    run(partOut, partLse, chunk, splits)
    const n = r.T * r.Hq * r.D
    g.run(COMBINE, COMBINE_VARIANT, { part_out: partOut, part_lse: partLse, out, lse }, { n, D: r.D, T: r.T, Hq: r.Hq, splits }, g.grid1d(Math.ceil(n / COMBINE_WG)))
    partOut.dispose()
    partLse.dispose()
  }
  return { out, lse }
}

/**
 * Gradients of attention (flash-attention-2): dq (T, Hq, D), dk and dv (S, Hkv, D), given the
 * forward's out (T, Hq, D) and lse (Hq, T). Two deterministic passes, no atomics: one over query
 * blocks (dq, and delta = rowsum(dout ⊙ out)), one over key blocks (dk, dv, summing the query
 * heads that share a kv head in a fixed order). dk/dv rows at or past kvLen are zero.
 * `opts.kernel`: 'rows' (the default on software adapters) runs one thread per row without
 * workgroup memory; any other value runs the tiled kernels.
 * The CPU path recomputes the probabilities from q and k (the definition); out and lse are checked
 * for shape only.
 */
export function attentionBackward (q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dout: Tensor, opts: AttentionOptions = {}): { dq: Tensor, dk: Tensor, dv: Tensor } {
  const op = 'attentionBackward'
  const be = backendOf(op, q, k, v, out, lse, dout)
  const r = resolve(op, q, k, v, opts)
  expectShape(op, 'out', out, q.shape)
  expectShape(op, 'dout', dout, q.shape)
  expectShape(op, 'lse (Hq, T)', lse, [r.Hq, r.T])
  for (const [name, t] of [['out', out], ['lse', lse], ['dout', dout]] as const) expectDType(op, name, t, 'f32')
  if (isCpu(be)) {
    const g = twin.attentionBackward(q.data as Float32Array, k.data as Float32Array, v.data as Float32Array, dout.data as Float32Array, r)
    return { dq: cpu.wrap(Float32Array.from(g.dq), q.shape), dk: cpu.wrap(Float32Array.from(g.dk), k.shape), dv: cpu.wrap(Float32Array.from(g.dv), v.shape) }
  }
  const g = be as GpuBackend
  const rows = r.T * (r.Hq / r.Hkv)
  if (rows === 0) return { dq: g.empty(q.shape), dk: g.zeros(k.shape), dv: g.zeros(v.shape) } // no query: zero key gradients
  const dq = g.empty(q.shape)
  const dk = g.empty(k.shape)
  const dv = g.empty(v.shape)
  const delta = g.empty([r.Hq, r.T])
  const u = uniforms(r)
  const kernel = opts.kernel ?? 'auto'
  if (kernel === 'rows' || (kernel === 'auto' && g.info.software)) {
    const variant: Variant = { key: `d${r.D}`, workgroupSize: [WG], constants: { HEAD_DIM: r.D } }
    g.run(BWD_ROWS_DQ, variant, { q, k, v, out, lse, dout, dq, delta }, u, g.grid1d(Math.ceil((r.T * r.Hq) / WG)))
    g.run(BWD_ROWS_DKDV, variant, { q, k, v, lse, delta, dout, dk, dv }, u, g.grid1d(Math.ceil((r.S * r.Hkv) / WG)))
  } else {
    const dqPlan = prefillPlan(r.D, 'attn_bwd_dq')
    g.run(BWD_DQ, dqPlan.variant, { q, k, v, out, lse, dout, dq, delta }, u, [Math.ceil(rows / dqPlan.BQ), r.Hkv])
    const kvPlan = dkdvPlan(r.D)
    g.run(BWD_DKDV, kvPlan.variant, { q, k, v, lse, delta, dout, dk, dv }, u, [Math.ceil(r.S / kvPlan.BKB), r.Hkv])
  }
  delta.dispose()
  return { dq, dk, dv }
}

/** An f16 KV cache needs the adapter's `shader-f16`; say so instead of failing to compile. */
function expectF16 (op: string, g: GpuBackend): void {
  if (!g.info.f16) throw new ShapeError(op, `an f16 KV cache needs the shader-f16 feature, which this adapter (${g.info.description !== '' ? g.info.description : g.info.device}) lacks: use an f32 cache`)
}

/**
 * Writes x (T, Hkv, D) f32 into rows [pos, pos + T) of cache (S, Hkv, D), in place (a buffer copy
 * on WebGPU, queued in order with the surrounding kernels). An f16 cache (adapters with
 * `shader-f16`) gets each value rounded to f16.
 */
export function kvWrite (cache: Tensor, x: Tensor, pos: number): void {
  const op = 'kvWrite'
  const be = backendOf(op, cache, x)
  expectRank(op, 'cache (S, Hkv, D)', cache, 3)
  expectRank(op, 'x (T, Hkv, D)', x, 3)
  expectDType(op, 'cache', cache, 'f32', 'f16')
  expectDType(op, 'x', x, 'f32')
  const [S, Hkv, D] = cache.shape
  const T = x.shape[0]
  if (x.shape[1] !== Hkv || x.shape[2] !== D) throw new ShapeError(op, `x ${shapeString(x.shape)} must match the cache's (Hkv, D) = (${Hkv}, ${D})`)
  if (!Number.isInteger(pos) || pos < 0 || pos + T > S) throw new ShapeError(op, `rows [${pos}, ${pos + T}) do not fit cache ${shapeString(cache.shape)} (x ${shapeString(x.shape)})`)
  const rowElems = Hkv * D
  if (cache.dtype === 'f16') {
    if (isCpu(be)) { twin.kvWriteF16(cache.data as Uint16Array, x.data as Float32Array, pos, rowElems); return }
    const g = be as GpuBackend
    expectF16(op, g)
    const n = T * rowElems
    g.run(KV_WRITE, KV_WRITE_VARIANT, { x, cache }, { n, offset: pos * rowElems }, g.grid1d(Math.ceil(n / KV_WRITE_WG)))
    return
  }
  if (isCpu(be)) { twin.kvWrite(cache.data as Float32Array, x.data as Float32Array, pos, rowElems); return }
  ;(be as GpuBackend).copy(x, cache, 0, pos * rowElems * 4, T * rowElems * 4)
}
