import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { KernelCompileError, TensorStateError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { defineKernel, generateHeader, packUniforms } from '../../web/src/gpu/kernel.ts'
import { add } from '../../web/src/gpu/ops/elementwise.ts'
import { sizeClass } from '../../web/src/gpu/pool.ts'
import { tidy } from '../../web/src/gpu/tensor.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

describe('device', () => {
  it('reports the adapter, features and limits', () => {
    expect(gpu.info.runtime).toBe('node')
    expect(gpu.info.limits.maxStorageBufferBindingSize).toBeGreaterThan(0)
    expect(typeof gpu.info.f16).toBe('boolean')
    expect(typeof gpu.info.subgroups).toBe('boolean')
  })
})

describe('kernel declarations', () => {
  const K = defineKernel({
    name: 'k', shader: 'elementwise',
    bindings: [{ name: 'x', type: 'f32' }, { name: 'y', type: 'f32', access: 'read_write' }],
    uniforms: [{ name: 'n', type: 'u32' }, { name: 'alpha', type: 'f32' }, { name: 'off', type: 'i32' }]
  })

  it('generates bindings, the params struct and variant constants', () => {
    const h = generateHeader(K, { key: 'v', workgroupSize: [64, 2], constants: { TILE: 8, VEC: true, EPS: { value: 1e-6, type: 'f32' } } })
    expect(h).toContain('@group(0) @binding(0) var<storage, read> x: array<f32>;')
    expect(h).toContain('@group(0) @binding(1) var<storage, read_write> y: array<f32>;')
    expect(h).toContain('@group(0) @binding(2) var<uniform> params: Params;')
    expect(h).toContain('const WG_X: u32 = 64u;')
    expect(h).toContain('const WG_Y: u32 = 2u;')
    expect(h).toContain('const TILE: u32 = 8u;')
    expect(h).toContain('const VEC: bool = true;')
    expect(h).toContain('const EPS: f32 = 0.000001f;')
    expect(h).toContain('alias T = f32;')
  })

  it('packs uniforms in order and rejects bad values', () => {
    const v = new DataView(packUniforms(K, { n: 7, alpha: 0.5, off: -3 }))
    expect(v.getUint32(0, true)).toBe(7)
    expect(v.getFloat32(4, true)).toBe(0.5)
    expect(v.getInt32(8, true)).toBe(-3)
    expect(() => packUniforms(K, { n: -1, alpha: 0, off: 0 })).toThrow(/uniform n=-1 is not a u32/)
    expect(() => packUniforms(K, { n: 1, off: 0 })).toThrow(/uniform alpha missing/)
  })

  it('rejects duplicate bindings', () => {
    expect(() => defineKernel({ name: 'd', shader: 's', bindings: [{ name: 'a', type: 'f32' }, { name: 'a', type: 'f32' }], uniforms: [] })).toThrow(/duplicate binding a/)
  })

  it('reports a WGSL compile error naming the kernel', async () => {
    const bad = defineKernel({ name: 'broken', shader: 'elementwise', entry: 'no_such_entry', bindings: [{ name: 'a', type: 'f32' }, { name: 'b', type: 'f32' }, { name: 'out', type: 'f32', access: 'read_write' }], uniforms: [{ name: 'n', type: 'u32' }] })
    await expect(gpu.prepare(bad, { key: 'x', workgroupSize: [64] })).rejects.toThrow(KernelCompileError)
    await expect(gpu.prepare(bad, { key: 'y', workgroupSize: [64] })).rejects.toThrow(/kernel broken\/y/)
  })
})

describe('buffer pool', () => {
  it('rounds to size classes wasting less than half', () => {
    expect(sizeClass(0)).toBe(16)
    expect(sizeClass(17)).toBe(24)
    expect(sizeClass(1000)).toBe(1024)
    for (const b of [5, 100, 3000, 70000, 1 << 20, (1 << 20) + 1]) {
      expect(sizeClass(b)).toBeGreaterThanOrEqual(b)
      expect(sizeClass(b)).toBeLessThanOrEqual(Math.max(16, b * 1.5 + 4))
    }
  })

  it('reuses released buffers only after the batch is submitted', async () => {
    const a = gpu.tensor(new Float32Array(100), [100])
    const buf = a.buffer
    a.dispose()
    const b = gpu.empty([100])
    expect(b.buffer).not.toBe(buf) // not yet submitted
    gpu.flush()
    const c = gpu.empty([100])
    expect(c.buffer).toBe(buf)
    b.dispose(); c.dispose()
  })
})

describe('tensors', () => {
  it('round-trips every dense dtype', async () => {
    expect(Array.from(await gpu.tensor([1.5, -2], [2]).read())).toEqual([1.5, -2])
    expect(Array.from(await gpu.tensor([-7, 3, 9], [3], 'i32').read())).toEqual([-7, 3, 9])
    expect(Array.from(await gpu.tensor([4000000000], [1], 'u32').read())).toEqual([4000000000])
    expect(Array.from(await gpu.tensor(new Uint16Array([1, 2, 3]), [3], 'f16').read())).toEqual([1, 2, 3])
  })

  it('zeros, write, copy and reshape views', async () => {
    const z = gpu.zeros([3, 2])
    expect(Array.from(await z.readF32())).toEqual([0, 0, 0, 0, 0, 0])
    gpu.write(z, new Float32Array([1, 2, 3, 4, 5, 6]))
    const v = z.reshape([6])
    const w = gpu.zeros([6])
    gpu.copy(v, w, 8, 0, 8)
    expect(Array.from(await w.readF32())).toEqual([3, 4, 0, 0, 0, 0])
    z.dispose()
    expect(Array.from(await v.readF32())).toEqual([1, 2, 3, 4, 5, 6]) // the view keeps the storage alive
    expect(() => z.reshape([6])).toThrow(TensorStateError)
    expect(() => v.reshape([4])).toThrow(/element counts differ/)
  })

  it('refuses use after dispose and mixing backends', () => {
    const t = gpu.tensor([1], [1])
    t.dispose()
    expect(() => add(t, t)).toThrow(/disposed/)
    expect(() => add(gpu.tensor([1], [1]), cpu.tensor([1], [1]))).toThrow(/different backends/)
    expect(() => gpu.tensor([1, 2, 3], [2])).toThrow(/3 elements given for shape \(2\)/)
  })

  it('tidy disposes intermediates and keeps results', () => {
    let mid: ReturnType<typeof add> | undefined
    const out = tidy(() => {
      const a = gpu.tensor([1, 2], [2])
      mid = add(a, a)
      return add(mid, a)
    })
    expect(mid!.disposed).toBe(true)
    expect(out.disposed).toBe(false)
  })

  it('splits large 1-D grids over two dimensions', () => {
    const max = gpu.info.limits.maxComputeWorkgroupsPerDimension
    expect(gpu.grid1d(10)).toEqual([10, 1])
    const [x, y] = gpu.grid1d(max * 3 + 1)
    expect(x).toBeLessThanOrEqual(max)
    expect(x * y).toBeGreaterThanOrEqual(max * 3 + 1)
  })

  it('runs an op over a 2-D grid correctly', async () => {
    // 256 × 70000 elements need > 65535 workgroups of 256.
    const n = 256 * 70000
    const a = new Float32Array(n)
    for (let i = 0; i < n; i += 997) a[i] = i % 4099 + 1 // exact in f32
    const out = await add(gpu.tensor(a, [n]), gpu.tensor(a, [n])).readF32()
    for (let i = 0; i < n; i += 997) if (out[i] !== 2 * a[i]) throw new Error(`out[${i}] = ${out[i]}`)
    expect(out[n - 1]).toBe(2 * a[n - 1])
  })
})
