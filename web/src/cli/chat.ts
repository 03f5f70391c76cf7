/**
 * `generate --chat TEXT [--system TEXT]`: one user turn rendered by the API's rule
 * (api/prompt.ts renderChat: the model's chat template, else the User:/Assistant: transcript),
 * so a model answers a chat the same way from the CLI, the API and the page.
 */
import { ChatTemplateError, type ChatMessage } from '../model/chat.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { renderChat } from '../api/prompt.ts'
import { StopText } from '../api/stop-text.ts'
import { UsageError, str, type Flags } from './args.ts'
import { tokenPrinter } from './sampling.ts'

/** Tokens a chat template adds around the text, at most, for sizing the KV cache before loading. */
const CHAT_TEMPLATE_TOKENS = 256

/** The prompt ids for --chat (and --system), the ids that end the assistant's turn, and the text that does (the transcript's). */
export function chatFromFlags (f: Flags, tokenizer: TextTokenizer | undefined, configEos: readonly number[]): { prompt: number[], stopTokens: number[], stopStrings: readonly string[] } {
  const user = str(f, 'chat')
  if (user === undefined) throw new UsageError('--chat needs the user message')
  if (tokenizer === undefined) throw new UsageError('--chat needs the model\'s tokenizer (a GGUF with tokenizer.ggml.*, or tokenizer.json)')
  const system = str(f, 'system')
  const messages: ChatMessage[] = system !== undefined ? [{ role: 'system', content: system }] : []
  messages.push({ role: 'user', content: user })
  try {
    const p = renderChat(tokenizer, messages, configEos)
    return { prompt: p.ids, stopTokens: p.stopTokens, stopStrings: p.stopStrings }
  } catch (e) {
    // The template refused the messages (e.g. a system message it does not take): the flags' fault.
    if (e instanceof ChatTemplateError) throw new UsageError(`--chat: ${e.message}`)
    throw e
  }
}

/** Upper bound of the --chat prompt's tokens before the tokenizer is loaded (UTF-8 bytes + template). */
export function chatPromptBound (f: Flags): number {
  const bytes = (s: string | undefined): number => new TextEncoder().encode(s ?? '').length
  return bytes(str(f, 'chat')) + bytes(str(f, 'system')) + CHAT_TEMPLATE_TOKENS
}

/**
 * Ends a generation from its onToken: generate() and swarmGenerate() take stop ids, not stop
 * text, and a throw leaves their loop through the `finally` that frees the session. Not a failure.
 */
class StopTextReached {}

/**
 * Runs `run` with an onToken that prints each new token (text through `decode`, else ids) and
 * ends the generation where one of `stopStrings` appears, printing none of it (api/stop-text.ts,
 * as the API cuts its answers). Returns the tokens `run` returns (a verifying swarm generation
 * may have withdrawn some it streamed), or, cut short, those generated up to the stop.
 */
export async function printUntilStopText (stopStrings: readonly string[], decode: ((id: number) => string) | undefined, run: (onToken: (id: number) => void) => Promise<number[]>): Promise<number[]> {
  if (stopStrings.length === 0 || decode === undefined) return await run(tokenPrinter(decode))
  const stops = new StopText(stopStrings)
  const streamed: number[] = []
  let tokens: number[]
  try {
    tokens = await run(id => {
      streamed.push(id)
      process.stdout.write(stops.push(decode(id)))
      if (stops.stopped) throw new StopTextReached()
    })
  } catch (e) {
    if (!(e instanceof StopTextReached)) throw e
    tokens = streamed
  }
  process.stdout.write(stops.flush())
  return tokens
}
