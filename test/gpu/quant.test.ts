import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import * as twin from '../../web/src/gpu/cpu/quant.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { dequantizeQ8, matmulQ8, q8Tensor, quantizeQ8, toQ8_0, TOLERANCE } from '../../web/src/gpu/ops/quant.ts'
import { matmul } from '../../web/src/gpu/ops/matmul.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

/** Seeded values with a spread of magnitudes per block, exact ties, zeros and a tiny block. */
function sample (n: number, seed: number): Float32Array {
  const rng = new Rng(seed)
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) x[i] = rng.normal() * 10 ** (rng.int(7) - 3)
  return x
}

describe('q8 CPU twin (cpu/quant.ts)', () => {
  it('quantizes a block by hand: scale = absmax·f32(1/127), ties toward zero', () => {
    // absmax 127·s with s = f32(127·f32(1/127))… pick values whose thresholds are exact.
    const x = new Float32Array(32)
    x[0] = 127; x[1] = -63.5; x[2] = 0.5; x[3] = 0.50001; x[4] = -1.49; x[5] = 2.5
    const bytes = twin.quantizeQ8(x, 32)
    const view = new DataView(bytes.buffer)
    const s = Math.fround(127 * twin.INV_127)
    expect(view.getFloat32(0, true)).toBe(s)
    const q = [...new Int8Array(bytes.buffer, 4, 6)]
    // 0.5 sits on threshold ½·s only if s = 1; otherwise compare against the f32 thresholds.
    const expectQ = [127, -63.5, 0.5, 0.50001, -1.49, 2.5].map(v => {
      let m = 0; for (let k = 0; k < 127; k++) if (Math.abs(v) > Math.fround((k + 0.5) * s)) m++
      return v < 0 ? -m : m
    })
    expect(q).toEqual(expectQ)
    expect(q[0]).toBe(127)
    expect(q[1]).toBe(s >= 1 ? -63 : -64) // 63.5 vs threshold 63.5·s: tie → toward zero
    expect(bytes.byteLength).toBe(twin.q8Bytes(32, 32))
  })

  it('round trip stays within scale/2 per element, at every block size', () => {
    for (const block of [32, 64, 100, 128, 256]) {
      const x = sample(1000, block)
      const bytes = twin.quantizeQ8(x, block)
      const back = twin.dequantizeQ8(bytes, x.length, block)
      const view = new DataView(bytes.buffer)
      for (let i = 0; i < x.length; i++) {
        const s = view.getFloat32(Math.floor(i / block) * (4 + block), true)
        expect(Math.abs(x[i] - back[i])).toBeLessThanOrEqual(s / 2 * (1 + 2 ** -20))
      }
    }
  })

  it('zero and tiny blocks give scale 0 and zero output; the tail of the last block is zero', () => {
    const x = new Float32Array(70)
    x.fill(1e-35, 0, 32) // absmax < 2^-100 → zero block
    x[64] = -3; x[69] = 1.5
    const bytes = twin.quantizeQ8(x, 32)
    expect(bytes.byteLength).toBe(3 * 36)
    expect([...bytes.subarray(0, 36)].every(b => b === 0)).toBe(true)
    expect([...bytes.subarray(2 * 36 + 4 + 6)].every(b => b === 0)).toBe(true) // past n
    expect([...twin.dequantizeQ8(bytes, 70, 32)].slice(0, 32).every(v => v === 0)).toBe(true)
    expect(() => twin.quantizeQ8(new Float32Array([1, NaN]), 32)).toThrow(/element 1 is NaN/)
    expect(() => twin.quantizeQ8(new Float32Array(4), 30)).toThrow(RangeError)
  })

  it('reads GGUF Q8_0 blocks (f16 scale) exactly', () => {
    const gguf = new Uint8Array(2 * 34)
    const v = new DataView(gguf.buffer)
    v.setUint16(0, 0x3c00, true) // 1.0
    v.setUint16(34, 0xb800, true) // -0.5
    v.setInt8(2, -7); v.setInt8(34 + 2 + 31, 100)
    const ours = twin.q8FromGgufQ8_0(gguf, 64)
    const x = twin.dequantizeQ8(ours, 64, 32)
    expect(x[0]).toBe(-7)
    expect(x[63]).toBe(-50)
    expect(twin.f16ToF32(0x0001)).toBe(2 ** -24)
  })
})

