import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/matmul.ts'
import { matmulBlocked } from '../cpu/matmul-blocked.ts'
import type { GpuInfo } from '../device.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { matmulQuant } from './matmul-quant.ts'
import { backendOf, expectDType, expectRank, groups, isCpu } from './util.ts'

/**
 * GPU vs CPU twin, for inputs with |x| ≤ 1 and K ≤ 1024: the GPU sums in f32 in another order
 * than the twin (f64), so the error grows like √K·ε·Σ|a·b|; 1e-4 covers K = 1024 with margin.
 */
export const TOLERANCE = {
  matmul: { atol: 1e-4, rtol: 1e-4 },
  linear: { atol: 1e-4, rtol: 1e-4 },
  linearBackward: { atol: 1e-4, rtol: 1e-4 },
  matmulNaive: { atol: 1e-4, rtol: 1e-4 }
} as const

const MATMUL = defineKernel({
  name: 'matmul', shader: 'matmul', entry: 'matmul_regs',
  bindings: [
    { name: 'a', type: 'f32' }, //    (B, M, K) | (B, K, M)
    { name: 'b', type: 'f32' }, //    (B?, K, N) | (B?, N, K)
    { name: 'bias', type: 'f32' }, // (N), read only when HAS_BIAS
    { name: 'out', type: 'f32', access: 'read_write' } // (B, M, N)
  ],
  uniforms: [
    { name: 'M', type: 'u32' },
    { name: 'N', type: 'u32' },
    { name: 'K', type: 'u32' },
    { name: 'amS', type: 'u32' }, //     elements between rows m of op(A)
    { name: 'akS', type: 'u32' }, //     elements between columns k of op(A)
    { name: 'bkS', type: 'u32' }, //     elements between rows k of op(B)
    { name: 'bnS', type: 'u32' }, //     elements between columns n of op(B)
    { name: 'strideA', type: 'u32' }, // elements between batches of a
    { name: 'strideB', type: 'u32' }, // elements between batches of b (0: broadcast)
    { name: 'alpha', type: 'f32' }
  ]
})

/** Same op, vec4 loads (shaders/matmul_vec4.wgsl): untransposed, K % 4 = 0, N % 4 = 0. */
const MATMUL_VEC4 = defineKernel({
  name: 'matmul_vec4', shader: 'matmul_vec4', entry: 'matmul_vec4',
  bindings: [
    { name: 'a', type: 'vec4<f32>' }, // (B, M, K/4)
    { name: 'b', type: 'vec4<f32>' }, // (B?, K, N/4)
    { name: 'bias', type: 'f32' }, //    (N), read only when HAS_BIAS
    { name: 'out', type: 'f32', access: 'read_write' } // (B, M, N)
  ],
  uniforms: MATMUL.uniforms
})

const MATMUL_NAIVE = defineKernel({
  name: 'matmul_naive', shader: 'matmul_naive', entry: 'matmul_naive',
  bindings: [
    { name: 'a', type: 'f32' }, // (M, K)
    { name: 'b', type: 'f32' }, // (K, N)
    { name: 'out', type: 'f32', access: 'read_write' } // (M, N)
  ],
  uniforms: [{ name: 'M', type: 'u32' }, { name: 'N', type: 'u32' }, { name: 'K', type: 'u32' }]
})

// ---- variant builder (CONTRIBUTING.md STYLE 5) ----

/** Which entry point computes the product: shaders/matmul.wgsl (regs, tiled, gemv) or shaders/matmul_vec4.wgsl (vec4, gemv4t). */
export type MatmulKernel = 'regs' | 'vec4' | 'tiled' | 'gemv' | 'gemv4t'

/** The decisions a matmul variant bakes in; `planMatmul` picks them, tests force each. */
export interface MatmulConfig {
  kernel: MatmulKernel
  /** Threads along N; each owns `tn` adjacent columns. */
  wgX: number
  /** Threads along M (1 for gemv). */
  wgY: number
  /** Rows of C per thread: 4 or 8 for regs, 8 for vec4, 4 for tiled, 1 for gemv/gemv4t. */
  tm: 1 | 4 | 8
  /** Columns of C per thread: 4, or 8 (regs and vec4 only). @default 4 */
  tn?: 4 | 8
  /** Depth of the workgroup-memory panels (tiled only; ignored otherwise). */
  tk: number
}

/** What the builder looks at. */
export interface MatmulDimsLike {
  B: number
  M: number
  N: number
  K: number
  transA?: boolean
  transB?: boolean
}

