import { beforeAll, describe, expect, it } from 'vitest'
import { rope, TOLERANCE } from '../../web/src/gpu/ops/rope.ts'
import { invFreq } from '../../web/src/gpu/cpu/rope.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Largest position the tests use: 8191 rad at inv_freq[0] = 1 (the reduction is exact to 1e5). */
const MAX_POS = 8191

function positionsFor (rng: Rng, T: number): Int32Array {
  const p = new Int32Array(T)
  for (let t = 0; t < T; t++) p[t] = t % 3 === 0 ? MAX_POS - rng.int(64) : rng.int(MAX_POS + 1)
  return p
}

/**
 * PyTorch 1.13 (CPU, f32), HF Llama semantics: D = 16, H = 1, theta = 10000,
 * positions [0, 3, 255, 1000, 4095, 8191], x[k] = ((37k mod 17) − 8) / 8.
 * Produced by: inv_freq = 1/(theta ** (arange(0, D, 2).float()/D)); freqs = inv_freq ⊗ pos (f32 matmul);
 * emb = cat(freqs, freqs); out = x·emb.cos() + rotate_half(x)·emb.sin().
 */
const TORCH = {
  D: 16,
  theta: 10000,
  positions: [0, 3, 255, 1000, 4095, 8191],
  invFreq: [1.0, 0.3162277638912201, 0.10000000149011612, 0.03162277862429619, 0.009999999776482582, 0.003162277862429619, 0.0010000000474974513, 0.0003162277862429619],
  out: [-1.0, -0.625, -0.25, 0.125, 0.5, 0.875, -0.875, -0.5, -0.125, 0.25, 0.625, 1.0, -0.75, -0.375, 0.0, 0.375, -0.6719343662261963, -0.4811725616455078, -0.6709653735160828, -0.30807965993881226, 0.09494825452566147, 0.5070925354957581, 0.8761210441589355, -0.8749996423721313, 0.6008362770080566, -0.8854930996894836, 0.05413399636745453, 0.5985080599784851, 1.0032994747161865, -0.7452229261398315, -0.3723733425140381, -0.0008300978224724531, -0.7664565443992615, -0.05453532934188843, -0.8884328007698059, -0.11433517932891846, -0.14103896915912628, -0.6352726221084595, 0.6730157136917114, 0.9023632407188416, 0.5646187663078308, -0.8997366428375244, -0.4757227301597595, -0.6633645296096802, -0.6582043766975403, 0.782338559627533, -0.599624752998352, -0.30329954624176025, -0.7235196232795715, 0.5898270606994629, 0.39355629682540894, -0.9530099630355835, 0.6604249477386475, 0.26287388801574707, -0.7739331722259521, 0.7084453105926514, 0.4920816719532013, 0.7472308874130249, -0.8109337091445923, -0.327714741230011, 0.13024532794952393, -0.6196953654289246, 0.6454862356185913, -0.5573196411132812, 0.5236515998840332, -0.505884051322937, 0.9494397640228271, -0.896704375743866, 0.9803982377052307, -0.6731432676315308, 0.6543475389480591, -0.9281509518623352, 0.34119492769241333, 0.7139371633529663, -0.06938427686691284, -0.09176754951477051, 0.23333293199539185, -0.0017843395471572876, -0.15796922147274017, 0.39263319969177246, 0.5801687240600586, -0.5079329013824463, -0.6606203317642212, 0.9233850240707397, 0.8437914848327637, -0.6313049793243408, -0.029264554381370544, -0.11445775628089905, 0.4914563298225403, -0.36418285965919495, -0.5737645626068115, 0.23153851926326752, -0.31704264879226685, -0.7855437994003296, -0.6725091934204102, -0.6633433103561401]
}

