/**
 * The API's parts on their own: stop strings over streamed text, the token bucket on a manual
 * clock, chat prompts through a model's own template (and the transcript fallback), request
 * validation edge cases.
 */
import { describe, expect, it } from 'vitest'
import {
  ApiInternalError, InvalidApiKeyError, InvalidParamError, MalformedBodyError, MethodNotAllowedError, ModelNotFoundError, PromptTooLongError, RateLimitError, RequestTooLargeError, SwarmUnavailableError, UnknownRouteError, type ApiError
} from '../../web/src/api/errors.ts'
import type { ApiModel } from '../../web/src/api/generator.ts'
import { LogitPenalties } from '../../web/src/api/penalties.ts'
import { promptFor, renderChat, TRANSCRIPT_STOPS } from '../../web/src/api/prompt.ts'
import { RateLimiter } from '../../web/src/api/rate-limit.ts'
import { parseChatRequest, parseCompletionRequest } from '../../web/src/api/schema.ts'
import { StopText } from '../../web/src/api/stop-text.ts'
import { formatBlocks } from '../../web/src/api/swarm-generator.ts'
import { ByteTokenizer, type TextTokenizer } from '../../web/src/model/tokenizer.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

describe('StopText', () => {
  it('holds back a possible stop prefix across pieces and cuts at the earliest stop', () => {
    const st = new StopText(['END', 'xy'])
    const sent = ['ab', 'cE', 'N', 'D tail'].map(p => st.push(p))
    expect(sent).toEqual(['ab', 'c', '', ''])
    expect(st.stopped).toBe(true)
    expect(st.all).toBe('abc')
    expect(st.flush()).toBe('')
  })

  it('releases a held prefix once it cannot become a stop; flush gives the rest', () => {
    const st = new StopText(['END'])
    expect(st.push('aE')).toBe('a')
    expect(st.push('N')).toBe('')
    expect(st.push('d')).toBe('ENd')
    expect(st.push('E')).toBe('')
    expect(st.flush()).toBe('E')
    expect(st.stopped).toBe(false)
  })

  it('no stops: text passes straight through', () => {
    const st = new StopText([])
    expect(['a', 'b'].map(p => st.push(p)).join('')).toBe('ab')
  })
})

describe('RateLimiter (manual clock)', () => {
  it('allows a burst, refuses with the seconds to wait, refills over time; clients are separate', () => {
    const clock = new ManualClock(0)
    const rl = new RateLimiter({ perMinute: 30, burst: 2, now: clock.now })
    expect([rl.take('a'), rl.take('a')]).toEqual([0, 0])
    expect(rl.take('a')).toBe(2) // one request every 2 s
    expect(rl.take('b')).toBe(0)
    clock.advance(1000)
    expect(rl.take('a')).toBe(1)
    clock.advance(1000)
    expect(rl.take('a')).toBe(0)
  })

  it('remembers at most maxClients buckets', () => {
    const rl = new RateLimiter({ perMinute: 1, burst: 1, maxClients: 2, now: () => 0 })
    rl.take('a')
    rl.take('b')
    rl.take('c') // forgets 'a' (the oldest): it starts with a full bucket again
    expect(rl.take('a')).toBe(0)
  })
})

function model (tokenizer: TextTokenizer): ApiModel {
  return { id: 'm', contextLength: 256, tokenizer, eosTokenIds: [3], created: 0 }
}

describe('prompts', () => {
  it('a model with a chat template renders messages through it and stops at its end-of-turn ids', () => {
    const byte = new ByteTokenizer()
    const tok: TextTokenizer = Object.assign(Object.create(byte) as TextTokenizer, {
      chatTemplate: "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
      special: { endOfGeneration: [10] }
    })
    const p = promptFor(model(tok), parseChatRequest({ model: 'm', messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }] }))
    expect(new TextDecoder().decode(new Uint8Array(p.ids))).toBe('<system>Be brief.\n<user>Hi\n<assistant>')
    expect(p.transcript).toBe(false)
    expect(p.stopTokens).toEqual([3, 10])
    expect(p.stopStrings).toEqual([])
  })

  it('a model without one gets the transcript fallback, stopping at the next user turn', () => {
    const p = promptFor(model(new ByteTokenizer()), parseChatRequest({ model: 'm', messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }] }))
    expect(new TextDecoder().decode(new Uint8Array(p.ids))).toBe('System: S\nUser: U\nAssistant:')
    expect(p.transcript).toBe(true)
    expect(p.stopStrings).toEqual(TRANSCRIPT_STOPS)
  })

  it('renderChat is the rule promptFor applies to chats (the CLI\'s --chat uses it too)', () => {
    const messages = [{ role: 'user', content: 'Hello' }]
    const viaApi = promptFor(model(new ByteTokenizer()), parseChatRequest({ model: 'm', messages }))
    expect(renderChat(new ByteTokenizer(), messages, [3])).toEqual(viaApi)
  })

  it('token-id prompts outside the vocabulary are refused naming prompt', () => {
    expect(() => promptFor(model(new ByteTokenizer()), parseCompletionRequest({ model: 'm', prompt: [1, 300] }))).toThrow(InvalidParamError)
  })
})

