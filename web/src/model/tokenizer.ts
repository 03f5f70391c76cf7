import { TokenizerError } from './errors.ts'
import { readGgufHeader } from './gguf/read.ts'
import { isGgufName, readJson, type ModelSource } from './source.ts'
import { GgufTokenizer } from './tokenizer/gguf-tokenizer.ts'
import { END_OF_GENERATION_TEXTS, metaGet, type MetadataLike } from './tokenizer/gguf-vocab.ts'

export { GgufTokenizer }

export interface EncodeOptions {
  /** Add BOS / EOS as the model's tokenizer config says. @default true */
  addSpecial?: boolean
  /**
   * Text spelling a control token (`<|im_start|>`, `<s>`) becomes that token; false keeps it as
   * plain text (for untrusted user text inside a chat). @default true
   */
  parseSpecial?: boolean
}

export interface DecodeOptions {
  /** Print control tokens (`<|eot_id|>`) as their text. @default false */
  special?: boolean
}

/** Special token ids a model's tokenizer declares. */
export interface SpecialTokens {
  bos?: number
  eos?: number
  /** End of turn (`<|eot_id|>`, `<|im_end|>`), when distinct. */
  eot?: number
  pad?: number
  /** Every id that ends generation: eos, eot and the end-of-turn tokens found in the vocabulary. */
  endOfGeneration: readonly number[]
}

/** Text ↔ token ids. */
export interface TextTokenizer {
  readonly vocabSize: number
  encode: (text: string, options?: EncodeOptions) => number[]
  decode: (ids: readonly number[], options?: DecodeOptions) => string
  /**
   * Streaming decode: returns the text that `ids` adds once complete characters are known
   * (a byte-level model may emit half of a UTF-8 character).
   */
  decoder: () => (id: number) => string
  /** Special ids, when the tokenizer declares them. */
  readonly special?: SpecialTokens
  /** The model's chat template (Jinja source), when it ships one. */
  readonly chatTemplate?: string
  /** The spelling of token `id` (chat templates need bos_token / eos_token as text). */
  tokenText?: (id: number) => string | undefined
}

/** Bytes of UTF-8 text are the tokens: vocab 256, for models trained from scratch on text. */
export class ByteTokenizer implements TextTokenizer {
  readonly vocabSize = 256

  encode (text: string): number[] {
    return [...new TextEncoder().encode(text)]
  }

  decode (ids: readonly number[]): string {
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id > 255) throw new TokenizerError(`byte tokenizer: id ${id} is not a byte`)
    return new TextDecoder().decode(new Uint8Array(ids))
  }

  decoder (): (id: number) => string {
    const td = new TextDecoder()
    return (id: number) => {
      if (!Number.isInteger(id) || id < 0 || id > 255) throw new TokenizerError(`byte tokenizer: id ${id} is not a byte`)
      return td.decode(new Uint8Array([id]), { stream: true })
    }
  }
}

/** A Hugging Face tokenizer.json (BPE/SentencePiece/…) through @huggingface/tokenizers. */
export class HfTokenizer implements TextTokenizer {
  readonly special: SpecialTokens
  readonly chatTemplate: string | undefined
  private plainTok: import('@huggingface/tokenizers').Tokenizer | undefined

  private constructor (
    private readonly tok: import('@huggingface/tokenizers').Tokenizer,
    readonly vocabSize: number,
    private readonly rebuildPlain: () => import('@huggingface/tokenizers').Tokenizer,
    config: Record<string, unknown>
  ) {
    const idOf = (key: string): number | undefined => {
      const text = tokenString(config[key])
      return text === undefined ? undefined : tok.token_to_id(text)
    }
    const eos = idOf('eos_token')
    const eog = new Set<number>(eos !== undefined ? [eos] : [])
    for (const text of END_OF_GENERATION_TEXTS) {
      const id = tok.token_to_id(text)
      if (id !== undefined && tok.get_added_tokens_decoder().has(id)) eog.add(id)
    }
    const eot = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>'].map(t => tok.token_to_id(t)).find(id => id !== undefined)
    this.special = { bos: idOf('bos_token'), eos, eot, pad: idOf('pad_token'), endOfGeneration: [...eog].sort((a, b) => a - b) }
    this.chatTemplate = chatTemplateOf(config.chat_template)
  }

