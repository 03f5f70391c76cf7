import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { dequantize } from '../../web/src/gpu/cpu/dequant.ts'
import { blockInfo, dtypeFromGgml } from '../../web/src/gpu/quant-types.ts'
import { ggmlTypeIds, ggmlTypeInfo } from '../../web/src/model/gguf/ggml-types.ts'
import { encodeValues } from '../../web/src/model/gguf/quantize.ts'
import { GgufType, parseGgufHeader, type GgufHeader } from '../../web/src/model/gguf/read.ts'
import { encodeGguf } from '../../web/src/model/gguf/write.ts'
import { TS_SAMPLE_TYPES, tsSample, tsSampleInput } from '../fixtures/gguf/ts-sample.ts'

/** Fixtures made by the Python gguf 0.19 package: test/fixtures/gguf/make_fixtures.py. */
const DIR = 'test/fixtures/gguf'

function open (file: string): { bytes: Uint8Array, h: GgufHeader } {
  const bytes = new Uint8Array(readFileSync(`${DIR}/${file}`))
  return { bytes, h: parseGgufHeader(bytes, bytes.byteLength, file) }
}

function tensorBytes (f: { bytes: Uint8Array, h: GgufHeader }, name: string): Uint8Array {
  const t = f.h.tensors.get(name)
  if (t === undefined) throw new Error(`fixture lacks tensor ${name}`)
  return f.bytes.subarray(t.offset, t.offset + t.bytes)
}

function f32Tensor (f: { bytes: Uint8Array, h: GgufHeader }, name: string): Float32Array {
  return new Float32Array(tensorBytes(f, name).slice().buffer)
}

function decode (f: { bytes: Uint8Array, h: GgufHeader }, name: string): Float32Array {
  const t = f.h.tensors.get(name)!
  return dequantize(dtypeFromGgml(t.type, name), tensorBytes(f, name), t.shape.reduce((a, b) => a * b, 1))
}