/** The gemv4t kernel's precondition (a with M = 1 is contiguous along K whether or not transA). */
export function gemv4tAligned (d: MatmulDimsLike): boolean {
  return d.M === 1 && d.transB === true && d.K % 4 === 0
}

/** The vec4 kernel's precondition. */
export function vec4Aligned (d: MatmulDimsLike): boolean {
  return d.transA !== true && d.transB !== true && d.K % 4 === 0 && d.N % 4 === 0
}

export interface MatmulPlan {
  variant: Variant
  /** Dispatch grid (x over N, y over M, z over batches). */
  grid: [number, number, number]
  config: MatmulConfig
}

/**
 * Every configuration the builder can pick: tests run each one and CI compiles each one.
 * Chosen by measurement on SwiftShader (see BENCHMARKS.md, Kernels) and the usual shapes on
 * hardware GPUs (64×64 tiles of 4×4 per thread, 16-deep panels).
 */
export const MATMUL_CONFIGS = Object.freeze({
  /** Software, ≥ 128² outputs: 8×8 per thread, 64×64 per workgroup of 64 threads. */
  regs8x8: { kernel: 'regs', wgX: 8, wgY: 8, tm: 8, tn: 8, tk: 0 },
  /** Software, small outputs: 8×8 per thread, 64×32 per workgroup of 32 (twice the workgroups for the CPU threads). */
  regs8x8s: { kernel: 'regs', wgX: 4, wgY: 8, tm: 8, tn: 8, tk: 0 },
  /** Software, aligned untransposed operands: 8×8 per thread with vec4 loads, 4 k per step. */
  vec4: { kernel: 'vec4', wgX: 8, wgY: 8, tm: 8, tn: 8, tk: 0 },
  /** vec4 loads, 64×32 per workgroup of 32. */
  vec4s: { kernel: 'vec4', wgX: 4, wgY: 8, tm: 8, tn: 8, tk: 0 },
  /** 8 rows × 4 columns per thread (measured slower on SwiftShader; kept for sweeps). */
  regs8x4: { kernel: 'regs', wgX: 16, wgY: 4, tm: 8, tn: 4, tk: 0 },
  /** 4×4 per thread (measured slowest on SwiftShader; kept for sweeps). */
  regs4x4: { kernel: 'regs', wgX: 16, wgY: 4, tm: 4, tn: 4, tk: 0 },
  /** Hardware, large: 64×64 tiles, 4×4 per thread, 16-deep panels. */
  tiled64: { kernel: 'tiled', wgX: 16, wgY: 16, tm: 4, tk: 16 },
  /** Hardware, small: 32×32 tiles. */
  tiled32: { kernel: 'tiled', wgX: 8, wgY: 8, tm: 4, tk: 16 },
  /** M = 1: 4 outputs per thread. */
  gemv: { kernel: 'gemv', wgX: 64, wgY: 1, tm: 1, tk: 0 },
  /** M = 1, b stored (N, K) with K % 4 = 0 (linear's decode step): vec4 loads along K. */
  gemv4t: { kernel: 'gemv4t', wgX: 64, wgY: 1, tm: 1, tk: 0 }
} satisfies Record<string, MatmulConfig>)

