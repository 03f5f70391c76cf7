/**
 * GGUF models end to end: files written by gguf-py (the converter's layout) and by our writer,
 * loaded with weights kept in their file dtype, against the same weights decoded on the host and
 * run through the f32 path; every tensor type, each architecture, CPU and WebGPU.
 */
import { describe, expect, it, beforeAll } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import type { Backend } from '../../web/src/gpu/backend.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { parseConfig, type ModelConfig } from '../../web/src/model/config.ts'
import { CorruptWeightsError, MissingTensorError, TensorShapeMismatchError, UnsupportedDTypeError } from '../../web/src/model/errors.ts'
import { GgufMetadataError, UnsupportedGgufError } from '../../web/src/model/gguf/errors.ts'
import { GGML, ggmlTypeName } from '../../web/src/model/gguf/ggml-types.ts'
import { gv } from '../../web/src/model/gguf/write.ts'
import { loadBlocks, loadConfig, loadModel, loadPart, type CausalLM } from '../../web/src/model/model.ts'
import { encodeSafetensors } from '../../web/src/model/safetensors.ts'
import { blobSource, sourceFrom, withFile, type ModelSource } from '../../web/src/model/source.ts'
import { lossAndGradients } from '../../web/src/model/train.ts'
import { decodeSafetensors } from '../../web/src/model/safetensors.ts'
import type { HostWeights } from '../../web/src/model/weights.ts'
import { assertClose, relL2 } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'
import { modelGguf, roundTrip } from './gguf-helpers.ts'
import { modelOn, randomIds, randomWeights } from './helpers.ts'

const T = 5
/** Quantized kernels vs the f32 path on the same decoded values: only summation order differs. */
const CPU_TOL = { atol: 1e-4, rtol: 1e-4 }
const GPU_TOL = { atol: 2e-3, rtol: 1e-3 }

let gpu: Backend
beforeAll(async () => { gpu = await testGpu() })

function memSource (name: string, bytes: Uint8Array): ModelSource {
  return withFile(blobSource(new Map([[name, new Blob([bytes.slice()])]])), name)
}

async function logitsOf (m: CausalLM, ids: number[]): Promise<Float32Array> {
  const out = await m.logits(ids).readF32()
  return out
}

/** K-quants need rows of 256: every weight's input dim (C, H·D, I) is 256 here. */
const K256 = { hidden_size: 256, intermediate_size: 256, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, vocab_size: 37, num_hidden_layers: 2, rms_norm_eps: 1e-5 } // 2 layers: spans and partial loads need more than one
const ARCHS: Record<string, Record<string, unknown>> = {
  llama: { architectures: ['LlamaForCausalLM'], ...K256, rope_theta: 500000 },
  qwen2: { architectures: ['Qwen2ForCausalLM'], ...K256, rope_theta: 1e6 },
  qwen3: { architectures: ['Qwen3ForCausalLM'], ...K256, rope_theta: 1e6, rms_norm_eps: 1e-6 },
  mixtral: { architectures: ['MixtralForCausalLM'], ...K256, num_hidden_layers: 1, num_local_experts: 3, num_experts_per_tok: 2, rope_theta: 1e6 }
}
const TYPES = [GGML.F32, GGML.F16, GGML.BF16, GGML.Q8_0, GGML.Q4_0, GGML.Q4_K, GGML.Q5_K, GGML.Q6_K]

function setup (arch: string, seed: number): { c: ModelConfig, host: HostWeights, ids: number[] } {
  const c = parseConfig(ARCHS[arch])
  return { c, host: randomWeights(c, seed, 0.08), ids: randomIds(T, c.vocabSize, seed + 1) }
}

