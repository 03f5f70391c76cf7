import { TokenizerError } from '../errors.ts'

/**
 * BPE pre-tokenizers by their GGUF name (`tokenizer.ggml.pre`), as llama.cpp defines them
 * (src/llama-vocab.cpp, `llm_tokenizer_bpe` and the `tokenizer_pre` table): the split regexes,
 * applied one after another (each splits the pieces the previous one left, keeping both matches
 * and the text between), and the flags that change tokenizing.
 */
export interface BpePreTokenizer {
  /** JavaScript regex sources (`u` flag), in order. */
  regexes: readonly string[]
  /** A pre-token that is itself in the vocabulary is emitted whole, without merging. */
  ignoreMerges: boolean
  /** llama.cpp's add_bos default when the file has no tokenizer.ggml.add_bos_token. */
  addBos: boolean
}

// llama.cpp writes `(?i:'s|…)` as explicit case classes; the same here (JavaScript has no scoped (?i:)).
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
const LLAMA3 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`
const QWEN2 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`
const QWEN35 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
const TEKKEN = '[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+'
const DEFAULT: readonly string[] = [
  '[\\p{P}\\$\\+<=>\\^~\\|]+',
  GPT2,
  '\\p{N}+',
  '[0-9][0-9][0-9]'
]

const pre = (regexes: readonly string[], ignoreMerges = false, addBos = false): BpePreTokenizer => ({ regexes, ignoreMerges, addBos })

const TABLE = new Map<string, BpePreTokenizer>()
const add = (names: string[], p: BpePreTokenizer): void => { for (const n of names) TABLE.set(n, p) }
add(['default'], pre(DEFAULT))
add(['llama3', 'llama-v3', 'llama-bpe', 'falcon3', 'falcon-h1', 'pixtral', 'midm-2.0', 'lfm2'], pre([LLAMA3], true, true))
add(['dbrx', 'smaug-bpe'], pre([LLAMA3]))
add(['qwen2', 'deepseek-r1-qwen', 'megrez', 'stablelm2', 'hunyuan'], pre([QWEN2]))
add(['qwen35'], pre([QWEN35]))
add(['gpt-2', 'phi-2', 'jina-es', 'jina-de', 'jina-v2-es', 'jina-v2-de', 'mpt', 'olmo', 'jais', 'exaone4'], pre([GPT2]))
add(['starcoder', 'refact', 'command-r', 'smollm', 'codeshell', 'exaone', 'minerva-7b'], pre(['\\p{N}', GPT2]))
add(['tekken'], pre([TEKKEN], true, true))

/** The pre-tokenizer named `name`; an unknown name is an error (llama.cpp refuses the file too). */
export function bpePreTokenizer (name: string): BpePreTokenizer {
  const p = TABLE.get(name)
  if (p === undefined) {
    throw new TokenizerError(`GGUF tokenizer.ggml.pre '${name}' is not supported (supported: ${[...TABLE.keys()].join(', ')})`)
  }
  return p
}

/** llama.cpp's add_bos default for a BPE vocabulary with this pre-tokenizer (false when unknown). */
export function bpeAddsBos (name: string | undefined): boolean {
  return name !== undefined && (TABLE.get(name)?.addBos ?? false)
}
