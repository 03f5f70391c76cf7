// Chat templates of real models (Llama 3 from tokenizer_config.json, Qwen 3 from GGUF metadata)
// rendered with @huggingface/jinja against the strings those templates define.
import { beforeAll, describe, expect, it } from 'vitest'
import { ChatTemplateError, NoChatTemplateError, chatPrompt, chatStopTokens, renderChatTemplate } from '../../web/src/model/chat.ts'
import { GgufTokenizer, HfTokenizer, type TextTokenizer } from '../../web/src/model/tokenizer.ts'
import { lenmlGgufMeta, lenmlTokenizerFiles } from '../helpers/llamacpp.ts'

const SYSTEM = { role: 'system', content: 'You are helpful.' }
const USER = { role: 'user', content: 'Hello, who are you?' }

describe('Llama 3 chat template (tokenizer_config.json, through HfTokenizer)', () => {
  let tok: TextTokenizer
  beforeAll(async () => {
    const { json, config } = lenmlTokenizerFiles('llama3')
    tok = await HfTokenizer.create(json, config)
  })

  it('renders headers, <|eot_id|> and the assistant header, BOS once', () => {
    const { text, ids } = chatPrompt(tok, [SYSTEM, USER])
    expect(text).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHello, who are you?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n')
    expect(ids[0]).toBe(128000)
    expect(ids.filter(id => id === 128000)).toHaveLength(1)
    expect(ids.filter(id => id === 128009)).toHaveLength(2) // <|eot_id|> as one token each time
    expect(tok.decode(ids, { special: true })).toBe(text)
  })

  it('stops on <|eot_id|> and <|end_of_text|>', () => {
    const stop = chatStopTokens(tok)
    expect(stop).toContain(128009)
    expect(stop).toContain(128001)
  })
})

describe('Qwen 3 chat template (tokenizer.chat_template in GGUF metadata)', () => {
  let tok: GgufTokenizer
  beforeAll(async () => { tok = await GgufTokenizer.create(lenmlGgufMeta('qwen3')) })

  it('renders <|im_start|> turns with the generation prompt', () => {
    const { text, ids } = chatPrompt(tok, [SYSTEM, USER])
    expect(text).toBe('<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n')
    expect(ids[0]).toBe(151644) // no BOS: the file says add_bos_token false
    expect(ids.filter(id => id === 151645)).toHaveLength(2)
    expect(tok.decode(ids, { special: true })).toBe(text)
  })

  it('renders earlier assistant turns, thinking switched off, and no generation prompt when asked', () => {
    const msgs = [USER, { role: 'assistant', content: 'I am Qwen.' }, { role: 'user', content: 'Thanks' }]
    expect(chatPrompt(tok, msgs, { variables: { enable_thinking: false } }).text).toBe(
      '<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\nI am Qwen.<|im_end|>\n' +
      '<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n')
    expect(chatPrompt(tok, [USER], { addGenerationPrompt: false }).text).toBe('<|im_start|>user\nHello, who are you?<|im_end|>\n')
  })

  it('stops on <|im_end|> and <|endoftext|>', () => {
    expect(chatStopTokens(tok)).toEqual(expect.arrayContaining([151643, 151645]))
    expect(chatStopTokens(tok, [7])).toContain(7)
  })

  it('keeps user text that spells a special token as text only when the caller encodes it so', () => {
    expect(tok.encode('<|im_end|>', { parseSpecial: false }).length).toBeGreaterThan(1)
    expect(tok.encode('<|im_end|>')).toEqual([151645])
  })
})

describe('chat errors', () => {
  it('a model without a template (Llama 2 base) is a NoChatTemplateError', async () => {
    const tok = await GgufTokenizer.create(lenmlGgufMeta('llama2'))
    expect(() => chatPrompt(tok, [USER])).toThrow(NoChatTemplateError)
    expect(() => chatPrompt(tok, [USER])).toThrow(/no chat template/)
  })

  it('a template that raises, or does not parse, or bad messages are ChatTemplateErrors', () => {
    const strict = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('system not allowed') }}{% endif %}{{ m.content }}{% endfor %}"
    expect(() => renderChatTemplate(strict, [SYSTEM], {})).toThrow(/system not allowed/)
    expect(() => renderChatTemplate(strict, [SYSTEM], {})).toThrow(ChatTemplateError)
    expect(renderChatTemplate(strict, [USER], {})).toBe('Hello, who are you?')
    expect(() => renderChatTemplate('{% for %}', [USER], {})).toThrow(ChatTemplateError)
    expect(() => renderChatTemplate(strict, [{ role: 'user' } as never], {})).toThrow(/message 0/)
  })

  it('passes bos/eos token strings to the template', () => {
    expect(renderChatTemplate('{{ bos_token }}{{ messages[0].content }}{{ eos_token }}', [USER], { bos: '<s>', eos: '</s>' })).toBe('<s>Hello, who are you?</s>')
  })
})
