import type { Backend } from '../backend.ts'
import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/quant.ts'
import { shapeString } from '../dtype.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectRank, groups, isCpu } from './util.ts'

/**
 * int8 block quantisation. A q8 tensor keeps its logical shape, `dtype: 'q8'` and
 * `meta.block`; its bytes are the layout documented in ../cpu/quant.ts (per block: f32 scale,
 * then `block` int8), which is also the wire format: `q8Bytes(n, block)` bytes, readable with
 * `tensor.read()` and rebuilt with `q8Tensor()`. Quantisation is bit-identical on every device
 * and in the CPU twin (no division or multiply-add; see ../cpu/quant.ts).
 *
 *   const q = quantizeQ8(delta, 64)            // (…) f32 → q8
 *   const bytes = await q.read()               // Uint8Array, send it
 *   const back = dequantizeQ8(q8Tensor(cpu, bytes, delta.shape, 64))
 *   const y = matmulQ8(x, toQ8_0(w))           // x (M, K) · wᵀ, w (N, K) in Q8_0
 */

export { q8Bytes, isValidQ8Block, q8FromGgufQ8_0, Q8_0_BLOCK } from '../cpu/quant.ts'
/** The same format on plain arrays (no backend): Float32Array ↔ wire bytes, bit-identical to the GPU. */
export { quantizeQ8 as quantizeQ8Array, dequantizeQ8 as dequantizeQ8Array } from '../cpu/quant.ts'

/** GPU vs CPU twin: quantisation bytes and dequantised values are exact; matmulQ8 sums in another order. */
export const TOLERANCE = {
  quantizeQ8: { atol: 0, rtol: 0 },
  dequantizeQ8: { atol: 0, rtol: 0 },
  matmulQ8: { atol: 1e-4, rtol: 1e-4 }
} as const

/** Default block of quantizeQ8: 64 elements + 4 scale bytes = 1.06 bytes per element. */
export const DEFAULT_Q8_BLOCK = 64

/** Bits of f32(1/127) and of 2^-100 (Q8_MIN_ABSMAX), passed as integers so no decimal parsing can shift them. */
function f32Bits (v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]
}

const QUANT_BINDINGS = [
  { name: 'x', type: 'f32', access: 'read_write' }, // (n)
  { name: 'q', type: 'u32', access: 'read_write' } //  q8 words
] as const
const QUANT_UNIFORMS = [
  { name: 'n', type: 'u32' }, //      elements
  { name: 'block', type: 'u32' }, //  elements per block
  { name: 'nblocks', type: 'u32' }
] as const

const QUANTIZE = defineKernel({ name: 'quantize_q8', shader: 'quant', entry: 'quantize', bindings: QUANT_BINDINGS, uniforms: QUANT_UNIFORMS })
const DEQUANTIZE = defineKernel({ name: 'dequantize_q8', shader: 'quant', entry: 'dequantize', bindings: QUANT_BINDINGS, uniforms: QUANT_UNIFORMS })

/** Threads per workgroup of the flat quant kernels. */
const QUANT_WG = 64
const QUANT_VARIANT: Variant = {
  key: `wg${QUANT_WG}`,
  workgroupSize: [QUANT_WG],
  constants: { INV_127_BITS: f32Bits(twin.INV_127), MIN_ABSMAX_BITS: f32Bits(twin.Q8_MIN_ABSMAX) }
}

const MATMUL_Q8 = defineKernel({
  name: 'matmul_q8', shader: 'matmul_q8', entry: 'matmul_q8',
  bindings: [
    { name: 'x', type: 'f32' }, //                     (M, K)
    { name: 'w', type: 'u32' }, //                     q8 (N, K), block 32
    { name: 'out', type: 'f32', access: 'read_write' } // (M, N)
  ],
  uniforms: [{ name: 'M', type: 'u32' }, { name: 'N', type: 'u32' }, { name: 'K', type: 'u32' }]
})

/** Threads (output columns) per workgroup of matmul_q8. */
const MATMUL_Q8_WG = 64

/** matmul_q8 variants: one row per thread for decode (M = 1), four otherwise (each weight block unpacked once per 4 rows). */
export function matmulQ8Variant (M: number): { variant: Variant, rowsPerThread: 1 | 4 } {
  const tm = M === 1 ? 1 : 4
  return { variant: { key: `wg${MATMUL_Q8_WG}-tm${tm}`, workgroupSize: [MATMUL_Q8_WG], constants: { TM: tm } }, rowsPerThread: tm }
}

function checkBlock (op: string, block: number): void {
  if (!twin.isValidQ8Block(block)) throw new ShapeError(op, `block must be a multiple of 4 in [${twin.Q8_BLOCK_MIN}, ${twin.Q8_BLOCK_MAX}], got ${block}`)
}