  static async create (tokenizerJson: unknown, tokenizerConfig: unknown = {}): Promise<HfTokenizer> {
    const { Tokenizer } = await import('@huggingface/tokenizers') // lazy: keeps CLI start-up fast
    const config = (tokenizerConfig ?? {}) as Record<string, unknown>
    const make = (json: unknown): import('@huggingface/tokenizers').Tokenizer => {
      try {
        return new Tokenizer(json as object, config)
      } catch (e) {
        throw new TokenizerError(`tokenizer.json could not be loaded: ${(e as Error).message}`)
      }
    }
    const tok = make(tokenizerJson)
    // Without special-token parsing: the same file minus its special added tokens.
    const plain = (): import('@huggingface/tokenizers').Tokenizer => {
      const j = tokenizerJson as { added_tokens?: Array<{ special?: boolean }> }
      return make({ ...j, added_tokens: (j.added_tokens ?? []).filter(t => t.special !== true) })
    }
    return new HfTokenizer(tok, tok.get_vocab(true).size, plain, config)
  }

  encode (text: string, options: EncodeOptions = {}): number[] {
    let tok = this.tok
    if (!(options.parseSpecial ?? true)) tok = this.plainTok ??= this.rebuildPlain()
    return tok.encode(text, { add_special_tokens: options.addSpecial ?? true }).ids
  }

  /** No clean-up of spaces before punctuation: decoding is exact, streamed or whole. */
  decode (ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return ''
    return this.tok.decode([...ids], { skip_special_tokens: !(options.special ?? false), clean_up_tokenization_spaces: false })
  }

  tokenText (id: number): string | undefined {
    return this.tok.id_to_token(id)
  }

  /** Decodes the growing sequence and emits the new suffix (word-piece joins need context). */
  decoder (): (id: number) => string {
    const ids: number[] = []
    let shown = ''
    return (id: number) => {
      ids.push(id)
      const text = this.decode(ids)
      if (text.endsWith('\uFFFD')) return '' // incomplete UTF-8 so far
      const add = text.startsWith(shown) ? text.slice(shown.length) : text
      shown = text
      return add
    }
  }
}

/** tokenizer_config.json spells a special token as a string or as `{ content }`. */
function tokenString (v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content
  return undefined
}

/** `chat_template` is a string, or a list of `{ name, template }` of which 'default' is the chat one. */
function chatTemplateOf (v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (Array.isArray(v)) {
    const named = v as Array<{ name?: unknown, template?: unknown }>
    const t = named.find(x => x.name === 'default') ?? named[0]
    return typeof t?.template === 'string' ? t.template : undefined
  }
  return undefined
}

/**
 * The tokenizer for a model: a GGUF's own (from `ggufMetadata`, or read from the source's .gguf
 * header) when it has one, the file being authoritative; else tokenizer.json (+
 * tokenizer_config.json) when the source has one; else the byte tokenizer when the vocabulary is
 * 256; else undefined (token ids only).
 */
export async function loadTokenizer (source: ModelSource, vocabSize: number, ggufMetadata?: MetadataLike): Promise<TextTokenizer | undefined> {
  let meta = ggufMetadata
  if (meta === undefined && source.file !== undefined && isGgufName(source.file)) {
    meta = (await readGgufHeader(source, source.file)).metadata
  }
  if (meta !== undefined && metaGet(meta, 'tokenizer.ggml.model') !== undefined) return await GgufTokenizer.create(meta)
  const json = await readJson(source, 'tokenizer.json')
  if (json !== undefined) return await HfTokenizer.create(json, await readJson(source, 'tokenizer_config.json'))
  if (vocabSize === 256) return new ByteTokenizer()
  return undefined
}