describe('GGUF files written by gguf-py (llama.cpp converter layout)', () => {
  for (const name of ['tiny-llama', 'tiny-mixtral']) {
    it(`${name}: Q/K permutation undone, names mapped, experts stacked — logits equal the HF model's on the same Q8_0 values`, async () => {
      const hf = decodeSafetensors(new Uint8Array(readFileSync(`test/fixtures/${name}/model.safetensors`)))
      const c = parseConfig(JSON.parse(readFileSync(`test/fixtures/${name}/config.json`, 'utf8')))
      const ref = JSON.parse(readFileSync(`test/fixtures/${name}/reference.json`, 'utf8')) as { prompt: number[], logits: number[][] }
      // HF names → in-memory names (experts stacked) for the reference model.
      const m0 = await loadModel(sourceFrom(`test/fixtures/${name}`), cpu)
      const host: HostWeights = new Map()
      for (const [n, t] of m0.params) host.set(n, { shape: [...t.shape], data: (await t.readF32()).slice() })
      expect(hf.tensors.size).toBeGreaterThan(0)
      const want = await logitsOf(modelOn(cpu, c, roundTrip(host, GGML.Q8_0)), ref.prompt)

      const m = await loadModel(`test/fixtures/gguf/${name}-q8_0.gguf`, cpu)
      expect(m.config).toMatchObject({ hiddenSize: c.hiddenSize, numKvHeads: c.numKvHeads, numExperts: c.numExperts, vocabSize: c.vocabSize, tieWordEmbeddings: false, ropeTheta: c.ropeTheta })
      expect(m.params.get('model.layers.0.self_attn.q_proj.weight')?.dtype).toBe('q8_0')
      expect(m.params.get('model.norm.weight')?.dtype).toBe('f32')
      assertClose(await logitsOf(m, ref.prompt), want, { ...CPU_TOL, what: `${name} gguf vs HF on Q8_0 values` })
      // And close to PyTorch's f32 logits (Q8_0 moves them a little).
      expect(relL2(await logitsOf(m, ref.prompt), ref.logits.flat())).toBeLessThan(0.03)
    })
  }
})

describe('every tensor type: file dtype kept on the backend vs decoded on the host', () => {
  for (const type of TYPES) {
    it(`llama ${ggmlTypeName(type)} (CPU and WebGPU)`, async () => {
      const { c, host, ids } = setup('llama', 10 + type)
      const src = memSource('m.gguf', await modelGguf(c, host, { type }))
      const want = await logitsOf(modelOn(cpu, c, roundTrip(host, type)), ids)
      const mc = await loadModel(src, cpu)
      const kept = type === GGML.F32 ? 'f32' : ggmlTypeName(type).toLowerCase()
      expect(mc.params.get('model.layers.1.mlp.down_proj.weight')?.dtype).toBe(kept)
      expect(mc.params.get('model.embed_tokens.weight')?.dtype).toBe(kept)
      assertClose(await logitsOf(mc, ids), want, { ...CPU_TOL, what: `cpu ${kept}` })
      const mg = await loadModel(src, gpu)
      assertClose(await logitsOf(mg, ids), want, { ...GPU_TOL, what: `webgpu ${kept}` })
      mg.dispose()
      // keepDtypes: false decodes on the host: the same values in f32.
      const wide = await loadModel(src, cpu, { keepDtypes: false })
      expect(wide.params.get('model.layers.1.mlp.down_proj.weight')?.dtype).toBe('f32')
      assertClose(await logitsOf(wide, ids), want, { ...CPU_TOL, what: `host-decoded ${kept}` })
    })
  }
})