/** x (…) f32 → q8 tensor of the same shape with `meta.block = block`. */
export function quantizeQ8 (x: Tensor, block: number = DEFAULT_Q8_BLOCK): Tensor {
  const be = backendOf('quantizeQ8', x)
  expectDType('quantizeQ8', 'x', x, 'f32')
  checkBlock('quantizeQ8', block)
  const n = x.numel
  if (isCpu(be)) return cpu.wrap(twin.quantizeQ8(x.data as Float32Array, block), x.shape, 'q8', { block })
  const g = be as GpuBackend
  const out = g.empty(x.shape, 'q8', twin.q8Bytes(n, block), { block })
  const nblocks = Math.ceil(n / block)
  g.run(QUANTIZE, QUANT_VARIANT, { x, q: out }, { n, block, nblocks }, g.grid1d(groups(nblocks, QUANT_WG)))
  return out
}

/** q8 tensor → f32 tensor of the same shape. */
export function dequantizeQ8 (q: Tensor): Tensor {
  const be = backendOf('dequantizeQ8', q)
  const block = q8Block('dequantizeQ8', 'q', q)
  const n = q.numel
  if (isCpu(be)) return cpu.wrap(twin.dequantizeQ8(q.data as Uint8Array, n, block), q.shape)
  const g = be as GpuBackend
  const out = g.empty(q.shape)
  g.run(DEQUANTIZE, QUANT_VARIANT, { x: out, q }, { n, block, nblocks: Math.ceil(n / block) }, g.grid1d(groups(n, QUANT_WG)))
  return out
}

function q8Block (op: string, name: string, q: Tensor): number {
  expectDType(op, name, q, 'q8')
  const block = q.meta.block
  if (block === undefined) throw new ShapeError(op, `q8 tensor ${shapeString(q.shape)} has no meta.block`)
  checkBlock(op, block)
  if (q.storage.bytes !== twin.q8Bytes(q.numel, block)) throw new ShapeError(op, `q8 tensor ${shapeString(q.shape)} block ${block} must hold ${twin.q8Bytes(q.numel, block)} bytes, has ${q.storage.bytes}`)
  return block
}

/** A q8 tensor from received bytes (the wire layout); checks the byte count. */
export function q8Tensor (be: Backend, bytes: Uint8Array, shape: readonly number[], block: number): Tensor {
  checkBlock('q8Tensor', block)
  const n = shape.reduce((p, d) => p * d, 1)
  if (bytes.byteLength !== twin.q8Bytes(n, block)) throw new ShapeError('q8Tensor', `${bytes.byteLength} bytes for shape ${shapeString(shape)} in blocks of ${block}; expected ${twin.q8Bytes(n, block)}`)
  if (isCpu(be)) return be.wrap(bytes.slice(), shape, 'q8', { block })
  return (be as GpuBackend).tensor(bytes, shape, 'q8', { block })
}

/** w (N, K) f32 → Q8_0 weights (block 32 along K) for matmulQ8; K must be a multiple of 32. */
export function toQ8_0 (w: Tensor): Tensor {
  expectRank('toQ8_0', 'w', w, 2)
  if (w.shape[1] % twin.Q8_0_BLOCK !== 0) throw new ShapeError('toQ8_0', `K = ${w.shape[1]} of w ${shapeString(w.shape)} is not a multiple of ${twin.Q8_0_BLOCK}`)
  return quantizeQ8(w, twin.Q8_0_BLOCK)
}

/** out (M, N) = x (M, K) · dequant(w)ᵀ, w a Q8_0 tensor (N, K) (block 32, K % 32 = 0). */
export function matmulQ8 (x: Tensor, w: Tensor): Tensor {
  const be = backendOf('matmulQ8', x, w)
  expectDType('matmulQ8', 'x', x, 'f32')
  expectRank('matmulQ8', 'x', x, 2)
  expectRank('matmulQ8', 'w', w, 2)
  const block = q8Block('matmulQ8', 'w', w)
  if (block !== twin.Q8_0_BLOCK) throw new ShapeError('matmulQ8', `w must be Q8_0 (block ${twin.Q8_0_BLOCK}), got block ${block}`)
  const [M, K] = x.shape
  const [N, Kw] = w.shape
  if (K !== Kw) throw new ShapeError('matmulQ8', `inner dimensions differ: x ${shapeString(x.shape)} · w ${shapeString(w.shape)}ᵀ`)
  if (K % twin.Q8_0_BLOCK !== 0) throw new ShapeError('matmulQ8', `K = ${K} is not a multiple of ${twin.Q8_0_BLOCK}`)
  if (isCpu(be)) return cpu.wrap(twin.matmulQ8(x.data as Float32Array, w.data as Uint8Array, M, N, K), [M, N])
  const g = be as GpuBackend
  const out = g.empty([M, N])
  if (M * N === 0) return out
  const { variant, rowsPerThread } = matmulQ8Variant(M)
  g.run(MATMUL_Q8, variant, { x, w, out }, { M, N, K }, [groups(N, MATMUL_Q8_WG), groups(M, rowsPerThread), 1])
  return out
}
