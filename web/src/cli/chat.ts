/** `generate --chat TEXT [--system TEXT]`: one user turn rendered with the model's chat template. */
import { chatPrompt, chatStopTokens, type ChatMessage } from '../model/chat.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { UsageError, str, type Flags } from './args.ts'

/** Tokens a chat template adds around the text, at most, for sizing the KV cache before loading. */
const CHAT_TEMPLATE_TOKENS = 256

/** The prompt ids for --chat (and --system) and the ids that end the assistant's turn. */
export function chatFromFlags (f: Flags, tokenizer: TextTokenizer | undefined, configEos: readonly number[]): { prompt: number[], stopTokens: number[] } {
  const user = str(f, 'chat')
  if (user === undefined) throw new UsageError('--chat needs the user message')
  if (tokenizer === undefined) throw new UsageError('--chat needs the model\'s tokenizer (a GGUF with tokenizer.ggml.*, or tokenizer.json)')
  const system = str(f, 'system')
  const messages: ChatMessage[] = system !== undefined ? [{ role: 'system', content: system }] : []
  messages.push({ role: 'user', content: user })
  return { prompt: chatPrompt(tokenizer, messages).ids, stopTokens: chatStopTokens(tokenizer, configEos) }
}

/** Upper bound of the --chat prompt's tokens before the tokenizer is loaded (UTF-8 bytes + template). */
export function chatPromptBound (f: Flags): number {
  const bytes = (s: string | undefined): number => new TextEncoder().encode(s ?? '').length
  return bytes(str(f, 'chat')) + bytes(str(f, 'system')) + CHAT_TEMPLATE_TOKENS
}
