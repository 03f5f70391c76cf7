// HfTokenizer (tokenizer.json + tokenizer_config.json) on real files: special ids from the config,
// special-token parsing on and off, exact decoding, chat template lists.
import { beforeAll, describe, expect, it } from 'vitest'
import { HfTokenizer } from '../../web/src/model/tokenizer.ts'
import { lenmlTokenizerFiles } from '../helpers/llamacpp.ts'

describe('HfTokenizer on Qwen 3\'s tokenizer.json', () => {
  let tok: HfTokenizer
  beforeAll(async () => {
    const { json, config } = lenmlTokenizerFiles('qwen3')
    tok = await HfTokenizer.create(json, config)
  })

  it('takes eos / pad from tokenizer_config.json and finds the end-of-turn tokens', () => {
    expect(tok.special.eos).toBe(151645) // <|im_end|>
    expect(tok.special.pad).toBe(151643) // <|endoftext|>
    expect(tok.special.bos).toBeUndefined()
    expect(tok.special.eot).toBe(151645)
    expect(tok.special.endOfGeneration).toEqual([151643, 151645])
    expect(tok.chatTemplate).toContain('<|im_start|>')
    expect(tok.tokenText(151645)).toBe('<|im_end|>')
  })

  it('parses special-token spellings unless told not to', () => {
    expect(tok.encode('hi<|im_end|>')).toEqual([...tok.encode('hi'), 151645])
    const plain = tok.encode('hi<|im_end|>', { parseSpecial: false })
    expect(plain).not.toContain(151645)
    expect(tok.decode(plain)).toBe('hi<|im_end|>')
  })

  it('decodes exactly: no space clean-up, special tokens only when asked', () => {
    const text = 'x != y ; a . b , c ?'
    expect(tok.decode(tok.encode(text))).toBe(text)
    expect(tok.decode([...tok.encode('ok'), 151645])).toBe('ok')
    expect(tok.decode([...tok.encode('ok'), 151645], { special: true })).toBe('ok<|im_end|>')
    expect(tok.decode([])).toBe('')
  })

  it('takes the default template from a list of named templates', async () => {
    const { json } = lenmlTokenizerFiles('qwen3')
    const named = await HfTokenizer.create(json, { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] })
    expect(named.chatTemplate).toBe('D')
  })
})
