import { describe, expect, it, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, cpSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type Server } from 'node:http'
import { parseConfig } from '../../web/src/model/config.ts'
import { ConfigError, CorruptWeightsError, MissingTensorError, TensorShapeMismatchError, UnsupportedDTypeError } from '../../web/src/model/errors.ts'
import { decodeSafetensors, encodeSafetensors, f16ToF32, f32ToBf16, f32ToF16 } from '../../web/src/model/safetensors.ts'
import { blobSource, directorySource, urlSource } from '../../web/src/model/source.ts'
import { WeightIndex, loadHostWeights, type LoadProgress } from '../../web/src/model/weights.ts'
import { blockParams, partParams, wholeModel } from '../../web/src/model/params.ts'

const LLAMA = 'test/fixtures/tiny-llama'
const MIXTRAL = 'test/fixtures/tiny-mixtral'
const llamaCfg = (): Record<string, unknown> => JSON.parse(readFileSync(`${LLAMA}/config.json`, 'utf8'))

describe('config.json parsing', () => {
  it('reads the Llama and Mixtral fixtures', () => {
    const l = parseConfig(llamaCfg())
    expect(l).toMatchObject({ architecture: 'LlamaForCausalLM', hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 256, numExperts: 0, tieWordEmbeddings: false, qkvBias: false, rmsNormEps: 1e-5 })
    const m = parseConfig(JSON.parse(readFileSync(`${MIXTRAL}/config.json`, 'utf8')))
    expect(m).toMatchObject({ architecture: 'MixtralForCausalLM', numExperts: 4, expertsPerToken: 2, intermediateSize: 96 })
  })

  it('gives Qwen2 q/k/v biases and honours head_dim and MQA', () => {
    const q = parseConfig({ ...llamaCfg(), architectures: ['Qwen2ForCausalLM'], num_key_value_heads: 1, head_dim: 8 })
    expect(q.qkvBias).toBe(true)
    expect(q.oBias).toBe(false)
    expect(q.headDim).toBe(8)
    expect(blockParams(q, 0).map(p => p.name)).toContain('model.layers.0.self_attn.k_proj.bias')
    expect(blockParams(q, 0).find(p => p.name.endsWith('k_proj.weight'))?.shape).toEqual([8, 64])
  })

  it('gives Qwen3 per-head q/k norms, its head_dim default (128) and optional attention bias', () => {
    const q = parseConfig({ ...llamaCfg(), architectures: ['Qwen3ForCausalLM'], num_attention_heads: 4, head_dim: undefined })
    expect(q).toMatchObject({ architecture: 'Qwen3ForCausalLM', qkNorm: true, headDim: 128, qkvBias: false, oBias: false })
    expect(blockParams(q, 1).find(p => p.name === 'model.layers.1.self_attn.k_norm.weight')?.shape).toEqual([128])
    expect(parseConfig({ ...llamaCfg(), model_type: 'qwen3', architectures: undefined, attention_bias: true })).toMatchObject({ architecture: 'Qwen3ForCausalLM', qkvBias: true, oBias: true })
    expect(parseConfig(llamaCfg()).qkNorm).toBe(false)
  })

  it('Llama 3.1 rope scaling and GGUF frequency factors survive a config.json round trip', async () => {
    const { toHfConfig } = await import('../../web/src/model/config.ts')
    const l31 = parseConfig({ ...llamaCfg(), rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } })
    expect(l31.ropeFreqFactors?.length).toBe(8)
    expect(parseConfig(toHfConfig(l31))).toEqual(l31)
    const gguf = { ...parseConfig(llamaCfg()), ropeFreqFactors: [1, 1, 2, 4, 8, 8, 8, 8] }
    expect(parseConfig(toHfConfig(gguf))).toEqual(gguf)
    expect(() => parseConfig({ ...llamaCfg(), rope_freq_factors: [1, 2] })).toThrow(/rope_freq_factors/)
  })

  it('rejects unsupported settings naming the field', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ architectures: ['GPT2LMHeadModel'] }, /architectures/],
      [{ hidden_act: 'gelu' }, /hidden_act/],
      [{ rope_scaling: { rope_type: 'yarn', factor: 4 } }, /rope_scaling\.rope_type/],
      [{ num_key_value_heads: 3 }, /num_key_value_heads/],
      [{ hidden_size: 'big' }, /hidden_size/],
      [{ vocab_size: undefined }, /vocab_size: is required/]
    ]
    for (const [patch, re] of bad) {
      const cfg = { ...llamaCfg(), ...patch }
      expect(() => parseConfig(cfg)).toThrow(ConfigError)
      expect(() => parseConfig(cfg)).toThrow(re)
    }
    expect(() => parseConfig({ ...llamaCfg(), architectures: ['Qwen2ForCausalLM'], use_sliding_window: true })).toThrow(/use_sliding_window/)
  })
})