describe('request validation', () => {
  it('defaults, top_p 0 as greedy, max_completion_tokens over max_tokens, one-element prompt arrays', () => {
    const c = parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 5, max_completion_tokens: 7, top_p: 0, temperature: 0.7 })
    expect(c).toMatchObject({ maxTokens: 7, temperature: 0, topP: 1, topK: 0, stop: [], stream: false, includeUsage: false })
    expect(parseCompletionRequest({ model: 'm', prompt: ['hello'] }).prompt).toBe('hello')
    expect(parseCompletionRequest({ model: 'm', prompt: [[1, 2]] }).prompt).toEqual([1, 2])
  })

  it('refuses several prompts, empty prompts, tools and non-text content parts, naming each', () => {
    const param = (f: () => unknown): string | null => { try { f(); return 'no error' } catch (e) { return (e as InvalidParamError).param } }
    expect(param(() => parseCompletionRequest({ model: 'm', prompt: ['a', 'b'] }))).toBe('prompt')
    expect(param(() => parseCompletionRequest({ model: 'm', prompt: '' }))).toBe('prompt')
    expect(param(() => parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }))).toBe('tools')
    expect(param(() => parseChatRequest({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }))).toBe('messages[0].content[0]')
    expect(param(() => parseChatRequest([]))).toBe(null)
  })

  it('max_tokens errors name the field the request used', () => {
    expect(parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 5 }).maxTokensParam).toBe('max_tokens')
    expect(parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 5 }).maxTokensParam).toBe('max_completion_tokens')
    expect(parseCompletionRequest({ model: 'm', prompt: 'x', max_tokens: 5 }).maxTokensParam).toBe('max_tokens')
  })

  it('frequency_penalty, presence_penalty and logit_bias: parsed, defaults 0 / none; out of range or malformed refused naming each', () => {
    const c = parseCompletionRequest({ model: 'm', prompt: 'x', frequency_penalty: 1, presence_penalty: -0.5, logit_bias: { 65: -100, 10: 2.5 } })
    expect([c.frequencyPenalty, c.presencePenalty, [...c.logitBias]]).toEqual([1, -0.5, [[10, 2.5], [65, -100]]])
    const d = parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] })
    expect([d.frequencyPenalty, d.presencePenalty, d.logitBias.size]).toEqual([0, 0, 0])
    const param = (body: Record<string, unknown>): string | null => { try { parseCompletionRequest({ model: 'm', prompt: 'x', ...body }); return 'no error' } catch (e) { return (e as InvalidParamError).param } }
    expect(param({ frequency_penalty: 2.5 })).toBe('frequency_penalty')
    expect(param({ presence_penalty: '1' })).toBe('presence_penalty')
    expect(param({ logit_bias: { 5: 101 } })).toBe('logit_bias')
    expect(param({ logit_bias: { x: 1 } })).toBe('logit_bias')
    expect(param({ logit_bias: { '-1': 1 } })).toBe('logit_bias')
    expect(param({ logit_bias: { 5: 'high' } })).toBe('logit_bias')
    expect(param({ logit_bias: [1, 2] })).toBe('logit_bias')
  })

  it('formats missing blocks as ranges', () => {
    expect(formatBlocks([0, 1, 2, 5, 7, 8])).toBe('0-2, 5, 7-8')
  })
})

describe('LogitPenalties (OpenAI\'s semantics)', () => {
  it('logit[j] += bias[j] − count_j·frequency − [count_j > 0]·presence, over the tokens generated so far; the row passed in is left alone', () => {
    const p = new LogitPenalties({ frequencyPenalty: 0.5, presencePenalty: 0.25, logitBias: new Map([[1, 3], [9, 5]]) })
    const row = new Float32Array([1, 1, 1, 1])
    expect([...p.apply(row)]).toEqual([1, 4, 1, 1]) // nothing generated yet: the bias alone (id 9 is past the row)
    for (const id of [2, 2, 0]) p.record(id)
    expect([...p.apply(row)]).toEqual([1 - 0.5 - 0.25, 4, 1 - 2 * 0.5 - 0.25, 1])
    expect([...row]).toEqual([1, 1, 1, 1])
    const none = new LogitPenalties({})
    none.record(0)
    expect(none.apply(row)).toBe(row) // inactive: no copy, no change
  })
})

describe('API errors', () => {
  it('each class answers with its status, OpenAI type and code, and whose fault it is', () => {
    // One row per class, the values each declared before the type and fault came from the status.
    const rows: Array<[ApiError, number, string, string | null, boolean]> = [
      [new InvalidParamError('m', 'p'), 400, 'invalid_request_error', 'invalid_value', true],
      [new MalformedBodyError('m'), 400, 'invalid_request_error', 'invalid_json', true],
      [new InvalidApiKeyError('m'), 401, 'invalid_request_error', 'invalid_api_key', true],
      [new UnknownRouteError('m'), 404, 'invalid_request_error', 'unknown_url', true],
      [new MethodNotAllowedError('m'), 405, 'invalid_request_error', 'method_not_allowed', true],
      [new ModelNotFoundError('m'), 404, 'invalid_request_error', 'model_not_found', true],
      [new PromptTooLongError('m'), 413, 'invalid_request_error', 'context_length_exceeded', true],
      [new RequestTooLargeError('m'), 413, 'invalid_request_error', 'request_too_large', true],
      [new RateLimitError('m', 3), 429, 'rate_limit_error', 'rate_limit_exceeded', true],
      [new SwarmUnavailableError('m'), 503, 'server_error', 'blocks_not_served', false],
      [new ApiInternalError('m'), 500, 'server_error', 'internal_error', false]
    ]
    for (const [e, status, type, code, callerFault] of rows) {
      expect([e.name, e.status, e.type, e.code, e.callerFault]).toEqual([e.constructor.name, status, type, code, callerFault])
      expect(e.body().error).toEqual({ message: 'm', type, param: e.param, code })
    }
  })
})