/** Builds the variant and grid for one configuration and problem size. */
export function matmulVariant (cfg: MatmulConfig, dims: MatmulDimsLike, hasBias: boolean): MatmulPlan {
  const isGemv = cfg.kernel === 'gemv' || cfg.kernel === 'gemv4t'
  const tm = isGemv ? 1 : cfg.tm
  const wgY = isGemv ? 1 : cfg.wgY
  const tk = cfg.kernel === 'tiled' ? cfg.tk : 1
  const tn = cfg.kernel === 'regs' || cfg.kernel === 'vec4' ? cfg.tn ?? 4 : 4
  if (cfg.kernel === 'vec4') {
    if (tm !== 8 || tn !== 8) throw new ShapeError('matmul', `the vec4 kernel takes tm = tn = 8, got ${tm}×${tn}`)
    if (!vec4Aligned(dims)) throw new ShapeError('matmul', `the vec4 kernel needs untransposed operands with K % 4 = 0 and N % 4 = 0, got K ${dims.K}, N ${dims.N}${dims.transA === true ? ', transA' : ''}${dims.transB === true ? ', transB' : ''}`)
  }
  // Only the shapes the tests run (every MATMUL_CONFIGS entry) are accepted.
  if (cfg.kernel === 'regs' && tm !== 4 && tm !== 8) throw new ShapeError('matmul', `the regs kernel takes tm 4 or 8, got ${tm}`)
  if (cfg.kernel === 'tiled' && (tm !== 4 || cfg.tn !== undefined && cfg.tn !== 4)) throw new ShapeError('matmul', `the tiled kernel takes tm = tn = 4, got tm ${tm}`)
  if (cfg.kernel === 'tiled' && !(Number.isInteger(cfg.tk) && cfg.tk >= 1)) throw new ShapeError('matmul', `the tiled kernel needs tk ≥ 1, got ${cfg.tk}`)
  if (cfg.kernel === 'gemv4t' && !gemv4tAligned(dims)) throw new ShapeError('matmul', `the gemv4t kernel needs M = 1, b stored (N, K) (transB) and K % 4 = 0, got M ${dims.M}, K ${dims.K}${dims.transB === true ? '' : ', b not transposed'}`)
  if (cfg.kernel === 'gemv' && dims.M !== 1) throw new ShapeError('matmul', `the gemv kernel needs M = 1, got M = ${dims.M}`)
  const entry = cfg.kernel === 'gemv' ? 'gemv' : cfg.kernel === 'gemv4t' ? 'gemv_vec4_t' : `matmul_${cfg.kernel}`
  const key = `${cfg.kernel}-wg${cfg.wgX}x${wgY}-tm${tm}-tn${tn}${cfg.kernel === 'tiled' ? `-tk${tk}` : ''}${hasBias ? '-bias' : ''}`
  return {
    variant: {
      key,
      entry,
      workgroupSize: [cfg.wgX, wgY],
      constants: { TM: tm, TN: tn, TK: tk, HAS_BIAS: hasBias }
    },
    grid: [groups(dims.N, tn * cfg.wgX), groups(dims.M, tm * wgY), dims.B],
    config: { ...cfg, wgY, tm, tn }
  }
}

/**
 * Picks a configuration by adapter and size. M = 1 → gemv (gemv4t when b is (N, K) and K % 4 = 0). Software adapters (SwiftShader runs
 * workgroups on CPU threads, where barriers are costly and caches do the tiling) → the
 * register-blocked kernels, with vec4 loads when the operands allow it (1.7–1.8× faster than
 * scalar loads at 512²–1024², BENCHMARKS.md); hardware GPUs → workgroup-memory tiles, smaller for small outputs
 * so that there are enough workgroups to fill the device.
 */
export function planMatmul (info: Pick<GpuInfo, 'software'>, dims: MatmulDimsLike, hasBias: boolean): MatmulPlan {
  const C = MATMUL_CONFIGS
  const outputs = dims.B * dims.M * dims.N
  let cfg: MatmulConfig
  if (dims.M === 1) cfg = gemv4tAligned(dims) ? C.gemv4t : C.gemv
  else if (info.software) {
    const big = outputs >= SOFTWARE_BIG_TILE_OUTPUTS
    cfg = vec4Aligned(dims) ? (big ? C.vec4 : C.vec4s) : (big ? C.regs8x8 : C.regs8x8s)
  } else cfg = outputs >= HARDWARE_BIG_TILE_OUTPUTS ? C.tiled64 : C.tiled32
  return matmulVariant(cfg, dims, hasBias)
}

/** Outputs from which 64×64-output workgroups pay on software adapters (below, 64×32 ones give the CPU threads more to share). */
const SOFTWARE_BIG_TILE_OUTPUTS = 128 * 128
/** Outputs from which 64×64 workgroup tiles still give a hardware GPU enough workgroups (~64). */
const HARDWARE_BIG_TILE_OUTPUTS = 512 * 512

// ---- ops ----

export interface MatmulOptions {
  /** a is stored (K, M) / (B, K, M). @default false */
  transA?: boolean
  /** b is stored (N, K) / (B, N, K). @default false */
  transB?: boolean
  /** (N) added to every row of the result. */
  bias?: Tensor
  /** Scales the product (before the bias). @default 1 */
  alpha?: number
  /** Forces a kernel configuration (tests, benchmarks); otherwise `planMatmul` picks. */
  config?: MatmulConfig
}

interface Resolved { B: number, M: number, N: number, K: number, batchedA: boolean, batchedB: boolean, transA: boolean, transB: boolean, alpha: number }