describe('architectures', () => {
  for (const arch of ['qwen2', 'qwen3', 'mixtral']) {
    for (const type of [GGML.Q8_0, GGML.Q4_K]) {
      it(`${arch} ${ggmlTypeName(type)} (CPU and WebGPU)`, async () => {
        const { c, host, ids } = setup(arch, 40 + type)
        const src = memSource('m.gguf', await modelGguf(c, host, { type }))
        const got = await loadConfig(src)
        expect({ ...got, rmsNormEps: 0 }).toEqual({ ...c, rmsNormEps: 0 })
        expect(got.rmsNormEps).toBe(Math.fround(c.rmsNormEps)) // an f32 in the file, as llama.cpp reads it
        const want = await logitsOf(modelOn(cpu, c, roundTrip(host, type)), ids)
        assertClose(await logitsOf(await loadModel(src, cpu), ids), want, { ...CPU_TOL, what: `${arch} cpu` })
        const mg = await loadModel(src, gpu)
        assertClose(await logitsOf(mg, ids), want, { ...GPU_TOL, what: `${arch} webgpu` })
        mg.dispose()
      })
    }
  }

  it('a Q/K-permuted llama file gives the HF-layout model\'s logits; an unpermuted one does not', async () => {
    const { c, host, ids } = setup('llama', 3)
    const want = await logitsOf(modelOn(cpu, c, host), ids)
    const permuted = await loadModel(memSource('m.gguf', await modelGguf(c, host, { type: GGML.F32 })), cpu)
    assertClose(await logitsOf(permuted, ids), want, { atol: 1e-5, rtol: 1e-5, what: 'permuted file' })
    const plain = await loadModel(memSource('m.gguf', await modelGguf(c, host, { type: GGML.F32, permute: false })), cpu)
    const wrong = await logitsOf(plain, ids)
    expect(Math.max(...wrong.map((v, i) => Math.abs(v - want[i])))).toBeGreaterThan(1e-3)
  })

  it('Llama 3.1 RoPE scaling: rope_freqs.weight gives the logits of the HF llama3 rope_scaling config', async () => {
    const c = parseConfig({ ...ARCHS.llama, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 } })
    expect(new Set(c.ropeFreqFactors).size).toBeGreaterThan(2) // 1, blended, 32
    const host = randomWeights(c, 21, 0.08)
    const ids = randomIds(T, c.vocabSize, 22)
    const m = await loadModel(memSource('m.gguf', await modelGguf(c, host, { type: GGML.Q8_0 })), cpu)
    expect(m.config.ropeFreqFactors).toEqual(c.ropeFreqFactors?.map(Math.fround))
    const want = await logitsOf(modelOn(cpu, c, roundTrip(host, GGML.Q8_0)), ids)
    assertClose(await logitsOf(m, ids), want, { ...CPU_TOL, what: 'rope_freqs' })
    const plain = await logitsOf(modelOn(cpu, { ...c, ropeFreqFactors: undefined }, roundTrip(host, GGML.Q8_0)), ids)
    expect(Math.max(...plain.map((v, i) => Math.abs(v - want[i])))).toBeGreaterThan(1e-3) // the factors matter
  })

  it('ties the head to token_embd when output.weight is absent; reads rope theta, eps, context, tokens ids', async () => {
    const c = { ...parseConfig({ ...ARCHS.llama, tie_word_embeddings: true }) }
    const host = randomWeights(c, 5, 0.08)
    const md = new Map([['llama.context_length', gv.u32(4096)], ['tokenizer.ggml.bos_token_id', gv.u32(1)], ['tokenizer.ggml.eos_token_id', gv.u32(2)], ['tokenizer.ggml.eot_token_id', gv.u32(7)]])
    const src = memSource('m.gguf', await modelGguf(c, host, { type: GGML.Q6_K, metadata: md }))
    const m = await loadModel(src, cpu)
    expect(m.config).toMatchObject({ tieWordEmbeddings: true, ropeTheta: 500000, rmsNormEps: Math.fround(1e-5), maxPositions: 4096, bosTokenId: 1, eosTokenIds: [2, 7] })
    expect(m.params.has('lm_head.weight')).toBe(false)
    const ids = randomIds(T, c.vocabSize, 6)
    assertClose(await logitsOf(m, ids), await logitsOf(modelOn(cpu, c, roundTrip(host, GGML.Q6_K)), ids), { ...CPU_TOL, what: 'tied head' })
  })
})

describe('weights larger than one binding', () => {
  it('are split into row parts transparently (a forced small limit): same logits', async () => {
    const { GpuBackend } = await import('../../web/src/gpu/gpu-backend.ts')
    // 8 KiB splits llama's projections and embedding; 80 kB splits the stacked experts (69 kB each) by expert.
    for (const [arch, type, limit, param] of [['llama', GGML.Q8_0, 8192, 'model.layers.0.self_attn.q_proj.weight'], ['mixtral', GGML.Q8_0, 80_000, 'model.layers.0.block_sparse_moe.experts.*.w2.weight']] as const) {
      const small = await GpuBackend.create({ maxBindingBytes: limit })
      const { c, host, ids } = setup(arch, 60 + type)
      const src = memSource('m.gguf', await modelGguf(c, host, { type }))
      const m = await loadModel(src, small)
      expect(m.params.get(param)?.storage.parts?.length ?? 0).toBeGreaterThan(1)
      assertClose(await logitsOf(m, ids), await logitsOf(modelOn(cpu, c, roundTrip(host, type)), ids), { ...GPU_TOL, what: `${arch} split` })
      m.dispose()
    }
  })
})

