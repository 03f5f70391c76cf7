import { beforeAll, describe, expect, it } from 'vitest'
import { attention, attentionBackward, kvWrite, TOLERANCE, type AttentionOptions } from '../../web/src/gpu/ops/attention.ts'
import * as twin from '../../web/src/gpu/cpu/attention.ts'
import { f16ToF32 } from '../../web/src/gpu/cpu/quant.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { tidy } from '../../web/src/gpu/tensor.ts'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { config, modelOn, randomIds, randomWeights } from '../model/helpers.ts'

/*
 * The f16 KV cache needs an adapter with `shader-f16`: SwiftShader has none, so this file runs in
 * `npm run test:f16` (vitest.f16.config.ts), on Mesa 25's lavapipe.
 */

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

const decode = (bits: Uint16Array): Float32Array => Float32Array.from(bits, f16ToF32)

describe('f32ToF16 (the twin of the f16 cache write)', () => {
  it('rounds to the nearest half, ties to even, and saturates to infinity past 65504', () => {
    const cases: Array<[number, number]> = [
      [0, 0], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519.99, 0x7bff], [65520, 0x7c00],
      [2 ** -24, 0x0001], [2 ** -25, 0], [3 * 2 ** -25, 0x0002], [2 ** -14, 0x0400], [2 ** -14 - 2 ** -25, 0x0400],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [NaN, 0x7e00], [Infinity, 0x7c00]
    ]
    for (const [x, bits] of cases) expect([x, twin.f32ToF16(x)]).toEqual([x, bits])
  })

  it('is the nearest half for random values of every magnitude', () => {
    const rng = new Rng(1)
    for (let i = 0; i < 2000; i++) {
      const x = Math.fround((rng.next() * 2 - 1) * 2 ** (rng.int(40) - 24))
      const h = twin.f32ToF16(x)
      const err = Math.abs(f16ToF32(h) - x)
      for (const n of [h - 1, h + 1]) if ((n & 0x7fff) < 0x7c00 && (n & 0x7c00) === (h & 0x7c00)) expect(err).toBeLessThanOrEqual(Math.abs(f16ToF32(n) - x))
    }
  })
})

describe('f16 KV cache on the GPU (shader-f16) vs the CPU twin', () => {
  it('runs on an adapter with shader-f16', () => {
    expect(gpu.info.f16, `adapter ${gpu.info.description}: install Mesa 25 lavapipe (bookworm-backports mesa-vulkan-drivers)`).toBe(true)
  })

  it('kvWrite rounds rows into place and leaves the others', async () => {
    const [S, Hkv, D] = [7, 3, 5]
    const rng = new Rng(2)
    const x = rng.uniform(4 * Hkv * D, -3, 3)
    x[0] = 1e-6 // subnormal in f16
    x[1] = 1 + 2 ** -11 // a tie
    const g = gpu.zeros([S, Hkv, D], 'f16')
    const c = cpu.zeros([S, Hkv, D], 'f16')
    kvWrite(g, gpu.tensor(x, [4, Hkv, D]), 2)
    kvWrite(c, cpu.tensor(x, [4, Hkv, D]), 2)
    const got = await g.read()
    expect(got).toBeInstanceOf(Uint16Array)
    assertClose(decode(got as Uint16Array), decode(c.data as Uint16Array), { ...TOLERANCE.kvWriteF16, what: 'f16 cache' })
    const row = Hkv * D
    expect([...(got as Uint16Array).subarray(0, 2 * row), ...(got as Uint16Array).subarray(6 * row)].every(b => b === 0)).toBe(true)
  })

  /**
   * (T, S, Hq, Hkv, D, kvLen): decode, a short prefill continuing a cache, GQA, an odd head dim, a
   * long cache. Few head dims: each is a new pipeline per kernel, and lavapipe compiles slowly.
   */
  const CASES: Array<[number, number, number, number, number, number]> = [[1, 9, 4, 2, 16, 9], [3, 33, 2, 1, 7, 20], [6, 8, 4, 4, 16, 6], [1, 300, 2, 2, 16, 300]]
  for (const [T, S, Hq, Hkv, D, kvLen] of CASES) {
    it(`attention on an f16 cache: T=${T} S=${S} Hq/Hkv=${Hq}/${Hkv} D=${D} kvLen=${kvLen}, every kernel`, async () => {
      const rng = new Rng(T * 1000 + S)
      const q = rng.uniform(T * Hq * D)
      const kv = [rng.uniform(S * Hkv * D), rng.uniform(S * Hkv * D)].map(a => Uint16Array.from(a, twin.f32ToF16))
      const dims = { T, S, Hq, Hkv, D, kvLen, qOffset: kvLen - T, scale: 1 / Math.sqrt(D), causal: true }
      const ref = twin.attention(q, decode(kv[0]), decode(kv[1]), dims)
      const [k, v] = kv.map(a => gpu.tensor(a, [S, Hkv, D], 'f16'))
      const variants: AttentionOptions[] = [{ kernel: 'prefill' }, { kernel: 'decode', decodeSplits: 1 }, { kernel: 'decode', decodeSplits: 3 }, { kernel: 'rows', decodeSplits: 2 }]
      for (const variant of variants) {
        const got = attention(gpu.tensor(q, [T, Hq, D]), k, v, { kvLen, ...variant })
        assertClose(await got.out.readF32(), ref.out, { ...TOLERANCE.attention, what: `out ${JSON.stringify(variant)}` })
        assertClose(await got.lse.readF32(), ref.lse, { ...TOLERANCE.attention, what: `lse ${JSON.stringify(variant)}` })
      }
      const [ck, cv] = kv.map(a => cpu.tensor(a, [S, Hkv, D], 'f16'))
      expect(attention(cpu.tensor(q, [T, Hq, D]), ck, cv, { kvLen }).out.data).toEqual(Float32Array.from(ref.out))
    })
  }

  it('refuses mixed k/v dtypes, an f16 backward, and f16 on an adapter without shader-f16', async () => {
    const q = gpu.zeros([1, 2, 4])
    const k16 = gpu.zeros([3, 2, 4], 'f16')
    expect(() => attention(q, k16, gpu.zeros([3, 2, 4]))).toThrow(/attention: k and v must share a dtype .* got k f16 and v f32/)
    expect(() => attentionBackward(q, k16, k16, q, gpu.zeros([2, 1]), q)).toThrow(/attentionBackward: k must be f32, got f16/)
    const noF16 = await GpuBackend.create({ allowF16: false })
    expect(noF16.info.f16).toBe(false)
    expect(() => kvWrite(noF16.zeros([3, 2, 4], 'f16'), noF16.zeros([1, 2, 4]), 0)).toThrow(ShapeError)
    expect(() => attention(noF16.zeros([1, 2, 4]), noF16.zeros([3, 2, 4], 'f16'), noF16.zeros([3, 2, 4], 'f16'))).toThrow(/attention: an f16 KV cache needs the shader-f16 feature/)
  })
})