function resolve (op: string, a: Tensor, b: Tensor, o: MatmulOptions): Resolved {
  expectDType(op, 'a', a, 'f32')
  expectDType(op, 'b', b, 'f32')
  expectRank(op, 'a', a, 2, 3)
  expectRank(op, 'b', b, 2, 3)
  const transA = o.transA ?? false
  const transB = o.transB ?? false
  const alpha = o.alpha ?? 1
  if (!Number.isFinite(alpha)) throw new ShapeError(op, `alpha must be finite, got ${alpha}`)
  const batchedA = a.rank === 3
  const batchedB = b.rank === 3
  const B = batchedA ? a.shape[0] : 1
  if (batchedB && (!batchedA || b.shape[0] !== B)) {
    throw new ShapeError(op, `batched b ${shapeString(b.shape)} needs a with the same batch, got a ${shapeString(a.shape)}`)
  }
  const [ar, ac] = a.shape.slice(-2)
  const [br, bc] = b.shape.slice(-2)
  const [M, Ka] = transA ? [ac, ar] : [ar, ac]
  const [Kb, N] = transB ? [bc, br] : [br, bc]
  if (Ka !== Kb) {
    throw new ShapeError(op, `inner dimensions differ: a ${shapeString(a.shape)}${transA ? 'ᵀ' : ''} · b ${shapeString(b.shape)}${transB ? 'ᵀ' : ''} (K ${Ka} vs ${Kb})`)
  }
  if (o.bias !== undefined) {
    expectDType(op, 'bias', o.bias, 'f32')
    if (o.bias.rank !== 1 || o.bias.shape[0] !== N) throw new ShapeError(op, `bias must have shape (${N}), got ${shapeString(o.bias.shape)}`)
  }
  return { B, M, N, K: Ka, batchedA, batchedB, transA, transB, alpha }
}

/**
 * C = alpha · op(a)·op(b) + bias.
 * a (M, K) | (B, M, K), or (K, M) | (B, K, M) with transA;
 * b (K, N) | (B, K, N), or (N, K) | (B, N, K) with transB; rank-2 b broadcasts over B.
 * → (M, N) | (B, M, N). M = 1 takes the GEMV path.
 */
export function matmul (a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const be = backendOf('matmul', a, b, opts.bias)
  const r = resolve('matmul', a, b, opts)
  const outShape = r.batchedA ? [r.B, r.M, r.N] : [r.M, r.N]
  if (isCpu(be)) {
    const dims = { B: r.B, M: r.M, N: r.N, K: r.K, transA: r.transA, transB: r.transB, bBatched: r.batchedB }
    // The twin's arithmetic, blocked (cpu/matmul-blocked.ts): equal bit for bit, 3-4× faster.
    return cpu.wrap(matmulBlocked(a.data as Float32Array, b.data as Float32Array, dims, opts.bias?.data as Float32Array | undefined, r.alpha), outShape)
  }
  const g = be as GpuBackend
  const out = g.empty(outShape)
  if (r.B * r.M * r.N === 0) return out
  const hasBias = opts.bias !== undefined
  const dims = { B: r.B, M: r.M, N: r.N, K: r.K, transA: r.transA, transB: r.transB }
  const plan = opts.config !== undefined ? matmulVariant(opts.config, dims, hasBias) : planMatmul(g.info, dims, hasBias)
  const vec4 = plan.config.kernel === 'vec4' || plan.config.kernel === 'gemv4t'
  g.run(vec4 ? MATMUL_VEC4 : MATMUL, plan.variant, { a, b, bias: opts.bias ?? a, out }, {
    M: r.M,
    N: r.N,
    K: r.K,
    amS: r.transA ? 1 : r.K,
    akS: r.transA ? r.M : 1,
    bkS: r.transB ? 1 : r.N,
    bnS: r.transB ? r.K : 1,
    strideA: r.M * r.K,
    strideB: r.batchedB ? r.K * r.N : 0,
    alpha: r.alpha
  }, plan.grid)
  return out
}

/**
 * The textbook kernel (shaders/matmul_naive.wgsl), the benchmark's baseline:
 * a (M, K) · b (K, N) → (M, N), one thread per output.
 */
export function matmulNaive (a: Tensor, b: Tensor): Tensor {
  const be = backendOf('matmulNaive', a, b)
  expectDType('matmulNaive', 'a', a, 'f32')
  expectDType('matmulNaive', 'b', b, 'f32')
  expectRank('matmulNaive', 'a', a, 2)
  expectRank('matmulNaive', 'b', b, 2)
  const [M, K] = a.shape
  const [Kb, N] = b.shape
  if (K !== Kb) throw new ShapeError('matmulNaive', `inner dimensions differ: a ${shapeString(a.shape)} · b ${shapeString(b.shape)}`)
  if (isCpu(be)) return cpu.wrap(twin.matmulNaive(a.data as Float32Array, b.data as Float32Array, M, N, K), [M, N])
  const g = be as GpuBackend
  const out = g.empty([M, N])
  const wg = NAIVE_WG
  g.run(MATMUL_NAIVE, { key: `wg${wg}x${wg}`, workgroupSize: [wg, wg] }, { a, b, out }, { M, N, K }, [groups(N, wg), groups(M, wg), 1])
  return out
}

