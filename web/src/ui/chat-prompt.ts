/**
 * The page chat's prompt: the whole conversation, rendered by the API's own rule
 * (api/prompt.ts `renderChat`) so that the page and POST /v1/chat/completions give a model the
 * same token ids for the same messages — its chat template, or for a model without one the plain
 * User:/Assistant: transcript with its "\nUser:" stop. Plus the stop-string cut the page needs to
 * show a streamed reply (the API's server does the same with its StopText).
 */
import { renderChat, type Prompt } from '../api/prompt.ts'
import type { ChatMessage } from '../model/chat.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'

/** What of the model the prompt depends on. */
export interface ChatModel {
  id: string
  tokenizer: TextTokenizer
  eosTokenIds: readonly number[]
  /** max_position_embeddings. */
  contextLength: number
}

/** The prompt for the next assistant turn after `messages` (the API's rendering; see the file comment). */
export function chatTurnPrompt (model: ChatModel, messages: readonly ChatMessage[]): Prompt {
  return renderChat(model.tokenizer, messages, model.eosTokenIds)
}

/**
 * The reply as it may be shown: `text` up to the first stop string (`stopped` then), else `text`
 * without a tail that could still grow into one (a later token may complete "\nUser:").
 */
export function cutAtStop (text: string, stops: readonly string[]): { shown: string, stopped: boolean } {
  let at = -1
  for (const s of stops) {
    const i = text.indexOf(s)
    if (i >= 0 && (at < 0 || i < at)) at = i
  }
  if (at >= 0) return { shown: text.slice(0, at), stopped: true }
  let hold = 0
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) { hold = k; break }
    }
  }
  return { shown: text.slice(0, text.length - hold), stopped: false }
}