describe('rope (shaders/rope.wgsl)', () => {
  for (const D of [2, 6, 8, 64, 80]) {
    for (const [T, H] of [[1, 1], [3, 2], [7, 3], [33, 1]]) {
      for (const inverse of [false, true]) {
        it(`matches the CPU twin at T=${T} H=${H} D=${D}${inverse ? ' inverse' : ''}`, async () => {
          const rng = new Rng(T * 1000 + H * 100 + D + (inverse ? 7 : 0))
          const x = rng.uniform(T * H * D)
          const pos = positionsFor(rng, T)
          const ref = rope(cpu.tensor(x, [T, H, D]), cpu.tensor(pos, [T], 'i32'), 10000, inverse)
          const out = rope(gpu.tensor(x, [T, H, D]), gpu.tensor(pos, [T], 'i32'), 10000, inverse)
          assertClose(await out.readF32(), ref.data as Float32Array, { ...TOLERANCE.rope, what: `rope T=${T} H=${H} D=${D}` })
        })
      }
    }
  }

  it('handles T = 0', async () => {
    const out = rope(gpu.tensor(new Float32Array(0), [0, 2, 8]), gpu.tensor(new Int32Array(0), [0], 'i32'), 10000)
    expect(out.shape).toEqual([0, 2, 8])
  })

  it('computes inv_freq as PyTorch f32 does', () => {
    expect(Array.from(invFreq(TORCH.D, TORCH.theta))).toEqual(TORCH.invFreq)
  })

  it('matches PyTorch (HF Llama rotate-half) on CPU and GPU, positions up to 8191', async () => {
    const { D, theta, positions } = TORCH
    const T = positions.length
    const x = new Float32Array(T * D)
    for (let k = 0; k < x.length; k++) x[k] = (((k * 37) % 17) - 8) / 8
    const pos = Int32Array.from(positions)
    const ref = Float32Array.from(TORCH.out)
    const onCpu = rope(cpu.tensor(x, [T, 1, D]), cpu.tensor(pos, [T], 'i32'), theta)
    const onGpu = rope(gpu.tensor(x, [T, 1, D]), gpu.tensor(pos, [T], 'i32'), theta)
    // PyTorch's own f32 cos/sin are within ~4e-8 of the exact values.
    assertClose(onCpu.data as Float32Array, ref, { atol: 3e-7, rtol: 0, what: 'CPU twin vs PyTorch' })
    assertClose(await onGpu.readF32(), ref, { ...TOLERANCE.rope, what: 'GPU vs PyTorch' })
  })

  it('inverse undoes the rotation (CPU and GPU)', async () => {
    const rng = new Rng(11)
    const [T, H, D] = [7, 3, 64]
    const x = rng.uniform(T * H * D)
    const pos = positionsFor(rng, T)
    for (const be of [cpu, gpu]) {
      const p = be.tensor(pos, [T], 'i32')
      const back = rope(rope(be.tensor(x, [T, H, D]), p, 500000), p, 500000, true)
      assertClose(await back.readF32(), x, { atol: 1e-6, rtol: 0, what: `inverse(rope(x)) on ${be.kind}` })
    }
  })

  it('inverse is the transpose of the rotation: <rope(x), y> = <x, rope⁻¹(y)> (the backward)', () => {
    const rng = new Rng(12)
    const [T, H, D] = [5, 2, 6]
    const x = rng.uniform(T * H * D)
    const y = rng.uniform(T * H * D)
    const p = cpu.tensor(positionsFor(rng, T), [T], 'i32')
    const rx = rope(cpu.tensor(x, [T, H, D]), p, 10000).data as Float32Array
    const ry = rope(cpu.tensor(y, [T, H, D]), p, 10000, true).data as Float32Array
    let a = 0
    let b = 0
    for (let k = 0; k < x.length; k++) { a += rx[k] * y[k]; b += x[k] * ry[k] }
    expect(Math.abs(a - b)).toBeLessThan(1e-5)
    expect(Math.abs(a)).toBeGreaterThan(1e-3) // the check is not vacuous
  })

  it('throws ShapeError naming the op and shapes on bad input', () => {
    const pos = gpu.tensor([0, 1], [2], 'i32')
    expect(() => rope(gpu.tensor(new Float32Array(2 * 2 * 5), [2, 2, 5]), pos, 10000)).toThrow(ShapeError)
    expect(() => rope(gpu.tensor(new Float32Array(2 * 2 * 5), [2, 2, 5]), pos, 10000)).toThrow(/rope: head dim D must be even.*\(2, 2, 5\)/)
    expect(() => rope(gpu.tensor(new Float32Array(16), [2, 8]), pos, 10000)).toThrow(/rope: x \(T, H, D\) must have rank 3, got \(2, 8\)/)
    expect(() => rope(gpu.tensor(new Float32Array(24), [3, 1, 8]), pos, 10000)).toThrow(/rope: positions \(2\) must have one entry per token of x \(3, 1, 8\)/)
    expect(() => rope(gpu.tensor(new Float32Array(16), [2, 1, 8]), gpu.tensor([0, 1], [2]), 10000)).toThrow(/rope: positions must be i32, got f32/)
    expect(() => rope(gpu.tensor(new Float32Array(16), [2, 1, 8]), pos, 0)).toThrow(/rope: theta must be a positive number/)
  })
})
