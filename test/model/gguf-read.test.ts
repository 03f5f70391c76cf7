import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { gguf as hfGguf } from '@huggingface/gguf'
import { CorruptWeightsError, UnsupportedDTypeError } from '../../web/src/model/errors.ts'
import { UnsupportedGgufError } from '../../web/src/model/gguf/errors.ts'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { GgufType, parseGgufHeader, readGgufHeader, readGgufTensor, type GgufValue } from '../../web/src/model/gguf/read.ts'
import { encodeGguf, gv, type GgufWriteTensor } from '../../web/src/model/gguf/write.ts'
import { blobSource, directorySource, sourceFrom } from '../../web/src/model/source.ts'
import { Rng } from '../../web/src/util/rng.ts'

function values (n: number, seed: number): Float32Array {
  const rng = new Rng(seed)
  return Float32Array.from({ length: n }, () => rng.normal())
}

/** Every metadata value type, and tensors of every type the writer encodes (odd row counts). */
function sample (): { metadata: Map<string, GgufValue>, tensors: GgufWriteTensor[] } {
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', gv.str('llama')],
    ['general.name', gv.str('naïve ✓ model')],
    ['t.u8', { type: GgufType.UINT8, value: 250 }],
    ['t.i8', { type: GgufType.INT8, value: -100 }],
    ['t.u16', { type: GgufType.UINT16, value: 65000 }],
    ['t.i16', { type: GgufType.INT16, value: -30000 }],
    ['t.u32', gv.u32(4_000_000_000)],
    ['t.i32', gv.i32(-2_000_000_000)],
    ['t.f32', gv.f32(0.5)],
    ['t.bool', gv.bool(true)],
    ['t.u64', gv.u64(2n ** 60n)],
    ['t.i64', { type: GgufType.INT64, value: -(2n ** 40n) }],
    ['t.f64', { type: GgufType.FLOAT64, value: Math.PI }],
    ['t.strs', gv.arr(GgufType.STRING, ['a', '', 'ü'])],
    ['t.ints', gv.arr(GgufType.INT32, [1, -2, 3])],
    ['t.empty', gv.arr(GgufType.FLOAT32, [])]
  ])
  const tensors: GgufWriteTensor[] = [
    { name: 'norm', shape: [7], type: GGML.F32, data: values(7, 1) },
    { name: 'f16', shape: [3, 5], type: GGML.F16, data: values(15, 2) },
    { name: 'bf16', shape: [2, 3, 4], type: GGML.BF16, data: values(24, 3) },
    { name: 'q8', shape: [3, 64], type: GGML.Q8_0, data: values(192, 4) },
    { name: 'q4', shape: [5, 32], type: GGML.Q4_0, data: values(160, 5) },
    { name: 'q4k', shape: [3, 256], type: GGML.Q4_K, data: values(768, 6) },
    { name: 'q5k', shape: [1, 512], type: GGML.Q5_K, data: (start, count) => values(512 * count, 7 + start) },
    { name: 'q6k', shape: [2, 256], type: GGML.Q6_K, data: values(512, 8) }
  ]
  return { metadata, tensors }
}

async function sampleFile (alignment?: number): Promise<{ dir: string, bytes: Uint8Array }> {
  const { metadata, tensors } = sample()
  const bytes = await encodeGguf(metadata, tensors, alignment)
  const dir = mkdtempSync(`${tmpdir()}/gguf-read-`)
  writeFileSync(`${dir}/m.gguf`, bytes)
  return { dir, bytes }
}

