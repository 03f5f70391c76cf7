import { bpePreTokenizer } from './bpe-pre.ts'
import { TokenType, type GgufVocab } from './gguf-vocab.ts'

/**
 * A Hugging Face tokenizer.json synthesized from a GGUF vocabulary, so that @huggingface/tokenizers
 * does the tokenizing with llama.cpp's rules:
 * - `llama` (SentencePiece): a BPE model with byte fallback whose merges are every split of a
 *   vocabulary piece into two pieces, ranked by the merged piece's score. Merging the best-scored
 *   adjacent pair first is exactly llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm); the
 *   space prefix and ' ' → '▁' are normalizers.
 * - `gpt2` (BPE): the file's merges, the pre-tokenizer's split regexes, then the byte-level alphabet.
 * Special tokens are added tokens (split out before anything else): user-defined ones always,
 * control and unknown ones only when `parseSpecial` (llama.cpp tokenizer_st_partition).
 */
export interface SynthesizedTokenizer {
  json: Record<string, unknown>
  /**
   * SentencePiece only: each merge's rank is its merged piece's place among distinct scores, so
   * equal scores tie and the leftmost pair wins, as in llama.cpp (a list index cannot express ties).
   */
  mergeRanks?: Map<string, number>
}

/** The key @huggingface/tokenizers 0.2 gives a merge pair in its rank table. */
function mergeKey (left: string, right: string): string {
  return JSON.stringify([left, right])
}

function addedTokens (v: GgufVocab, parseSpecial: boolean): object[] {
  const out: object[] = []
  for (let id = 0; id < v.tokens.length; id++) {
    const t = v.types[id]
    const special = t === TokenType.CONTROL || t === TokenType.UNKNOWN
    if (t !== TokenType.USER_DEFINED && !(special && parseSpecial)) continue
    out.push({ id, content: v.tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special })
  }
  return out
}

function vocabObject (tokens: readonly string[]): Record<string, number> {
  const vocab: Record<string, number> = Object.create(null) // a token may be spelled "__proto__"
  tokens.forEach((t, i) => { vocab[t] = i })
  return vocab
}

function spmMerges (v: GgufVocab): { merges: Array<[string, string]>, ranks: Map<string, number> } {
  const idOf = new Map<string, number>()
  v.tokens.forEach((t, i) => idOf.set(t, i)) // the last of duplicate spellings wins, as in llama.cpp
  const found: Array<{ left: string, right: string, score: number }> = []
  for (const [piece, id] of idOf) {
    const chars = Array.from(piece)
    if (chars.length < 2) continue
    let left = ''
    for (let k = 1; k < chars.length; k++) {
      left += chars[k - 1]
      const right = chars.slice(k).join('')
      if (idOf.has(left) && idOf.has(right)) found.push({ left, right, score: v.scores[id] })
    }
  }
  found.sort((a, b) => b.score - a.score) // stable: equal scores keep vocabulary order
  const ranks = new Map<string, number>()
  let rank = -1
  let last = Number.NaN
  for (const m of found) {
    if (m.score !== last) { rank++; last = m.score }
    ranks.set(mergeKey(m.left, m.right), rank)
  }
  return { merges: found.map(m => [m.left, m.right]), ranks }
}

/** The tokenizer.json for `v`; `parseSpecial` decides whether control tokens are split out of text. */
export function synthesizeTokenizerJson (v: GgufVocab, parseSpecial: boolean, spm?: ReturnType<typeof spmMerges>): SynthesizedTokenizer {
  const base = { version: '1.0', truncation: null, padding: null, added_tokens: addedTokens(v, parseSpecial), post_processor: null, decoder: null }
  if (v.model === 'llama') {
    const { merges, ranks } = spm ?? spmMerges(v)
    const normalizers: object[] = []
    if (v.addSpacePrefix) normalizers.push({ type: 'Prepend', prepend: '▁' })
    normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: '▁' })
    return {
      json: {
        ...base,
        normalizer: { type: 'Sequence', normalizers },
        pre_tokenizer: null,
        model: {
          type: 'BPE',
          dropout: null,
          unk_token: v.unk !== undefined ? v.tokens[v.unk] : null,
          continuing_subword_prefix: null,
          end_of_word_suffix: null,
          fuse_unk: true,
          byte_fallback: true,
          ignore_merges: false,
          vocab: vocabObject(v.tokens),
          merges
        }
      },
      mergeRanks: ranks
    }
  }
  const pre = bpePreTokenizer(v.pre ?? 'default')
  return {
    json: {
      ...base,
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          ...pre.regexes.map(r => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }
        ]
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre.ignoreMerges,
        vocab: vocabObject(v.tokens),
        merges: v.merges
      }
    }
  }
}

export { spmMerges }
