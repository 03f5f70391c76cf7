/**
 * GPT-2's byte-level alphabet: every byte is shown as a printable character (printable Latin-1
 * bytes as themselves, the other 68 as U+0100…), so BPE tokens are strings. A gpt2 vocabulary's
 * tokens are written in it; decoding maps each character back to its byte.
 */
function buildCharToByte (): Map<string, number> {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  const map = new Map<string, number>()
  let next = 256
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : next++), b)
  return map
}

let charToByte: Map<string, number> | undefined

/** The 256 characters standing for bytes 0…255, in byte order. */
export function byteLevelAlphabet (): string[] {
  charToByte ??= buildCharToByte()
  const out = new Array<string>(256)
  for (const [ch, b] of charToByte) out[b] = ch
  return out
}

/**
 * The bytes a byte-level token stands for. A character outside the alphabet (a hand-added token
 * typed as normal) is taken as its own UTF-8, as llama.cpp's llama_decode_text does.
 */
export function byteLevelBytes (token: string): number[] {
  charToByte ??= buildCharToByte()
  const out: number[] = []
  for (const ch of token) {
    const b = charToByte.get(ch)
    if (b !== undefined) out.push(b)
    else out.push(...new TextEncoder().encode(ch))
  }
  return out
}