describe('a model session with an f16 KV cache', () => {
  /** Logits of each step, feeding `ids` in chunks through a session cache of `dtype`. */
  async function sessionLogits (be: Backend, dtype: 'f32' | 'f16', ids: number[]): Promise<Float32Array[]> {
    const c = config('mistralDeep') // GQA 2:1, 4 layers
    const m = modelOn(be, c, randomWeights(c, 7))
    const cache = m.span.newCache(ids.length, dtype)
    expect(cache.layers[0].k.dtype).toBe(dtype)
    const out: Float32Array[] = []
    for (const [from, to] of [[0, 5], [5, 6], [6, 7], [7, ids.length]]) {
      out.push(await tidy(() => m.head.forward(m.span.forward(m.embedding.forward(ids.slice(from, to)), cache))).readF32())
    }
    cache.dispose()
    m.dispose()
    return out
  }

  it('on the GPU matches the CPU twin with an f16 cache (prefill, then decode steps)', async () => {
    const ids = randomIds(9, config('mistralDeep').vocabSize, 3)
    const want = await sessionLogits(cpu, 'f16', ids)
    const got = await sessionLogits(gpu, 'f16', ids)
    got.forEach((g, i) => assertClose(g, want[i], { atol: 1e-3, rtol: 0, what: `step ${i}` }))
    // The f16 rounding is visible (the test can tell the caches apart) but small.
    const f32 = await sessionLogits(cpu, 'f32', ids)
    const diff = Math.max(...want.flatMap((w, i) => Array.from(w, (x, j) => Math.abs(x - f32[i][j]))))
    expect(diff).toBeGreaterThan(0)
    expect(diff).toBeLessThan(0.05)
  })
})

describe('the default KV cache dtype', () => {
  it('is f16 on a device with shader-f16 and f32 on the CPU (and on SwiftShader, which lacks it)', () => {
    const c = config('mistralDeep')
    for (const [be, want] of [[gpu, 'f16'], [cpu, 'f32']] as const) {
      const m = modelOn(be, c, randomWeights(c, 7))
      const cache = m.span.newCache(4)
      expect(cache.dtype).toBe(want)
      expect(cache.layers[0].k.dtype).toBe(want)
      cache.dispose()
      m.dispose()
    }
  })
})