describe('quantizeQ8 / dequantizeQ8 (shaders/quant.wgsl) vs CPU twin', () => {
  for (const block of [32, 64, 128, 256, 36]) {
    it(`GPU bytes == CPU bytes and values are exact, block ${block}`, async () => {
      for (const n of [0, 1, 3, 7, 33, 65, 127, 129, 1000]) {
        const x = sample(n, n * 7 + block)
        const ref = quantizeQ8(cpu.tensor(x, [n]), block)
        const q = quantizeQ8(gpu.tensor(x, [n]), block)
        expect(q.dtype).toBe('q8')
        expect(q.meta.block).toBe(block)
        const bytes = await q.read() as Uint8Array
        expect(bytes.byteLength).toBe(twin.q8Bytes(n, block))
        expect(Buffer.from(bytes).equals(Buffer.from(ref.data as Uint8Array))).toBe(true)
        const back = dequantizeQ8(q)
        assertClose(await back.readF32(), dequantizeQ8(ref).data as Float32Array, { ...TOLERANCE.dequantizeQ8, what: `dequantize n=${n} block ${block}` })
      }
    })
  }

  it('keeps the logical shape; zero and tiny blocks match on the GPU', async () => {
    const x = new Float32Array(2 * 3 * 64)
    x.fill(1e-35, 0, 64)
    x.fill(-1e-38, 64, 128) // subnormal inputs: zero block on every device
    x.set(sample(128, 9), 128)
    // Last block: every element sits exactly on a rounding threshold f32((k + ½)·scale) → ties toward 0.
    const s = Math.fround(127 * twin.INV_127)
    x[320] = 127
    for (let k = 0; k < 63; k++) x[321 + k] = (k % 2 === 0 ? 1 : -1) * Math.fround((2 * k + 0.5) * s)
    const q = quantizeQ8(gpu.tensor(x, [2, 3, 64]))
    expect(q.shape).toEqual([2, 3, 64])
    expect(Buffer.from(await q.read() as Uint8Array).equals(Buffer.from(twin.quantizeQ8(x, 64)))).toBe(true)
    const d = dequantizeQ8(q)
    expect(d.shape).toEqual([2, 3, 64])
  })

  it('round trip on the GPU: |x − deq(q(x))| ≤ scale/2', async () => {
    const x = sample(4099, 77)
    const q = quantizeQ8(gpu.tensor(x, [4099]), 128)
    const bytes = await q.read() as Uint8Array
    const back = await dequantizeQ8(q).readF32()
    const view = new DataView(bytes.buffer, bytes.byteOffset)
    for (let i = 0; i < x.length; i++) {
      const s = view.getFloat32(Math.floor(i / 128) * 132, true)
      if (!(Math.abs(x[i] - back[i]) <= s / 2 * (1 + 2 ** -20))) throw new Error(`element ${i}: ${x[i]} → ${back[i]}, scale ${s}`)
    }
  })

  it('wire bytes rebuild a tensor on either backend', async () => {
    const x = sample(200, 5)
    const bytes = await quantizeQ8(gpu.tensor(x, [10, 20]), 64).read() as Uint8Array
    const onCpu = dequantizeQ8(q8Tensor(cpu, bytes, [10, 20], 64))
    const onGpu = dequantizeQ8(q8Tensor(gpu, bytes, [10, 20], 64))
    assertClose(await onGpu.readF32(), onCpu.data as Float32Array, { atol: 0, rtol: 0 })
    expect(() => q8Tensor(cpu, bytes.subarray(1), [10, 20], 64)).toThrow(/q8Tensor: 271 bytes for shape \(10, 20\)/)
  })
})