/** 16×16 = 256 threads: the common textbook choice. */
const NAIVE_WG = 16

/**
 * y = x·wᵀ + bias (Hugging Face layout).
 * x (..., in) f32, w (out, in), bias (out) f32 → (..., out) f32. w may be in any weight dtype
 * (f16, bf16, GGUF blocks: read in place by the dequantizing GEMV for ≤ 8 rows, the tiled
 * kernel otherwise) and split into row parts; f32 weights in one binding take matmul.
 */
export function linear (x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  backendOf('linear', x, w, bias)
  expectDType('linear', 'x', x, 'f32')
  expectRank('linear', 'w', w, 2)
  if (x.rank < 1) throw new ShapeError('linear', `x must have rank ≥ 1, got ${shapeString(x.shape)}`)
  const inF = x.shape[x.rank - 1]
  if (w.shape[1] !== inF) throw new ShapeError('linear', `x ${shapeString(x.shape)} has ${inF} features but w ${shapeString(w.shape)} expects ${w.shape[1]}`)
  const outF = w.shape[0]
  const x2 = x.reshape([rowsOf(x), inF])
  // weights in their file encoding, or split into row parts: ops/matmul-quant.ts (GEMV or tiled by rows)
  const inPlace = w.dtype !== 'f32' || w.storage.parts !== undefined
  const y2 = inPlace ? matmulQuant(x2, w, { bias }) : matmul(x2, w, { transB: true, bias })
  x2.dispose()
  const y = y2.reshape([...x.shape.slice(0, -1), outF])
  y2.dispose()
  return y
}

/** Rows of x (..., in) even when in = 0. */
function rowsOf (x: Tensor): number {
  return x.shape.slice(0, -1).reduce((p, d) => p * d, 1)
}

export interface LinearGrads {
  /** (..., in) */
  dx: Tensor
  /** (out, in) */
  dw: Tensor
  /** (out), when hasBias */
  db?: Tensor
}

/**
 * Gradients of y = x·wᵀ + b given dy (..., out):
 * dx = dy·w, dw = dyᵀ·x, db = 1ᵀ·dy (the column sums, as a GEMV).
 */
export function linearBackward (x: Tensor, w: Tensor, dy: Tensor, hasBias: boolean): LinearGrads {
  const be = backendOf('linearBackward', x, w, dy)
  for (const [name, t] of [['x', x], ['w', w], ['dy', dy]] as const) expectDType('linearBackward', name, t, 'f32')
  expectRank('linearBackward', 'w', w, 2)
  const [outF, inF] = w.shape
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) throw new ShapeError('linearBackward', `x ${shapeString(x.shape)} must end in ${inF} (w ${shapeString(w.shape)})`)
  const lead = x.shape.slice(0, -1)
  const dyOk = dy.rank === x.rank && dy.shape[dy.rank - 1] === outF && lead.every((d, i) => d === dy.shape[i])
  if (!dyOk) throw new ShapeError('linearBackward', `dy must have shape ${shapeString([...lead, outF])}, got ${shapeString(dy.shape)} (x ${shapeString(x.shape)}, w ${shapeString(w.shape)})`)
  const rows = rowsOf(x)
  const x2 = x.reshape([rows, inF])
  const dy2 = dy.reshape([rows, outF])
  const dx2 = matmul(dy2, w) //                    (rows, out)·(out, in) → (rows, in)
  const dw = matmul(dy2, x2, { transA: true }) //  (rows, out)ᵀ·(rows, in) → (out, in)
  let db: Tensor | undefined
  if (hasBias) {
    const ones = be.tensor(new Float32Array(rows).fill(1), [1, rows])
    const db2 = matmul(ones, dy2) //                (1, rows)·(rows, out) → (1, out)
    db = db2.reshape([outF])
    db2.dispose()
    ones.dispose()
  }
  const dx = dx2.reshape(x.shape)
  dx2.dispose()
  x2.dispose()
  dy2.dispose()
  return db !== undefined ? { dx, dw, db } : { dx, dw }
}
