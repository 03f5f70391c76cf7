// The llama.cpp reference itself: a tiny GGUF written by our writer loads in node-llama-cpp, its
// SentencePiece tokenizer gives the ids the vocabulary defines, and greedy decoding is greedy.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { GgufType } from '../../web/src/model/gguf/read.ts'
import { gv } from '../../web/src/model/gguf/write.ts'
import { llamaCpp, writeTinyGguf } from '../helpers/llamacpp.ts'

const dir = mkdtempSync(join(tmpdir(), 'llamacpp-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// A SentencePiece vocabulary by hand: control tokens, the 256 byte-fallback pieces, then pieces
// whose scores make "▁hello" and "▁world" reachable by merging pairs.
const BYTES = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`)
const PIECES = ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', 'll', '▁h', '▁he', '▁hell', '▁hello', '▁w', 'or', '▁wor', 'ld', '▁world']
const TOKENS = ['<unk>', '<s>', '</s>', ...BYTES, ...PIECES]
const id = (piece: string): number => TOKENS.indexOf(piece)
const spmMeta = new Map([
  ['tokenizer.ggml.model', gv.str('llama')],
  ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, TOKENS)],
  ['tokenizer.ggml.scores', gv.arr(GgufType.FLOAT32, TOKENS.map((t, i) => i < 259 ? 0 : -(i - 259)))],
  ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, TOKENS.map((_, i) => i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1))],
  ['tokenizer.ggml.bos_token_id', gv.u32(1)],
  ['tokenizer.ggml.eos_token_id', gv.u32(2)],
  ['tokenizer.ggml.unknown_token_id', gv.u32(0)],
  ['tokenizer.ggml.add_bos_token', gv.bool(true)],
  ['tokenizer.ggml.add_eos_token', gv.bool(false)]
])

describe('llama.cpp reference (node-llama-cpp 3.21.1, CPU)', () => {
  it('loads a tiny GGUF from our writer and tokenizes as SentencePiece defines', async () => {
    const file = join(dir, 'spm.gguf')
    await writeTinyGguf(file, spmMeta, { weightType: GGML.Q8_0 })
    const [info, plain, special, noBos, text] = await llamaCpp(file, [
      { op: 'info' },
      { op: 'tokenize', text: 'hello world é', special: false, addBos: true },
      { op: 'tokenize', text: '<s>hello', special: true, addBos: false },
      { op: 'tokenize', text: '<s>', special: false, addBos: false },
      { op: 'detokenize', tokens: [id('▁hello'), id('▁world')], special: false }
    ], { vocabOnly: true })
    expect(info).toEqual({ bos: 1, eos: 2, eot: null, addBos: true, addEos: false, vocabularyType: 'spm' })
    // " hello world é": the space prefix, merges by score, é as its two UTF-8 bytes.
    expect(plain.tokens).toEqual([1, id('▁hello'), id('▁world'), id('▁'), 3 + 0xC3, 3 + 0xA9])
    expect(special.tokens).toEqual([1, id('▁hello')]) // llama.cpp: text after a special token gets the space prefix too
    expect(noBos.tokens).toEqual([id('▁'), 3 + 0x3C, 3 + 0x73, 3 + 0x3E]) // "▁<s>" as bytes: no piece covers them
    expect(text.text).toBe('hello world')
  })

  it('generates greedily: each token is the most probable one, the same on every run', async () => {
    const file = join(dir, 'gen.gguf')
    await writeTinyGguf(file, spmMeta, { seed: 7 })
    const prompt = [1, id('▁hello'), id('▁world')]
    const [a, b] = await llamaCpp(file, [
      { op: 'generate', tokens: prompt, n: 5, topK: 3 },
      { op: 'generate', tokens: prompt, n: 5 }
    ], { kvCache: 'f32' })
    expect(a.tokens).toHaveLength(5)
    expect(b.tokens).toEqual(a.tokens)
    expect(a.top).toHaveLength(5)
    a.top!.forEach((top, step) => {
      expect(top[0][0]).toBe(a.tokens[step])
      expect(top[0][1]).toBeGreaterThanOrEqual(top[1][1])
      expect(top[1][1]).toBeGreaterThanOrEqual(top[2][1])
      expect(top[0][1] + top[1][1] + top[2][1]).toBeLessThanOrEqual(1 + 1e-6)
    })
  })

  it('names the file when llama.cpp refuses it', async () => {
    const file = join(dir, 'missing.gguf')
    await expect(llamaCpp(file, [{ op: 'info' }])).rejects.toThrow(/missing\.gguf/)
  })
})
