import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/topk-ef.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectSameShape, isCpu } from './util.ts'

/**
 * Top-k pseudo-gradient compression with error feedback where Δ lives (shaders/topk_ef.wgsl; CPU
 * twin ../cpu/topk-ef.ts, which documents the math): per chunk, keep the k largest |carry + Δ|,
 * code them in b bits, and leave carry' = β·(what was not sent) for the next round. The training
 * side packs `codes` and the scales into the wire bytes (swarm/train/topk.ts `packTopK`).
 *
 *   const r = topkErrorFeedback(delta, carry, { chunk: 64, k: 1, bits: 2, decay: 0.95 })
 *   const host = await readTopKEf(r)        // codes, scales, sent, carry, bad chunks
 */

export { TOPK_EF_MAX_CHUNK, type TopKEfParams, type TopKEfResult } from '../cpu/topk-ef.ts'

/** GPU vs CPU twin: every output exact (single multiplies, adds and comparisons only). */
export const TOLERANCE = { topkErrorFeedback: { atol: 0, rtol: 0 } } as const

const TOPK_EF = defineKernel({
  name: 'topk_ef',
  shader: 'topk_ef',
  bindings: [
    { name: 'delta', type: 'f32' }, //                     (n)
    { name: 'carry', type: 'f32' }, //                     (n)
    { name: 'grid', type: 'f32' }, //                      LEVEL[0..top], T[1..top]
    { name: 'next', type: 'f32', access: 'read_write' }, // (n) carry'
    { name: 'sent', type: 'f32', access: 'read_write' }, // (n)
    { name: 'codes', type: 'u32', access: 'read_write' }, // (n)
    { name: 'chunks', type: 'u32', access: 'read_write' } // (2·nchunks) scale bits, bad
  ],
  uniforms: [
    { name: 'n', type: 'u32' },
    { name: 'chunk', type: 'u32' },
    { name: 'k', type: 'u32' },
    { name: 'top', type: 'u32' }, //        2^bits − 1
    { name: 'nchunks', type: 'u32' },
    { name: 'decay_bits', type: 'u32' } //  bits of f32 β (no decimal parsing can shift it)
  ]
})
const WG = 64
const VARIANT: Variant = { key: `wg${WG}-c${twin.TOPK_EF_MAX_CHUNK}`, workgroupSize: [WG], constants: { MAX_CHUNK: twin.TOPK_EF_MAX_CHUNK } }

/** The kernel's outputs, on Δ's device. */
export interface TopKEfTensors {
  carry: Tensor
  sent: Tensor
  codes: Tensor
  /** (2·chunks) u32: bits of each chunk's scale, then 1 if it held a non-finite value. */
  chunks: Tensor
}

const grids = new WeakMap<GpuBackend, Map<number, Tensor>>()

function gridOn (g: GpuBackend, bits: number): Tensor {
  let m = grids.get(g)
  if (m === undefined) { m = new Map(); grids.set(g, m) }
  let t = m.get(bits)
  if (t === undefined) {
    const table = twin.topkEfGrid(bits)
    t = g.tensor(table, [table.length])
    m.set(bits, t)
  }
  return t
}

function f32Bits (v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]
}

/** One compression round: delta and carry (n) f32 on one device → the four outputs (file comment). */
export function topkErrorFeedback (delta: Tensor, carry: Tensor, p: twin.TopKEfParams): TopKEfTensors {
  const be = backendOf('topkErrorFeedback', delta, carry)
  expectDType('topkErrorFeedback', 'delta', delta, 'f32')
  expectDType('topkErrorFeedback', 'carry', carry, 'f32')
  expectSameShape('topkErrorFeedback', delta, carry)
  const n = delta.numel
  const why = twin.topkEfProblem(n, p)
  if (why !== undefined) throw new ShapeError('topkErrorFeedback', why)
  const nchunks = Math.ceil(n / p.chunk)
  if (isCpu(be)) {
    const r = twin.topkErrorFeedback(delta.data as Float32Array, carry.data as Float32Array, p)
    const chunks = new Uint32Array(2 * nchunks)
    const sb = new Uint32Array(r.scales.buffer)
    for (let j = 0; j < nchunks; j++) { chunks[2 * j] = sb[j]; chunks[2 * j + 1] = r.bad[j] }
    return { carry: cpu.wrap(r.carry, [n]), sent: cpu.wrap(r.sent, [n]), codes: cpu.wrap(r.codes, [n], 'u32'), chunks: cpu.wrap(chunks, [2 * nchunks], 'u32') }
  }
  const g = be as GpuBackend
  const out: TopKEfTensors = { carry: g.empty([n]), sent: g.empty([n]), codes: g.empty([n], 'u32'), chunks: g.empty([2 * nchunks], 'u32') }
  if (n === 0) return out
  g.run(TOPK_EF, VARIANT, { delta, carry, grid: gridOn(g, p.bits), next: out.carry, sent: out.sent, codes: out.codes, chunks: out.chunks },
    { n, chunk: p.chunk, k: p.k, top: 2 ** p.bits - 1, nchunks, decay_bits: f32Bits(p.decay) }, g.grid1d(nchunks))
  return out
}

/** The outputs on the host, in the twin's form. */
export async function readTopKEf (r: TopKEfTensors): Promise<twin.TopKEfResult> {
  const [carry, sent, codes, chunks] = await Promise.all([r.carry.read(), r.sent.read(), r.codes.read(), r.chunks.read()])
  const c = chunks as Uint32Array
  const nchunks = c.length / 2
  const scaleBits = new Uint32Array(nchunks)
  const bad = new Uint32Array(nchunks)
  for (let j = 0; j < nchunks; j++) { scaleBits[j] = c[2 * j]; bad[j] = c[2 * j + 1] }
  return { carry: carry as Float32Array, sent: sent as Float32Array, codes: codes as Uint32Array, scales: new Float32Array(scaleBits.buffer), bad }
}