describe('partial loads and training', () => {
  it('a block server reads only its blocks\' bytes; a client only the embedding and head', async () => {
    const { c, host } = setup('llama', 8)
    const bytes = await modelGguf(c, host, { type: GGML.Q4_K })
    const reads: Array<[number, number]> = []
    const inner = memSource('m.gguf', bytes)
    const spy: ModelSource = { ...inner, read: async (f, o, n) => { reads.push([o, n]); return await inner.read(f, o, n) } }
    const span = await loadBlocks(spy, cpu, { start: 1, end: 2 })
    const h = await (await import('../../web/src/model/gguf/read.ts')).readGgufHeader(inner, 'm.gguf')
    const blk1 = [...h.tensors.values()].filter(t => t.name.startsWith('blk.1.'))
    const lo = Math.min(...blk1.map(t => t.offset))
    const hi = Math.max(...blk1.map(t => t.offset + t.bytes))
    const inBlock = (o: number, n: number): boolean => o >= lo && o + n <= hi
    const data = reads.filter(([o]) => o >= h.dataStart)
    expect(data.length).toBeGreaterThan(0)
    expect(data.every(([o, n]) => inBlock(o, n)), JSON.stringify(data)).toBe(true)
    expect([...span.params.keys()].every(k => k.startsWith('model.layers.1.'))).toBe(true)
    const ends = await loadPart(inner, cpu, { blocks: { start: 0, end: 0 }, embedding: true, head: true })
    expect([...ends.params.keys()].sort()).toEqual(['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight'])
  })

  it('loads from an http URL ending in .gguf with range requests (header first, then only tensor bytes)', async () => {
    const { createServer } = await import('node:http')
    const { c, host, ids } = setup('llama', 12)
    const bytes = await modelGguf(c, host, { type: GGML.Q4_0 })
    const ranges: string[] = []
    const server = createServer((req, res) => {
      if (req.url !== '/models/m.gguf') { res.writeHead(404).end(); return }
      if (req.method === 'HEAD') { res.writeHead(200, { 'content-length': bytes.byteLength }).end(); return }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
      if (m === null) { res.writeHead(400).end(); return }
      ranges.push(req.headers.range ?? '')
      const body = bytes.subarray(Number(m[1]), Number(m[2]) + 1)
      res.writeHead(206, { 'content-length': body.byteLength, 'content-range': `bytes ${m[1]}-${m[2]}/${bytes.byteLength}` }).end(body)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as { port: number }).port
      const m = await loadModel(`http://127.0.0.1:${port}/models/m.gguf`, cpu)
      assertClose(await logitsOf(m, ids), await logitsOf(await loadModel(memSource('m.gguf', bytes), cpu), ids), { atol: 0, rtol: 0, what: 'url vs memory' })
      expect(ranges[0]).toBe(`bytes=0-${bytes.byteLength - 1}`) // a small file: the first (header) read covers it all…
      expect(ranges.length).toBeGreaterThan(1) // …and the tensors are then read by range
    } finally {
      server.close()
    }
  })

  it('training on quantized weights refuses clearly; 16-bit safetensors stay 16-bit for inference', async () => {
    const { c, host, ids } = setup('llama', 9)
    const m = await loadModel(memSource('m.gguf', await modelGguf(c, host, { type: GGML.Q8_0 })), cpu)
    await expect(lossAndGradients(m, ids, ids)).rejects.toThrow(/quantized and 16-bit weights are for inference/)

    const dir = mkdtempSync(`${tmpdir()}/st16-`)
    const { toHfConfig } = await import('../../web/src/model/config.ts')
    const { toHfTensors } = await import('../../web/src/model/weights.ts')
    const { partParams, wholeModel } = await import('../../web/src/model/params.ts')
    writeFileSync(`${dir}/config.json`, JSON.stringify(toHfConfig(c)))
    const tensors = toHfTensors(partParams(c, wholeModel(c)), new Map([...host].map(([k, v]) => [k, v.data])))
    for (const dt of ['BF16', 'F16'] as const) {
      writeFileSync(`${dir}/model.safetensors`, encodeSafetensors(tensors, {}, dt))
      const kept = await loadModel(dir, gpu) // inference loads keep 16-bit weights by default
      expect(kept.params.get('model.layers.0.self_attn.q_proj.weight')?.dtype).toBe(dt.toLowerCase())
      expect(kept.params.get('model.layers.0.input_layernorm.weight')?.dtype).toBe('f32')
      const wide = await loadModel(dir, cpu, { keepDtypes: false }) // what training loads
      expect(wide.params.get('model.layers.0.self_attn.q_proj.weight')?.dtype).toBe('f32')
      assertClose(await logitsOf(kept, ids), await logitsOf(wide, ids), { ...GPU_TOL, what: `safetensors ${dt} kept vs widened` })
      kept.dispose()
    }
  })
})

