/**
 * Requests → prompt token ids. Chat messages go through the model's own chat template
 * (model/chat.ts, as Hugging Face's apply_chat_template). A model without one — the embedded
 * byte-level default, a base model trained on plain text — gets a plain transcript instead:
 *
 *     System: {system message}
 *     User: {message}
 *     Assistant: {message}
 *     User: {message}
 *     Assistant:
 *
 * and generation also stops at a new "\nUser:" line (the model would otherwise write the user's
 * next turn too). That is a convention, not the model's training format; say so to users.
 */
import { ChatTemplateError, chatPrompt, chatStopTokens } from '../model/chat.ts'
import type { ChatMessage } from '../model/chat.ts'
import { TokenizerError } from '../model/errors.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { InvalidParamError } from './errors.ts'
import type { ApiModel } from './generator.ts'
import type { ChatRequest, CompletionRequest } from './schema.ts'

/** Where the transcript fallback stops: the start of the next user turn. */
export const TRANSCRIPT_STOPS = ['\nUser:']

export interface Prompt {
  ids: number[]
  /** Ids that end the generation (eos, end of turn). */
  stopTokens: number[]
  /** Stop strings the server adds to the request's own (the transcript fallback's). */
  stopStrings: string[]
  /** True when the chat went through the transcript fallback (no chat template). */
  transcript: boolean
}

const ROLE_NAMES: Record<string, string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool' }

/** The fallback transcript for models without a chat template (see the file comment). */
export function transcript (messages: readonly ChatMessage[]): string {
  return messages.map(m => `${ROLE_NAMES[m.role] ?? m.role}: ${m.content}\n`).join('') + 'Assistant:'
}

/**
 * Chat messages → prompt ids by the one rule every entry point uses (the API, `webswarm generate
 * --chat`, the page): the model's chat template, else the transcript (see the file comment).
 * Throws ChatTemplateError for messages the template refuses; each caller words that its own way.
 */
export function renderChat (tok: TextTokenizer, messages: readonly ChatMessage[], eosTokenIds: readonly number[]): Prompt {
  if (tok.chatTemplate === undefined) {
    return { ids: tok.encode(transcript(messages)), stopTokens: [...eosTokenIds], stopStrings: TRANSCRIPT_STOPS, transcript: true }
  }
  return { ids: chatPrompt(tok, messages).ids, stopTokens: chatStopTokens(tok, eosTokenIds), stopStrings: [], transcript: false }
}

function chatRequestPrompt (model: ApiModel, req: ChatRequest): Prompt {
  try {
    return renderChat(model.tokenizer, req.messages, model.eosTokenIds)
  } catch (e) {
    // The template's own checks (roles out of order, a system message it refuses) are the caller's to fix.
    if (e instanceof ChatTemplateError) throw new InvalidParamError(`messages: ${e.message}`, 'messages')
    throw e
  }
}

function completionRequestPrompt (model: ApiModel, req: CompletionRequest): Prompt {
  const tok = model.tokenizer
  let ids: number[]
  if (typeof req.prompt === 'string') ids = tok.encode(req.prompt)
  else {
    const bad = req.prompt.find(id => id >= tok.vocabSize)
    if (bad !== undefined) throw new InvalidParamError(`prompt token id ${bad} is outside the vocabulary [0, ${tok.vocabSize})`, 'prompt')
    ids = req.prompt
  }
  return { ids, stopTokens: [...model.eosTokenIds], stopStrings: [], transcript: false }
}

/** Encoding failures (a tokenizer that cannot take the text) are the request's fault. */
export function promptFor (model: ApiModel, req: ChatRequest | CompletionRequest): Prompt {
  try {
    return req.kind === 'chat' ? chatRequestPrompt(model, req) : completionRequestPrompt(model, req)
  } catch (e) {
    if (e instanceof TokenizerError) throw new InvalidParamError(e.message, req.kind === 'chat' ? 'messages' : 'prompt')
    throw e
  }
}