describe('safetensors', () => {
  it('converts f16 and bf16 like torch (round to nearest even)', () => {
    for (const v of [0, 1, -2.5, 65504, 1e-5, 3.14159, -0.0001234]) {
      expect(Math.abs(f16ToF32(f32ToF16(v)) - v)).toBeLessThanOrEqual(Math.abs(v) / 1024 + 6e-8) // 10 mantissa bits; subnormal step 6e-8
    }
    expect(f32ToF16(1)).toBe(0x3c00)
    expect(f32ToF16(65520)).toBe(0x7c00) // overflows to inf, as torch
    expect(f32ToBf16(1)).toBe(0x3f80)
    expect(f32ToBf16(1.00390625)).toBe(0x3f80) // tie → even
    expect(f32ToBf16(1.01171875)).toBe(0x3f82) // tie → even (up)
  })

  it('round-trips F32, F16 and BF16 files', () => {
    const data = new Float32Array([0.5, -1.25, 3, 1024.5, 1 / 3, -7e-3])
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const bytes = encodeSafetensors([{ name: 'a', shape: [2, 3], data }], { k: 'v' }, dtype)
      const { tensors, metadata } = decodeSafetensors(bytes)
      expect(metadata.k).toBe('v')
      const got = tensors.get('a')?.data ?? new Float32Array()
      const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 1e-3 : 8e-3
      data.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v))))
    }
  })

  it('names the tensor in truncated, corrupt and unsupported files', () => {
    const good = encodeSafetensors([{ name: 'w', shape: [4], data: new Float32Array(4) }])
    expect(() => decodeSafetensors(good.subarray(0, good.length - 4), 'x.safetensors')).toThrow(/tensor 'w' ends at byte .* past the end/)
    expect(() => decodeSafetensors(good.subarray(0, 5), 'x.safetensors')).toThrow(CorruptWeightsError)
    const hdr = (h: object): Uint8Array => {
      const j = new TextEncoder().encode(JSON.stringify(h))
      const b = new Uint8Array(8 + j.length + 64)
      new DataView(b.buffer).setBigUint64(0, BigInt(j.length), true)
      b.set(j, 8)
      return b
    }
    expect(() => decodeSafetensors(hdr({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }))).toThrow(/tensor 'w' spans 8 bytes but F32 \[3\] needs 12/)
    expect(() => decodeSafetensors(hdr({ w: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }))).toThrow(UnsupportedDTypeError)
    const bigLen = new Uint8Array(16)
    new DataView(bigLen.buffer).setBigUint64(0, 1000n, true)
    expect(() => decodeSafetensors(bigLen)).toThrow(/runs past the end/)
  })
})