describe('bad GGUF input', () => {
  it('names the missing tensor, the wrong shape, the unsupported type, arch and field', async () => {
    const { c, host } = setup('llama', 11)
    const load = async (bytes: Uint8Array): Promise<CausalLM> => await loadModel(memSource('m.gguf', bytes), cpu)
    await expect(load(await modelGguf(c, host, { type: GGML.Q8_0, omit: ['blk.1.ffn_up.weight'] }))).rejects.toThrow(MissingTensorError)
    await expect(load(await modelGguf(c, host, { type: GGML.Q8_0, omit: ['blk.1.ffn_up.weight'] }))).rejects.toThrow(/blk\.1\.ffn_up\.weight/)
    await expect(load(await modelGguf(c, host, { type: GGML.Q8_0, metadata: new Map([['llama.feed_forward_length', gv.u32(512)]]) }))).rejects.toThrow(TensorShapeMismatchError)
    await expect(load(await modelGguf(c, host, { type: GGML.Q8_0, metadata: new Map([['general.architecture', gv.str('gpt2')]]) }))).rejects.toThrow(UnsupportedGgufError)
    await expect(load(await modelGguf(c, host, { type: GGML.Q8_0, metadata: new Map([['general.architecture', gv.str('phi3')]]) }))).rejects.toThrow(/'phi3' is not supported/)
    const noEps = await modelGguf(c, host, { type: GGML.Q8_0, metadata: new Map([['llama.attention.layer_norm_rms_epsilon', gv.str('small')]]) })
    await expect(load(noEps)).rejects.toThrow(GgufMetadataError)
    await expect(load(noEps)).rejects.toThrow(/layer_norm_rms_epsilon/)
    // IQ4_NL (type 20) is a valid GGUF type we do not compute (18-byte blocks of 32, as Q4_0): the error names type and tensor.
    const bytes = await modelGguf(c, host, { type: GGML.Q4_0 })
    const { parseGgufHeader } = await import('../../web/src/model/gguf/read.ts')
    const h = parseGgufHeader(bytes, bytes.byteLength)
    const dv = new DataView(bytes.buffer, bytes.byteOffset)
    const at = findTypeField(bytes, 'blk.0.attn_v.weight', 2)
    expect(h.tensors.get('blk.0.attn_v.weight')?.type).toBe(GGML.Q4_0)
    dv.setUint32(at, 20, true)
    await expect(load(bytes)).rejects.toThrow(UnsupportedDTypeError)
    await expect(load(bytes)).rejects.toThrow(/blk\.0\.attn_v\.weight.*IQ4_NL/)
    // Truncated file, bad magic.
    const good = await modelGguf(c, host, { type: GGML.Q8_0 })
    await expect(load(good.subarray(0, good.byteLength - 1000))).rejects.toThrow(CorruptWeightsError)
    const bad = good.slice()
    bad[0] = 0
    await expect(load(bad)).rejects.toThrow(/not a GGUF file/)
  })
})

/** Offset of the ggml type field of a tensor's info (after name, n_dims and its dims). */
function findTypeField (bytes: Uint8Array, name: string, nDims: number): number {
  const enc = new TextEncoder().encode(name)
  for (let i = 0; i + enc.length < bytes.length; i++) {
    let ok = true
    for (let j = 0; j < enc.length && ok; j++) ok = bytes[i + j] === enc[j]
    if (ok && new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(i - 8, true) === BigInt(enc.length)) return i + enc.length + 4 + 8 * nDims
  }
  throw new Error(`no tensor info for ${name}`)
}
