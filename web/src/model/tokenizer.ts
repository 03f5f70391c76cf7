import { TokenizerError } from './errors.ts'
import { readJson, type ModelSource } from './source.ts'

/** Text ↔ token ids. */
export interface TextTokenizer {
  readonly vocabSize: number
  encode: (text: string) => number[]
  decode: (ids: readonly number[]) => string
  /**
   * Streaming decode: returns the text that `ids` adds once complete characters are known
   * (a byte-level model may emit half of a UTF-8 character).
   */
  decoder: () => (id: number) => string
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
  private constructor (private readonly tok: import('@huggingface/tokenizers').Tokenizer, readonly vocabSize: number, private readonly addSpecial: boolean) {}

  static async create (tokenizerJson: unknown, tokenizerConfig: unknown = {}): Promise<HfTokenizer> {
    const { Tokenizer } = await import('@huggingface/tokenizers') // lazy: keeps CLI start-up fast
    let tok: import('@huggingface/tokenizers').Tokenizer
    try {
      tok = new Tokenizer(tokenizerJson as object, (tokenizerConfig ?? {}) as object)
    } catch (e) {
      throw new TokenizerError(`tokenizer.json could not be loaded: ${(e as Error).message}`)
    }
    return new HfTokenizer(tok, tok.get_vocab(true).size, true)
  }

  encode (text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: this.addSpecial }).ids
  }

  decode (ids: readonly number[]): string {
    return this.tok.decode([...ids], { skip_special_tokens: false })
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

/**
 * The tokenizer for a model directory: tokenizer.json when present; else the byte tokenizer
 * when the vocabulary is 256; else undefined (token ids only).
 */
export async function loadTokenizer (source: ModelSource, vocabSize: number): Promise<TextTokenizer | undefined> {
  const json = await readJson(source, 'tokenizer.json')
  if (json !== undefined) return await HfTokenizer.create(json, await readJson(source, 'tokenizer_config.json'))
  if (vocabSize === 256) return new ByteTokenizer()
  return undefined
}
