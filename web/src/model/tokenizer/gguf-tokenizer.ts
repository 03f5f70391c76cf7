import type { Tokenizer } from '@huggingface/tokenizers'
import { TokenizerError } from '../errors.ts'
import type { DecodeOptions, EncodeOptions, SpecialTokens, TextTokenizer } from '../tokenizer.ts'
import { bpeAddsBos } from './bpe-pre.ts'
import { byteLevelBytes } from './byte-level.ts'
import { readGgufVocab, TokenType, type GgufVocab, type MetadataLike } from './gguf-vocab.ts'
import { spmMerges, synthesizeTokenizerJson } from './tokenizer-json.ts'

const EMPTY = new Uint8Array(0)

/**
 * The tokenizer a GGUF file carries (`tokenizer.ggml.*`), tokenizing as llama.cpp does: text is
 * tokenized by @huggingface/tokenizers from a synthesized tokenizer.json (tokenizer-json.ts);
 * ids are decoded here, piece by piece, with llama.cpp's token_to_piece rules.
 *
 * ```ts
 * const tok = await GgufTokenizer.create(header.metadata)
 * tok.encode('Hello') // [bos, …] when the file says add_bos_token
 * ```
 */
export class GgufTokenizer implements TextTokenizer {
  readonly vocabSize: number
  readonly special: SpecialTokens
  readonly chatTemplate: string | undefined
  private plainTok: Tokenizer | undefined
  private readonly pieces: Array<Uint8Array | undefined>

  private constructor (
    private readonly vocab: GgufVocab,
    private readonly TokenizerClass: typeof Tokenizer,
    private readonly specialTok: Tokenizer,
    private readonly spm: ReturnType<typeof spmMerges> | undefined
  ) {
    this.vocabSize = vocab.tokens.length
    this.special = { bos: vocab.bos, eos: vocab.eos, eot: vocab.eot, pad: vocab.pad, endOfGeneration: vocab.endOfGeneration }
    this.chatTemplate = vocab.chatTemplate
    this.pieces = new Array(this.vocabSize)
  }

  /** Builds the tokenizer from GGUF metadata; an unsupported vocabulary kind is a TokenizerError naming it. */
  static async create (meta: MetadataLike): Promise<GgufTokenizer> {
    const vocab = readGgufVocab(meta, bpeAddsBos)
    const { Tokenizer } = await import('@huggingface/tokenizers') // lazy: keeps CLI start-up fast
    const spm = vocab.model === 'llama' ? spmMerges(vocab) : undefined
    return new GgufTokenizer(vocab, Tokenizer, GgufTokenizer.build(Tokenizer, vocab, true, spm), spm)
  }

  private static build (TokenizerClass: typeof Tokenizer, vocab: GgufVocab, parseSpecial: boolean, spm: ReturnType<typeof spmMerges> | undefined): Tokenizer {
    const { json, mergeRanks } = synthesizeTokenizerJson(vocab, parseSpecial, spm)
    let tok: Tokenizer
    try {
      tok = new TokenizerClass(json, {})
    } catch (e) {
      throw new TokenizerError(`GGUF tokenizer (${vocab.model}${vocab.pre !== undefined ? `, pre '${vocab.pre}'` : ''}) could not be built: ${(e as Error).message}`)
    }
    if (mergeRanks !== undefined) {
      // Ties between equal scores need equal ranks, which a merge list cannot say: replace the
      // library's rank table (`model.bpe_ranks`, keyed by mergeKey) with score ranks.
      const model = tok.model as unknown as { bpe_ranks?: Map<string, number> }
      if (!(model.bpe_ranks instanceof Map) || model.bpe_ranks.size !== mergeRanks.size) {
        throw new TokenizerError('@huggingface/tokenizers changed its BPE rank table; SentencePiece ties cannot be set (pin 0.2.0)')
      }
      for (const [key, rank] of mergeRanks) {
        if (!model.bpe_ranks.has(key)) throw new TokenizerError(`@huggingface/tokenizers keys merges differently than expected (${key})`)
        model.bpe_ranks.set(key, rank)
      }
    }
    return tok
  }

  /** The tokenizer that leaves control-token spellings as text (built on first use). */
  private plain (): Tokenizer {
    this.plainTok ??= GgufTokenizer.build(this.TokenizerClass, this.vocab, false, this.spm)
    return this.plainTok
  }

  encode (text: string, options: EncodeOptions = {}): number[] {
    const tok = (options.parseSpecial ?? true) ? this.specialTok : this.plain()
    const ids = text === '' ? [] : tok.encode(text, { add_special_tokens: false }).ids
    if (options.addSpecial ?? true) {
      if (this.vocab.addBos && this.vocab.bos !== undefined) ids.unshift(this.vocab.bos)
      if (this.vocab.addEos && this.vocab.eos !== undefined) ids.push(this.vocab.eos)
    }
    return ids
  }

  tokenText (id: number): string | undefined {
    return this.vocab.tokens[id]
  }

  /** The bytes token `id` prints as (llama.cpp token_to_piece); control tokens only when `special`. */
  private piece (id: number, special: boolean): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new TokenizerError(`token id ${id} is outside the vocabulary (0…${this.vocabSize - 1})`)
    const type = this.vocab.types[id]
    const text = this.vocab.tokens[id]
    if (type === TokenType.CONTROL || type === TokenType.UNKNOWN) return special ? new TextEncoder().encode(text) : EMPTY
    let p = this.pieces[id]
    if (p === undefined) {
      if (type === TokenType.USER_DEFINED) p = new TextEncoder().encode(text)
      else if (type === TokenType.BYTE) p = new Uint8Array([byteOf(text)])
      else if (type !== TokenType.NORMAL) p = EMPTY // unused / undefined: suppressed, as llama.cpp does
      else if (this.vocab.model === 'llama') p = new TextEncoder().encode(text.replaceAll('▁', ' '))
      else p = new Uint8Array(byteLevelBytes(text))
      this.pieces[id] = p
    }
    return p
  }

  /**
   * The text of `ids`. SentencePiece: the space prefix added when encoding is taken off the first
   * piece that prints, so decode(encode(text)) is text. No space clean-up (code stays intact).
   */
  decode (ids: readonly number[], options: DecodeOptions = {}): string {
    const special = options.special ?? false
    const parts: Uint8Array[] = []
    let n = 0
    let strip = this.vocab.addSpacePrefix
    for (const id of ids) {
      let p = this.piece(id, special)
      if (strip && p.length > 0) {
        if (p[0] === 0x20) p = p.subarray(1)
        strip = false
      }
      parts.push(p)
      n += p.length
    }
    const all = new Uint8Array(n)
    let at = 0
    for (const p of parts) { all.set(p, at); at += p.length }
    return new TextDecoder().decode(all)
  }

  /** Streaming decode of generated ids: text as soon as its UTF-8 characters are complete. */
  decoder (): (id: number) => string {
    const td = new TextDecoder()
    let strip = this.vocab.addSpacePrefix
    return (id: number) => {
      let p = this.piece(id, false)
      if (strip && p.length > 0) {
        if (p[0] === 0x20) p = p.subarray(1)
        strip = false
      }
      return td.decode(p, { stream: true })
    }
  }
}

function byteOf (text: string): number {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text)
  if (m === null) throw new TokenizerError(`byte token '${text}' is not spelled <0xNN>`)
  return parseInt(m[1], 16)
}
