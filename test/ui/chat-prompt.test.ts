import { describe, expect, it } from 'vitest'
import { transcript, TRANSCRIPT_STOPS } from '../../web/src/api/prompt.ts'
import type { ChatMessage } from '../../web/src/model/chat.ts'
import { ByteTokenizer, type TextTokenizer } from '../../web/src/model/tokenizer.ts'
import { chatTurnPrompt, cutAtStop } from '../../web/src/ui/chat-prompt.ts'

const text = (ids: number[]): string => new TextDecoder().decode(new Uint8Array(ids))
const conversation: ChatMessage[] = [{ role: 'user', content: 'First' }, { role: 'assistant', content: ' ok' }, { role: 'user', content: 'Second' }]

describe('the page chat prompt', () => {
  it('a model without a chat template gets every turn as the API\'s User:/Assistant: transcript, and its stop', () => {
    const p = chatTurnPrompt({ id: 'default', tokenizer: new ByteTokenizer(), eosTokenIds: [], contextLength: 256 }, conversation)
    // The earlier turns are in the prompt (the page used to encode only "Second": 6 tokens).
    expect(text(p.ids)).toBe('User: First\nAssistant:  ok\nUser: Second\nAssistant:')
    expect(text(p.ids)).toBe(transcript(conversation))
    expect(p.stopStrings).toEqual(TRANSCRIPT_STOPS)
  })

  it('a model with a chat template renders the conversation through it, stopping at its end-of-turn ids', () => {
    const tok: TextTokenizer = Object.assign(Object.create(new ByteTokenizer()) as TextTokenizer, {
      chatTemplate: '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}',
      special: { endOfGeneration: [10] }
    })
    const p = chatTurnPrompt({ id: 'm', tokenizer: tok, eosTokenIds: [3], contextLength: 256 }, conversation)
    expect(text(p.ids)).toBe('<user>First\n<assistant> ok\n<user>Second\n<assistant>')
    expect(p.stopTokens).toEqual([3, 10])
    expect(p.stopStrings).toEqual([])
  })
})

describe('cutAtStop', () => {
  it('ends the reply before a stop string and holds back a tail that may become one', () => {
    expect(cutAtStop(' fine\nUser: more', ['\nUser:'])).toEqual({ shown: ' fine', stopped: true })
    expect(cutAtStop(' fine\nUs', ['\nUser:'])).toEqual({ shown: ' fine', stopped: false })
    expect(cutAtStop(' fine\nthen', ['\nUser:'])).toEqual({ shown: ' fine\nthen', stopped: false })
    expect(cutAtStop('abc', [])).toEqual({ shown: 'abc', stopped: false })
  })
})