describe('GGUF fixtures from the Python gguf package', () => {
  it('our GGML type table has the block sizes gguf-py has', () => {
    const sizes = JSON.parse(readFileSync(`${DIR}/ggml-sizes.json`, 'utf8')) as Record<string, [number, number]>
    expect(ggmlTypeIds().sort((a, b) => a - b)).toEqual(Object.keys(sizes).map(Number).sort((a, b) => a - b))
    for (const [id, [elems, bytes]] of Object.entries(sizes)) {
      if (id === '9') { expect(ggmlTypeInfo(9)?.blockBytes).toBe(36); continue } // Q8_1: ggml's 36, gguf-py's stale 40
      expect(ggmlTypeInfo(Number(id)), `type ${id}`).toMatchObject({ blockElems: elems, blockBytes: bytes })
    }
    for (const [, id] of TS_SAMPLE_TYPES) {
      const info = ggmlTypeInfo(id)!
      expect(blockInfo(dtypeFromGgml(id, 'x'))).toEqual({ elems: info.blockElems, bytes: info.blockBytes })
    }
  })

  it('dequantize (the CPU twin) equals gguf.quants.dequantize for every type', () => {
    const types = open('types.gguf')
    const ref = open('types.ref.gguf')
    expect([...types.h.tensors.keys()]).toEqual(['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'])
    for (const name of types.h.tensors.keys()) {
      const want = f32Tensor(ref, name)
      const got = decode(types, name)
      let worst = 0
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1e-6, Math.abs(want[i])))
      expect(worst, name).toBeLessThanOrEqual(1e-6) // f32 products; the order of rounding may differ by an ulp
      expect(want.some(v => v !== 0), name).toBe(true)
    }
  })

  it('our quantizers give gguf-py\'s bytes (F16, BF16, Q8_0, Q4_0: llama.cpp reference rounding)', () => {
    const types = open('types.gguf')
    const ref = open('types.ref.gguf')
    for (const name of ['f16', 'bf16', 'q8_0', 'q4_0']) {
      const input = f32Tensor(ref, `input.${name}`)
      expect(encodeValues(types.h.tensors.get(name)!.type, input), name).toEqual(tensorBytes(types, name))
    }
  })

  it('reads gguf-py\'s model files: names, shapes (experts stacked), types, metadata', () => {
    const l = open('tiny-llama-q8_0.gguf')
    expect(l.h.metadata.get('general.architecture')?.value).toBe('llama')
    expect(l.h.metadata.get('llama.attention.head_count_kv')?.value).toBe(2)
    expect(l.h.tensors.get('blk.1.attn_k.weight')).toMatchObject({ shape: [32, 64], type: 8 })
    expect(l.h.tensors.get('output_norm.weight')).toMatchObject({ shape: [64], type: 0 })
    const m = open('tiny-mixtral-q8_0.gguf')
    expect(m.h.metadata.get('llama.expert_count')?.value).toBe(4)
    expect(m.h.tensors.get('blk.0.ffn_gate_exps.weight')).toMatchObject({ shape: [4, 96, 64], type: 8 })
    expect(m.h.tensors.get('blk.0.ffn_down_exps.weight')).toMatchObject({ shape: [4, 64, 96], type: 8 })
  })

  it('our writer\'s file (ts-written.gguf) is what it writes today, and gguf-py reads it as we do', async () => {
    const { metadata, tensors } = tsSample()
    const fresh = await encodeGguf(metadata, tensors)
    const committed = new Uint8Array(readFileSync(`${DIR}/ts-written.gguf`))
    expect(fresh).toEqual(committed) // else rerun make_ts_fixture.ts and make_fixtures.py
    const ours = parseGgufHeader(committed, committed.byteLength, 'ts-written.gguf')
    const seen = JSON.parse(readFileSync(`${DIR}/ts-written.check.json`, 'utf8')) as {
      alignment: number
      metadata: Record<string, { type: number, value: unknown }>
      tensors: Array<{ name: string, shape: number[], type: number, bytes: number, offset: number }>
    }
    expect(seen.alignment).toBe(ours.alignment)
    expect(Object.keys(seen.metadata)).toEqual([...ours.metadata.keys()])
    for (const [k, v] of ours.metadata) {
      expect(seen.metadata[k].type, k).toBe(v.type)
      const val = typeof v.value === 'bigint' ? Number(v.value) : v.value
      if (v.type === GgufType.FLOAT32) expect(seen.metadata[k].value).toBeCloseTo(val as number, 6)
      else expect(seen.metadata[k].value, k).toEqual(val)
    }
    expect(seen.tensors.map(t => t.name)).toEqual([...ours.tensors.keys()])
    for (const t of seen.tensors) expect(ours.tensors.get(t.name)).toEqual({ name: t.name, shape: t.shape, type: t.type, offset: t.offset, bytes: t.bytes })
  })

  it('gguf-py dequantizes our encodings to the values we encoded (within each type\'s precision)', () => {
    const ours = open('ts-written.gguf')
    const py = open('ts-written.ref.gguf')
    // Worst error relative to the row's largest magnitude: half a quantization step (Q4_0: a
    // full step where the block's extreme is negative and +8 clips to 7), plus the K-quants'
    // 6-bit sub-scales (Q4_K: 15 steps over a range of up to 2·amax).
    const tol: Record<string, number> = { f32: 0, f16: 1e-3, bf16: 4e-3, q8_0: 5e-3, q4_0: 0.13, q4_k: 0.1, q5_k: 0.05, q6_k: 0.025 }
    TS_SAMPLE_TYPES.forEach(([name], i) => {
      const x = tsSampleInput(100 + i)
      const got = f32Tensor(py, name)
      expect(decode(ours, name), name).toEqual(got) // our twin reads our bytes as gguf-py does
      for (let r = 0; r < 3; r++) {
        let amax = 0
        let err = 0
        for (let j = 0; j < 256; j++) {
          amax = Math.max(amax, Math.abs(x[256 * r + j]))
          err = Math.max(err, Math.abs(got[256 * r + j] - x[256 * r + j]))
        }
        expect(err / amax, `${name} row ${r}`).toBeLessThanOrEqual(tol[name])
      }
    })
  })
})