describe('matmulQ8 (shaders/matmul_q8.wgsl) vs CPU twin', () => {
  it('odd M and N, M = 1 decode, and agrees with matmul on dequantised weights', async () => {
    for (const [i, [M, N, K]] of [[1, 1, 32], [1, 65, 96], [3, 7, 32], [7, 33, 64], [33, 5, 128], [65, 129, 32], [4, 3, 0]].entries()) {
      const rng = new Rng(900 + i)
      const x = rng.uniform(M * K); const w = rng.uniform(N * K)
      const wqC = toQ8_0(cpu.tensor(w, [N, K]))
      const ref = matmulQ8(cpu.tensor(x, [M, K]), wqC)
      const out = matmulQ8(gpu.tensor(x, [M, K]), toQ8_0(gpu.tensor(w, [N, K])))
      expect(out.shape).toEqual([M, N])
      assertClose(await out.readF32(), ref.data as Float32Array, { ...TOLERANCE.matmulQ8, what: `matmulQ8 ${M}x${N}x${K}` })
      // The same product through dequantize + f32 matmul.
      const viaF32 = matmul(cpu.tensor(x, [M, K]), dequantizeQ8(wqC), { transB: true })
      assertClose(ref.data as Float32Array, viaF32.data as Float32Array, { ...TOLERANCE.matmulQ8, what: `matmulQ8 twin vs matmul ${M}x${N}x${K}` })
    }
  })

  it('accepts weights converted from GGUF Q8_0 bytes', async () => {
    const [N, K] = [3, 64]
    const gguf = new Uint8Array(N * (K / 32) * 34)
    const rng = new Rng(3)
    for (let b = 0; b < N * K / 32; b++) {
      new DataView(gguf.buffer).setUint16(b * 34, 0x3000 + rng.int(0x800), true) // scales in [0.125, 0.25)
      for (let i = 0; i < 32; i++) gguf[b * 34 + 2 + i] = rng.int(256)
    }
    const wq = twin.q8FromGgufQ8_0(gguf, N * K)
    const x = rng.uniform(2 * K)
    const ref = twin.matmulQ8(x, wq, 2, N, K)
    const out = matmulQ8(gpu.tensor(x, [2, K]), q8Tensor(gpu, wq, [N, K], 32))
    assertClose(await out.readF32(), ref, { ...TOLERANCE.matmulQ8, what: 'gguf q8_0' })
  })
})

describe('bad input throws ShapeError naming the op and shapes', () => {
  it('quant ops', () => {
    const f = gpu.tensor(new Float32Array(64), [2, 32])
    expect(() => quantizeQ8(f, 30)).toThrow(/quantizeQ8: block must be a multiple of 4 in \[32, 256\], got 30/)
    expect(() => quantizeQ8(f, 512)).toThrow(ShapeError)
    expect(() => quantizeQ8(gpu.tensor(new Int32Array(4), [4], 'i32'))).toThrow(/quantizeQ8: x must be f32, got i32/)
    expect(() => dequantizeQ8(f)).toThrow(/dequantizeQ8: q must be q8, got f32/)
    expect(() => toQ8_0(gpu.tensor(new Float32Array(60), [2, 30]))).toThrow(/toQ8_0: K = 30 of w \(2, 30\) is not a multiple of 32/)
    const w = toQ8_0(gpu.tensor(new Float32Array(128), [2, 64]))
    expect(() => matmulQ8(gpu.tensor(new Float32Array(96), [3, 32]), w)).toThrow(/matmulQ8: inner dimensions differ: x \(3, 32\) · w \(2, 64\)ᵀ/)
    expect(() => matmulQ8(gpu.tensor(new Float32Array(64), [64]), w)).toThrow(/matmulQ8: x must have rank 2, got \(64\)/)
    expect(() => matmulQ8(gpu.tensor(new Float32Array(128), [2, 64]), quantizeQ8(gpu.tensor(new Float32Array(128), [2, 64]), 64))).toThrow(/matmulQ8: w must be Q8_0 \(block 32\), got block 64/)
    expect(() => matmulQ8(gpu.tensor(new Float32Array(128), [2, 64]), gpu.tensor(new Float32Array(128), [2, 64]))).toThrow(/matmulQ8: w must be q8, got f32/)
  })
})
