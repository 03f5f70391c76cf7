import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { bf16ToF32, dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import type { WeightDType } from '../../web/src/gpu/dtype.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import { blockInfo, dtypeFromGgml, ggmlTypeOf, isWeightDType, storageBytes, UnsupportedDTypeError, WEIGHT_DTYPES } from '../../web/src/gpu/quant-types.ts'
import { testGpu } from '../helpers/gpu.ts'
import { f16Bits, randomWeightBytes } from '../helpers/weight-blocks.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

function block (bytes: number, fill: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(bytes)
  fill(new DataView(b.buffer), b)
  return b
}

/** The 12 scale bytes of a Q4_K/Q5_K block holding 6-bit scales sc[0..7] and mins m[0..7] (ggml-common.h layout). */
function packScalesK4 (sc: number[], m: number[]): number[] {
  const q = new Array<number>(12).fill(0)
  for (let j = 0; j < 4; j++) {
    q[j] = sc[j] | ((sc[j + 4] >> 4) << 6)
    q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6)
    q[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)
  }
  return q
}

describe('weight dtypes (quant-types.ts)', () => {
  it('block sizes, stored bytes and GGML ids follow ggml', () => {
    expect(blockInfo('q8_0')).toEqual({ elems: 32, bytes: 34 })
    expect(blockInfo('q4_0')).toEqual({ elems: 32, bytes: 18 })
    expect(blockInfo('q4_k')).toEqual({ elems: 256, bytes: 144 })
    expect(blockInfo('q5_k')).toEqual({ elems: 256, bytes: 176 })
    expect(blockInfo('q6_k')).toEqual({ elems: 256, bytes: 210 })
    expect(blockInfo('bf16')).toEqual({ elems: 1, bytes: 2 })
    expect(storageBytes('q4_k', [3, 512])).toBe(3 * 2 * 144)
    expect(storageBytes('q6_k', [2, 2, 256])).toBe(4 * 210)
    expect(storageBytes('bf16', [5, 3])).toBe(30)
    expect(storageBytes('f32', [5, 3])).toBe(60)
    expect(() => storageBytes('q4_0', [2, 48])).toThrow(/last dim 48 is not a multiple of the block of 32/)
    const ids: Record<number, WeightDType> = { 0: 'f32', 1: 'f16', 2: 'q4_0', 8: 'q8_0', 12: 'q4_k', 13: 'q5_k', 14: 'q6_k', 30: 'bf16' }
    for (const [id, dt] of Object.entries(ids)) {
      expect(dtypeFromGgml(Number(id), 't')).toBe(dt)
      expect(ggmlTypeOf(dt)).toBe(Number(id))
    }
    expect(() => dtypeFromGgml(11, 'blk.0.attn_q.weight')).toThrow(UnsupportedDTypeError)
    expect(() => dtypeFromGgml(11, 'blk.0.attn_q.weight')).toThrow(/'blk.0.attn_q.weight'.*GGML type 11 \(Q3_K\)/)
    expect(() => dtypeFromGgml(99, 'x')).toThrow(/GGML type 99 \(unknown\)/)
    expect(isWeightDType('q8')).toBe(false)
    expect(isWeightDType('i32')).toBe(false)
    expect(WEIGHT_DTYPES.every(isWeightDType)).toBe(true)
  })
})

