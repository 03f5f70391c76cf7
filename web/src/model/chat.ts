import { Template } from '@huggingface/jinja'
import { TokenizerError } from './errors.ts'
import type { TextTokenizer } from './tokenizer.ts'

/**
 * Chat prompts rendered with the model's own Jinja template (`tokenizer.chat_template` in a GGUF,
 * `chat_template` in tokenizer_config.json), as Hugging Face's apply_chat_template does, and the
 * token ids that end the assistant's turn.
 *
 * ```ts
 * const { ids } = chatPrompt(tokenizer, [{ role: 'user', content: 'Hello' }])
 * await generate(model, ids, { maxNewTokens: 64, stopTokens: chatStopTokens(tokenizer, model.config.eosTokenIds) })
 * ```
 */

export interface ChatMessage {
  /** 'system' | 'user' | 'assistant' | 'tool' (templates may accept others). */
  role: string
  content: string
}

export interface ChatOptions {
  /** End with the assistant's turn header, so that the model writes the reply. @default true */
  addGenerationPrompt?: boolean
  /** More template variables (e.g. `{ enable_thinking: false }` for Qwen 3). @default {} */
  variables?: Record<string, unknown>
}

/** The model ships no chat template (a base model): there is no right way to format a chat for it. */
export class NoChatTemplateError extends TokenizerError {
  override name = 'NoChatTemplateError'
}

/** The chat template failed to parse or render, or raised an error itself (e.g. roles out of order). */
export class ChatTemplateError extends TokenizerError {
  override name = 'ChatTemplateError'
}

/** Parsed templates by source: parsing a 4 KiB template costs more than rendering it. */
const parsed = new Map<string, Template>()

/** Renders `messages` with `template`; bos/eos token strings are template variables. */
export function renderChatTemplate (template: string, messages: readonly ChatMessage[], tokens: { bos?: string, eos?: string }, options: ChatOptions = {}): string {
  for (const [i, m] of messages.entries()) {
    if (typeof m?.role !== 'string' || typeof m.content !== 'string') throw new ChatTemplateError(`message ${i}: expected { role: string, content: string }`)
  }
  let t = parsed.get(template)
  if (t === undefined) {
    try {
      t = new Template(template)
    } catch (e) {
      throw new ChatTemplateError(`chat template does not parse: ${(e as Error).message}`)
    }
    parsed.set(template, t)
  }
  try {
    return t.render({
      ...options.variables,
      messages: messages.map(m => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: tokens.bos ?? '',
      eos_token: tokens.eos ?? ''
    })
  } catch (e) {
    throw new ChatTemplateError(`chat template failed: ${(e as Error).message}`)
  }
}

/** The rendered chat prompt and its token ids (special-token spellings in it become those tokens). */
export function chatPrompt (tokenizer: TextTokenizer, messages: readonly ChatMessage[], options: ChatOptions = {}): { text: string, ids: number[] } {
  const template = tokenizer.chatTemplate
  if (template === undefined) {
    throw new NoChatTemplateError('this model has no chat template (tokenizer.chat_template in the GGUF, chat_template in tokenizer_config.json): it is likely a base model; give a plain prompt instead')
  }
  const sp = tokenizer.special
  const spell = (id: number | undefined): string | undefined => id === undefined ? undefined : tokenizer.tokenText?.(id)
  const text = renderChatTemplate(template, messages, { bos: spell(sp?.bos), eos: spell(sp?.eos) }, options)
  // The template writes BOS itself when the model wants one (apply_chat_template encodes without
  // special tokens); a template that does not, for a model that adds BOS, still gets it (llama.cpp).
  const ids = tokenizer.encode(text, { addSpecial: false, parseSpecial: true })
  const withSpecial = tokenizer.encode('', { addSpecial: true })
  if (sp?.bos !== undefined && withSpecial[0] === sp.bos && ids[0] !== sp.bos) ids.unshift(sp.bos)
  return { text, ids }
}

/**
 * Ids that end the assistant's turn: the tokenizer's end-of-generation ids (eos, eot,
 * `<|eot_id|>`, `<|im_end|>`, …) together with the model config's eos ids.
 */
export function chatStopTokens (tokenizer: TextTokenizer, configEos: readonly number[] = []): number[] {
  return [...new Set([...(tokenizer.special?.endOfGeneration ?? []), ...configEos])].sort((a, b) => a - b)
}