describe('GGUF reader', () => {
  it('reads back what the writer wrote: every value type, every tensor type, shapes and extents', async () => {
    const { dir, bytes } = await sampleFile()
    const h = await readGgufHeader(directorySource(dir), 'm.gguf')
    const { metadata, tensors } = sample()
    expect(h.version).toBe(3)
    expect(h.alignment).toBe(32)
    expect([...h.metadata.keys()]).toEqual([...metadata.keys()])
    for (const [k, v] of metadata) {
      const got = h.metadata.get(k)
      expect(got?.type, k).toBe(v.type)
      if (v.type === GgufType.FLOAT32) expect(got?.value).toBeCloseTo(v.value as number, 6)
      else expect(got?.value, k).toEqual(v.value)
    }
    expect([...h.tensors.keys()]).toEqual(tensors.map(t => t.name))
    for (const t of tensors) {
      const info = h.tensors.get(t.name)
      expect(info?.shape).toEqual(t.shape)
      expect(info?.type).toBe(t.type)
      expect((info?.offset ?? 1) % 32).toBe(0)
    }
    // F32 data round-trips exactly; the last tensor ends within the file.
    const norm = await readGgufTensor(directorySource(dir), 'm.gguf', h.tensors.get('norm')!)
    expect(new Float32Array(norm.slice().buffer)).toEqual(values(7, 1))
    const q6 = h.tensors.get('q6k')!
    expect(q6.bytes).toBe(2 * 210)
    expect(q6.offset + q6.bytes).toBeLessThanOrEqual(bytes.byteLength)
  })

  it('honours general.alignment', async () => {
    const { dir } = await sampleFile(64)
    const h = await readGgufHeader(directorySource(dir), 'm.gguf')
    expect(h.alignment).toBe(64)
    for (const t of h.tensors.values()) expect(t.offset % 64).toBe(0)
  })

  it('parses to the same metadata and tensor list as @huggingface/gguf', async () => {
    const { dir } = await sampleFile()
    const ours = await readGgufHeader(directorySource(dir), 'm.gguf')
    const theirs = await hfGguf(`${dir}/m.gguf`, { allowLocalFile: true })
    for (const [k, v] of ours.metadata) {
      const t = (theirs.metadata as Record<string, unknown>)[k]
      if (v.type === GgufType.FLOAT32) expect(t).toBeCloseTo(v.value as number, 6)
      else expect(t, k).toEqual(v.value)
    }
    expect(theirs.tensorInfos.map(t => t.name)).toEqual([...ours.tensors.keys()])
    for (const ti of theirs.tensorInfos) {
      const o = ours.tensors.get(ti.name)!
      expect(ti.shape.map(Number).reverse()).toEqual(o.shape)
      expect(Number(ti.dtype)).toBe(o.type)
      expect(Number(ti.offset) + ours.dataStart).toBe(o.offset)
    }
  })

  it('reads a large header in several range reads, and only header bytes', async () => {
    const metadata = new Map<string, GgufValue>([['tokens', gv.arr(GgufType.STRING, Array.from({ length: 200_000 }, (_, i) => `token-${i}`))]])
    const bytes = await encodeGguf(metadata, [{ name: 'w', shape: [1024, 1024], type: GGML.F32, data: new Uint8Array(4 << 20) }])
    const reads: Array<[number, number]> = []
    const src = blobSource(new Map([['big.gguf', new Blob([bytes.slice()])]]))
    const spy = { ...src, read: async (f: string, o: number, n: number) => { reads.push([o, n]); return await src.read(f, o, n) } }
    const h = await readGgufHeader(spy, 'big.gguf')
    expect((h.metadata.get('tokens')?.value as string[])[199_999]).toBe('token-199999')
    expect(reads.length).toBeGreaterThan(1)
    const read = reads.reduce((a, [, n]) => a + n, 0)
    expect(read).toBeGreaterThanOrEqual(h.dataStart)
    expect(read).toBeLessThan(h.dataStart + (2 << 20)) // doubling overshoots by less than the header
  })

  it('names what is wrong with corrupt, truncated or unsupported files', async () => {
    const { bytes } = await sampleFile()
    const bad = (mut: (b: Uint8Array, dv: DataView) => Uint8Array | void): Uint8Array => {
      const b = bytes.slice()
      return mut(b, new DataView(b.buffer)) ?? b
    }
    const parse = (b: Uint8Array): unknown => parseGgufHeader(b, b.byteLength, 'x.gguf')
    expect(() => parse(bad(b => { b[0] = 0 }))).toThrow(/not a GGUF file/)
    expect(() => parse(bad((_, dv) => { dv.setUint32(4, 2, true) }))).toThrow(UnsupportedGgufError)
    expect(() => parse(bad((_, dv) => { dv.setUint32(4, 2, true) }))).toThrow(/version 2/)
    expect(() => parse(bad((_, dv) => { dv.setBigUint64(8, 1n << 40n, true) }))).toThrow(/tensor count .* exceeds/)
    // Truncated: inside the header, and inside the last tensor's data.
    expect(() => parse(bytes.subarray(0, 100))).toThrow(CorruptWeightsError)
    expect(() => parse(bytes.subarray(0, bytes.byteLength - 200))).toThrow(/'q6k'.*past the end.*truncated/)
    expect(() => parse(new Uint8Array(2))).toThrow(/too short/)
    // The first key's value type (offset: 24 + 8 + len('general.architecture')) set to 99.
    expect(() => parse(bad((_, dv) => { dv.setUint32(24 + 8 + 20, 99, true) }))).toThrow(/'general.architecture': unknown value type 99/)
  })

  it('sourceFrom takes a .gguf path, URL or one picked File as a single-file source', () => {
    expect(sourceFrom('/models/a/llama.Q4_K_M.gguf')).toMatchObject({ label: '/models/a', file: 'llama.Q4_K_M.gguf' })
    expect(sourceFrom('m.gguf')).toMatchObject({ label: '.', file: 'm.gguf' })
    expect(sourceFrom('https://host/org/repo/resolve/main/x.gguf')).toMatchObject({ label: 'https://host/org/repo/resolve/main', file: 'x.gguf' })
    expect(sourceFrom('https://host/models/default').file).toBeUndefined()
    expect(sourceFrom(new Map([['x.gguf', new Blob([])], ['notes.txt', new Blob([])]])).file).toBe('x.gguf')
    expect(sourceFrom(new Map([['config.json', new Blob([])], ['model.safetensors', new Blob([])]])).file).toBeUndefined()
  })

  it('rejects an unknown tensor type id naming the tensor', async () => {
    const b = await encodeGguf(new Map(), [{ name: 'w', shape: [2, 32], type: GGML.Q8_0, data: values(64, 1) }])
    const dv = new DataView(b.buffer)
    // Tensor info after the 24-byte preamble: name (8 + 1), n_dims (4), ne (2 × 8), then the type.
    const at = 24 + 9 + 4 + 16
    expect(dv.getUint32(at, true)).toBe(GGML.Q8_0)
    dv.setUint32(at, 77, true)
    expect(() => parseGgufHeader(b, b.byteLength, 'x.gguf')).toThrow(UnsupportedDTypeError)
    expect(() => parseGgufHeader(b, b.byteLength, 'x.gguf')).toThrow(/'w' has unknown GGML type id 77/)
  })
})