describe('loading weights by block', () => {
  let dir: string
  let server: Server
  let base: string
  let requests: string[] = []

  beforeAll(async () => {
    dir = mkdtempSync(`${tmpdir()}/ws-weights-`)
    // A sharded BF16 copy of the Mixtral fixture: layer 0 + embedding in shard 1, the rest in shard 2.
    const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(`${MIXTRAL}/model.safetensors`)))
    const all = [...tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }))
    const first = all.filter(t => t.name.startsWith('model.layers.0.') || t.name === 'model.embed_tokens.weight')
    const second = all.filter(t => !first.includes(t))
    mkdirSync(`${dir}/sharded`)
    writeFileSync(`${dir}/sharded/model-00001-of-00002.safetensors`, encodeSafetensors(first, {}, 'BF16'))
    writeFileSync(`${dir}/sharded/model-00002-of-00002.safetensors`, encodeSafetensors(second, {}, 'BF16'))
    const weightMap: Record<string, string> = {}
    for (const t of first) weightMap[t.name] = 'model-00001-of-00002.safetensors'
    for (const t of second) weightMap[t.name] = 'model-00002-of-00002.safetensors'
    writeFileSync(`${dir}/sharded/model.safetensors.index.json`, JSON.stringify({ metadata: {}, weight_map: weightMap }))
    cpSync(`${MIXTRAL}/config.json`, `${dir}/sharded/config.json`)

    server = createServer((req, res) => {
      const file = `${dir}/sharded${req.url ?? ''}`
      let body: Buffer
      try { body = readFileSync(file) } catch { res.statusCode = 404; res.end(); return }
      requests.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`)
      if (req.method === 'HEAD') { res.setHeader('content-length', body.length); res.end(); return }
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')
      if (m === null) { res.end(body); return }
      res.statusCode = 206
      res.end(body.subarray(Number(m[1]), Number(m[2]) + 1))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const addr = server.address()
    base = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
  })

  afterAll(() => {
    server?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('reads one block of a sharded BF16 checkpoint, stacking experts, with progress', async () => {
    const cfg = parseConfig(JSON.parse(readFileSync(`${MIXTRAL}/config.json`, 'utf8')))
    const idx = await WeightIndex.open(directorySource(`${dir}/sharded`))
    const progress: LoadProgress[] = []
    const w = await loadHostWeights(idx, blockParams(cfg, 1), p => progress.push(p))
    const ref = decodeSafetensors(new Uint8Array(readFileSync(`${MIXTRAL}/model.safetensors`))).tensors
    expect([...w.keys()].every(k => k.startsWith('model.layers.1.'))).toBe(true)
    const w2 = w.get('model.layers.1.block_sparse_moe.experts.*.w2.weight')
    expect(w2?.shape).toEqual([4, 64, 96])
    const e3 = ref.get('model.layers.1.block_sparse_moe.experts.3.w2.weight')?.data ?? new Float32Array()
    const got = w2?.data.subarray(3 * 64 * 96) ?? new Float32Array()
    e3.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(Math.abs(v) / 128)) // bf16: 8 bits of mantissa
    const last = progress[progress.length - 1]
    expect(last.tensorsLoaded).toBe(last.tensorsTotal)
    expect(last.bytesLoaded).toBe(last.bytesTotal)
    expect(last.tensorsTotal).toBe(2 + 4 + 1 + 12) // norms, q/k/v/o, gate, 4 experts × 3
  })

  it('reads over HTTP with range requests, fetching only the requested block', async () => {
    const cfg = parseConfig(JSON.parse(readFileSync(`${MIXTRAL}/config.json`, 'utf8')))
    requests = []
    const idx = await WeightIndex.open(urlSource(base))
    const w = await loadHostWeights(idx, blockParams(cfg, 0))
    expect(w.size).toBe(blockParams(cfg, 0).length)
    expect(requests.some(r => r.includes('model-00002-of')), requests.join('; ')).toBe(false) // layer 0 lives in shard 1 only
    expect(requests.filter(r => r.startsWith('GET')).every(r => r.includes('bytes='))).toBe(true)
  })

  it('reads from Blobs (browser Files)', async () => {
    const cfg = parseConfig(JSON.parse(readFileSync(`${LLAMA}/config.json`, 'utf8')))
    const src = blobSource(new Map([['model.safetensors', new Blob([readFileSync(`${LLAMA}/model.safetensors`)])]]))
    const w = await loadHostWeights(await WeightIndex.open(src), partParams(cfg, wholeModel(cfg)))
    expect(w.get('lm_head.weight')?.shape).toEqual([256, 64])
  })

  it('names missing tensors and shape mismatches', async () => {
    const cfg = parseConfig(JSON.parse(readFileSync(`${LLAMA}/config.json`, 'utf8')))
    const idx = await WeightIndex.open(directorySource(LLAMA))
    const wrongShape = parseConfig({ ...llamaCfg(), intermediate_size: 100 })
    await expect(loadHostWeights(idx, blockParams(wrongShape, 0))).rejects.toThrow(TensorShapeMismatchError)
    await expect(loadHostWeights(idx, blockParams(wrongShape, 0))).rejects.toThrow(/model\.layers\.0\.mlp\.gate_proj\.weight/)
    const tooDeep = parseConfig({ ...llamaCfg(), num_hidden_layers: 3 })
    await expect(loadHostWeights(idx, blockParams(tooDeep, 2))).rejects.toThrow(MissingTensorError)
    await expect(loadHostWeights(idx, blockParams(tooDeep, 2))).rejects.toThrow(/model\.layers\.2\.input_layernorm\.weight/)
    void cfg
  })

  it('names the tensor when a file is truncated', async () => {
    mkdirSync(`${dir}/trunc`, { recursive: true })
    const b = readFileSync(`${LLAMA}/model.safetensors`)
    writeFileSync(`${dir}/trunc/model.safetensors`, b.subarray(0, b.length - 1000))
    const cfg = parseConfig(llamaCfg())
    const idx = await WeightIndex.open(directorySource(`${dir}/trunc`))
    await expect(loadHostWeights(idx, partParams(cfg, wholeModel(cfg)))).rejects.toThrow(/tensor 'lm_head\.weight' ends at byte/)
  })
})