describe('dequantize CPU twin (cpu/dequant.ts), hand-built blocks', () => {
  it('f16 and bf16 words', () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x3555])
    expect([...dequantize('f16', new Uint8Array(f16.buffer), 5)]).toEqual([1, -2, 2 ** -24, 65504, Math.fround(0.333251953125)])
    const bf = new Uint16Array([0x3f80, 0xc040, 0x3eab])
    expect([...dequantize('bf16', new Uint8Array(bf.buffer), 3)]).toEqual([1, -3, bf16ToF32(0x3eab)])
    expect(bf16ToF32(0x3eab)).toBe(0.333984375)
  })

  it('q8_0: d·q with int8 q', () => {
    const b = block(34, (v, u) => { v.setUint16(0, 0x3400, true); for (let i = 0; i < 32; i++) v.setInt8(2 + i, i * 8 - 128) })
    expect([...dequantize('q8_0', b, 32)]).toEqual(Array.from({ length: 32 }, (_, i) => 0.25 * (i * 8 - 128)))
  })

  it('q4_0: low nibbles are values 0..15, high nibbles 16..31, offset 8', () => {
    const b = block(18, (v, u) => { v.setUint16(0, 0x3800, true); for (let j = 0; j < 16; j++) u[2 + j] = j | ((15 - j) << 4) })
    const want = [...Array.from({ length: 16 }, (_, j) => 0.5 * (j - 8)), ...Array.from({ length: 16 }, (_, j) => 0.5 * (7 - j))]
    expect([...dequantize('q4_0', b, 32)]).toEqual(want)
  })

  // Sub-block scales and mins above 15 exercise the packed high bits of sub-blocks 4..7.
  const SC = [1, 2, 3, 4, 17, 33, 50, 63]
  const MN = [0, 5, 10, 20, 16, 32, 48, 63]

  it('q4_k: 8 sub-blocks of 32 with 6-bit scales and mins; each 32 bytes feed two sub-blocks', () => {
    const b = block(144, (v, u) => {
      v.setUint16(0, 0x3c00, true) // d = 1
      v.setUint16(2, 0x3800, true) // dmin = 0.5
      u.set(packScalesK4(SC, MN), 4)
      for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) u[16 + 32 * c + l] = (l % 16) | (((3 * l) % 16) << 4)
    })
    const got = dequantize('q4_k', b, 256)
    for (let s = 0; s < 8; s++) {
      for (let l = 0; l < 32; l++) {
        const q = s % 2 === 0 ? l % 16 : (3 * l) % 16
        expect(got[32 * s + l]).toBe(SC[s] * q - 0.5 * MN[s])
      }
    }
  })

  it('q5_k: as q4_k plus bit s of qh[l] worth 16 in sub-block s', () => {
    const b = block(176, (v, u) => {
      v.setUint16(0, 0x3800, true) // d = 0.5
      v.setUint16(2, 0x3c00, true) // dmin = 1
      u.set(packScalesK4(SC, MN), 4)
      for (let l = 0; l < 32; l++) u[16 + l] = (l * 37 + 11) & 0xff
      for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) u[48 + 32 * c + l] = ((l + c) % 16) | ((l % 16) << 4)
    })
    const got = dequantize('q5_k', b, 256)
    for (let s = 0; s < 8; s++) {
      const c = s >> 1
      for (let l = 0; l < 32; l++) {
        const lo = s % 2 === 0 ? (l + c) % 16 : l % 16
        const hi = (((l * 37 + 11) & 0xff) >> s) & 1
        expect(got[32 * s + l]).toBe(0.5 * SC[s] * (lo + 16 * hi) - MN[s])
      }
    }
  })

  it('q6_k: 4 low bits from ql, 2 high from qh, int8 scale per 16 values, offset 32, d last', () => {
    const b = block(210, (v, u) => {
      u.fill(0x21, 0, 128) //  low nibble 1, high nibble 2
      u.fill(0b11100100, 128, 192) // 2-bit fields 0, 1, 2, 3 for the four 32-value quarters
      for (let k = 0; k < 16; k++) v.setInt8(192 + k, k % 2 === 0 ? k + 1 : -(k + 1))
      v.setUint16(208, 0x3800, true) // d = 0.5
    })
    const got = dequantize('q6_k', b, 256)
    const qOfQuarter = [1 - 32, (1 | 1 << 4) - 32, (2 | 2 << 4) - 32, (2 | 3 << 4) - 32]
    for (let t = 0; t < 256; t++) {
      const h = t >> 7; const i = (t >> 5) & 3; const l = t & 31
      const k = 8 * h + 2 * i + (l >> 4)
      const sc = k % 2 === 0 ? k + 1 : -(k + 1)
      expect(got[t]).toBe(0.5 * sc * qOfQuarter[i])
    }
  })

  it('rejects partial blocks, short buffers and non-weight dtypes', () => {
    expect(() => dequantize('q4_k', new Uint8Array(144), 128)).toThrow(/not a whole number of 256-value blocks/)
    expect(() => dequantize('q8_0', new Uint8Array(40), 64)).toThrow(/need 68 bytes, got 40/)
    expect(() => dequantize('i32', new Uint8Array(4), 1)).toThrow(/not a weight dtype/)
  })
})

describe('weight tensors keep their file bytes (backend.tensor / read)', () => {
  const shapes: Record<WeightDType, number[]> = { f32: [3, 5], f16: [3, 5], bf16: [1, 7], q8_0: [3, 32], q4_0: [1, 32], q4_k: [2, 256], q5_k: [1, 512], q6_k: [3, 256] }
  for (const dtype of WEIGHT_DTYPES) {
    it(`${dtype}: bytes in, the same bytes out on CPU and WebGPU (odd sizes padded on upload)`, async () => {
      const shape = shapes[dtype]
      const bytes = randomWeightBytes(dtype, shape[0], shape[1], 11)
      expect(bytes.byteLength).toBe(storageBytes(dtype, shape))
      for (const be of [cpu, gpu]) {
        const t = be.tensor(bytes, shape, dtype)
        expect(t.storage.bytes).toBe(bytes.byteLength)
        const back = await t.read()
        expect(new Uint8Array(back.buffer, back.byteOffset, back.byteLength)).toEqual(bytes)
        if (dtype === 'f16' || dtype === 'bf16') expect(back).toBeInstanceOf(Uint16Array)
        t.dispose()
      }
    })
  }

  it('rejects byte counts and array types that do not match the dtype and shape', () => {
    for (const be of [cpu, gpu]) {
      expect(() => be.tensor(new Uint8Array(35), [1, 32], 'q8_0')).toThrow(/35 bytes given for q8_0 shape \(1, 32\) \(expected 34\)/)
      expect(() => be.tensor(new Uint8Array(144), [1, 128], 'q4_k')).toThrow(/not a multiple of the block of 256/)
      expect(() => be.tensor(new Float32Array(8), [1, 32], 'q4_0')).toThrow(/must be a Uint8Array/)
      expect(() => be.tensor(new Uint8Array(5), [1, 3], 'bf16')).toThrow(/5 bytes given for bf16/)
      expect(() => be.tensor(new Float32Array(3), [3], 'f16')).toThrow(/Uint16Array of words or a Uint8Array/)
    }
  })

  it('zeros of a block dtype are valid all-zero blocks', async () => {
    const z = cpu.zeros([2, 32], 'q4_0')
    expect(z.storage.bytes).toBe(36)
    expect([...dequantize('q4_0', z.data as Uint8Array, 64)].every(x => x === 0)).toBe(true)
    expect(f16Bits(1)).toBe(0x3c00)
  })
})
