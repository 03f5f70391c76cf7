/**
 * The OpenAI-compatible API through the official `openai` client, over an in-process swarm (the
 * default byte-llama model on CPU twins, a block server on the seeded memory network): answers
 * equal the swarm's own greedy generation; streaming, completions, stop strings, usage; every
 * error status; 8 concurrent requests; a client that leaves frees its server session; bad input
 * never stops the server. No test waits on real time.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiServer, type ApiServerOptions } from '../../web/src/api/server.ts'
import { loadSwarmModel, SwarmGenerator, type SwarmModel } from '../../web/src/api/swarm-generator.ts'
import { transcript } from '../../web/src/api/prompt.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const MODEL = 'byte-llama'
const source = sourceFrom('models/byte-llama')
const enc = (s: string): number[] => [...new TextEncoder().encode(s)]
const dec = (ids: number[]): string => new TextDecoder().decode(new Uint8Array(ids))

interface Swarm { net: MemoryNetwork, dir: MemoryDirectory, roles: ServerRole[], model: SwarmModel }
const cleanups: Array<() => Promise<void> | void> = []
afterAll(async () => { for (const c of cleanups.reverse()) await c() })

/** A swarm serving `spans` of byte-llama, and the API's model on it. */
async function swarm (seed: number, spans: Array<[number, number]>, cacheTokens = 4096): Promise<Swarm> {
  const net = new MemoryNetwork({ seed })
  const dir = new MemoryDirectory()
  const roles: ServerRole[] = []
  for (const [i, [s, e]] of spans.entries()) {
    const role = new ServerRole({
      transport: net.endpoint(`s${i}`), directory: dir, model: MODEL, numBlocks: 3, span: { start: s, end: e },
      loadSpan: async (a, b) => await loadSpanBackend(source, cpu, MODEL, a, b), cacheBudgetBytes: cacheTokens * (e - s) * 2 * 2 * 24 * 4, log: () => {}
    })
    await role.start()
    roles.push(role)
    cleanups.push(async () => { await role.stop() })
  }
  const model = await loadSwarmModel({ transport: net.endpoint('api'), directory: dir, id: MODEL, source, backend: cpu, timeoutMs: 60_000, hedge: false })
  return { net, dir, roles, model }
}

/** An ApiServer on a loopback port and an `openai` client for it. */
async function serve (opts: ApiServerOptions, apiKey = 'unused'): Promise<{ api: ApiServer, url: string, client: OpenAI }> {
  const api = new ApiServer(opts)
  const server = http.createServer((req, res) => { void api.handle(req, res) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { api, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 }) }
}

/** The swarm's own greedy continuation of `prompt` (the reference the API must reproduce). */
async function greedy (s: Swarm, prompt: number[], n: number): Promise<number[]> {
  return (await swarmGenerate(s.model.client, s.model.ends, prompt, { maxNewTokens: n, stopTokens: [] })).tokens
}

let s: Swarm
let api: ApiServer
let url: string
let client: OpenAI

beforeAll(async () => {
  s = await swarm(1, [[0, 2], [2, 3]])
  ;({ api, url, client } = await serve({ generator: new SwarmGenerator([s.model]) }))
})

describe('OpenAI API over the swarm (openai client)', () => {
  it('GET /v1/models lists the model', async () => {
    const list = await client.models.list()
    expect(list.data.map(m => m.id)).toEqual([MODEL])
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL)
  })

  it('chat, non-stream: the swarm\'s greedy tokens through the transcript fallback, usage and finish_reason length', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'The man' }]
    const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0 })
    const prompt = enc(transcript(messages))
    const ref = dec(await greedy(s, prompt, 12))
    expect(r.object).toBe('chat.completion')
    expect(r.choices[0].message.role).toBe('assistant')
    // The fallback stops at a new user turn: the reference cut there.
    const cut = ref.indexOf('\nUser:')
    expect(r.choices[0].message.content).toBe(cut >= 0 ? ref.slice(0, cut) : ref)
    expect(r.choices[0].finish_reason).toBe(cut >= 0 ? 'stop' : 'length')
    expect(r.usage).toEqual({ prompt_tokens: prompt.length, completion_tokens: 12, total_tokens: prompt.length + 12 })
  })

  it('chat, stream: deltas add up to the non-stream answer; include_usage adds a usage chunk; [DONE] ends it', async () => {
    const body = { model: MODEL, messages: [{ role: 'user' as const, content: 'It was' }], max_completion_tokens: 10, temperature: 0 }
    const whole = await client.chat.completions.create(body)
    const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | undefined | null
    let chunks = 0
    for await (const c of stream) {
      chunks++
      if (c.choices.length > 0) {
        text += c.choices[0].delta.content ?? ''
        finish = c.choices[0].finish_reason ?? finish
      } else usage = c.usage
    }
    expect(text).toBe(whole.choices[0].message.content)
    expect(finish).toBe(whole.choices[0].finish_reason)
    expect(usage).toEqual(whole.usage)
    expect(chunks).toBeGreaterThan(3)
    // The raw stream ends with data: [DONE].
    const raw = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) })
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const rawText = await raw.text()
    expect(rawText.trimEnd().endsWith('data: [DONE]')).toBe(true)
    // Each text event (built from a prebuilt JSON around its text, server.ts) is the chunk object,
    // whole, in OpenAI's key order; together they spell the answer.
    const events = rawText.split('\n\n').filter(e => e.startsWith('data: {')).map(e => ({ line: e, json: JSON.parse(e.slice(6)) as OpenAI.ChatCompletionChunk }))
    const texts = events.filter(e => e.json.choices[0]?.delta.content !== undefined && e.json.choices[0].delta.content !== '')
    expect(texts.map(e => e.json.choices[0].delta.content).join('')).toBe(whole.choices[0].message.content)
    for (const { line, json } of texts) {
      expect(line).toBe(`data: ${JSON.stringify({ id: json.id, object: 'chat.completion.chunk', created: json.created, model: MODEL, system_fingerprint: null, choices: [{ index: 0, delta: { content: json.choices[0].delta.content }, finish_reason: null, logprobs: null }] })}`)
    }
  })

  it('completions: greedy text, token-id prompts, and a stop string cuts the text (finish_reason stop), streamed or not', async () => {
    const prompt = 'The jury said '
    const ref = dec(await greedy(s, enc(prompt), 16))
    const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 16, temperature: 0 })
    expect(r.choices[0].text).toBe(ref)
    expect(r.choices[0].finish_reason).toBe('length')
    const byIds = await client.completions.create({ model: MODEL, prompt: enc(prompt), max_tokens: 16, temperature: 0 })
    expect(byIds.choices[0].text).toBe(ref)
    // Stop at the text's 6th–7th characters: the answer is what comes before.
    const stop = ref.slice(5, 7)
    const want = ref.slice(0, ref.indexOf(stop))
    const cut = await client.completions.create({ model: MODEL, prompt, max_tokens: 16, temperature: 0, stop: [stop, 'never-seen'] })
    expect(cut.choices[0].text).toBe(want)
    expect(cut.choices[0].finish_reason).toBe('stop')
    let streamed = ''
    for await (const c of await client.completions.create({ model: MODEL, prompt, max_tokens: 16, temperature: 0, stop, stream: true })) streamed += c.choices[0]?.text ?? ''
    expect(streamed).toBe(want)
  })

  it('sampling with a seed is reproducible; top_k 1 is greedy', async () => {
    const body = { model: MODEL, prompt: 'She ', max_tokens: 12, temperature: 0.9, top_p: 0.95, seed: 7 }
    const a = await client.completions.create(body)
    const b = await client.completions.create(body)
    expect(a.choices[0].text).toBe(b.choices[0].text)
    const greedyText = (await client.completions.create({ model: MODEL, prompt: 'She ', max_tokens: 12, temperature: 0 })).choices[0].text
    const k1 = await client.completions.create({ ...body, top_k: 1 } as OpenAI.CompletionCreateParamsNonStreaming)
    expect(k1.choices[0].text).toBe(greedyText)
  })

  it('8 concurrent requests each get their own greedy answer', async () => {
    const prompts = ['The man ', 'It was ', 'In the ', 'She said ', 'They ', 'A new ', 'He had ', 'We ']
    const refs = await Promise.all(prompts.map(async p => dec(await greedy(s, enc(p), 10))))
    const answers = await Promise.all(prompts.map(async p => (await client.completions.create({ model: MODEL, prompt: p, max_tokens: 10, temperature: 0 })).choices[0].text))
    expect(answers).toEqual(refs)
  })

  it('400s: malformed JSON, bad and unsupported parameters — each names its param; the server keeps serving', async () => {
    const post = async (body: string): Promise<{ status: number, json: { error: { message: string, type: string, param: string | null, code: string | null } } }> => {
      const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      return { status: r.status, json: await r.json() as never }
    }
    const bad = await post('{"model": "byte-llama", "messages": [')
    expect(bad.status).toBe(400)
    expect(bad.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null })
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ messages: [{ role: 'user', content: 'x' }] }, 'model'],
      [{ model: MODEL }, 'messages'],
      [{ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], n: 2 }, 'n'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 3 }, 'temperature'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], top_k: -1 }, 'top_k'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } }, 'stream_options'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], logprobs: true }, 'logprobs']
    ]
    for (const [body, param] of cases) {
      const r = await post(JSON.stringify(body))
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.json.error.param).toBe(param)
      expect(r.json.error.message).not.toBe('')
    }
    // Through the client: the typed error class.
    const e = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], n: 3 }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(OpenAI.BadRequestError)
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('n')
    const ok = await client.completions.create({ model: MODEL, prompt: 'The ', max_tokens: 3, temperature: 0 })
    expect(ok.choices[0].text.length).toBeGreaterThan(0)
  })

  it('404 for an unknown model and route; 413 for a prompt or max_tokens past the context', async () => {
    const nf = await client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] }).catch((x: unknown) => x)
    expect(nf).toBeInstanceOf(OpenAI.NotFoundError)
    expect((nf as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found')
    expect((await fetch(`${url}/v1/embeddings`, { method: 'POST', body: '{}' })).status).toBe(404)
    const long = await client.completions.create({ model: MODEL, prompt: 'x'.repeat(300), max_tokens: 4 }).catch((x: unknown) => x)
    expect(long).toBeInstanceOf(OpenAI.APIError)
    expect((long as InstanceType<typeof OpenAI.APIError>).status).toBe(413)
    expect((long as InstanceType<typeof OpenAI.APIError>).code).toBe('context_length_exceeded')
    const tooMany = await client.completions.create({ model: MODEL, prompt: 'x'.repeat(200), max_tokens: 100 }).catch((x: unknown) => x)
    expect((tooMany as InstanceType<typeof OpenAI.APIError>).status).toBe(413)
    expect((tooMany as InstanceType<typeof OpenAI.APIError>).param).toBe('max_tokens')
  })

  it('logit_bias moves the greedy token; the penalties follow OpenAI\'s formula over the completion\'s own tokens; bad values get 400', async () => {
    const prompt = 'The man '
    const n = 24
    const greedyIds = await greedy(s, enc(prompt), n)
    const complete = async (body: Record<string, unknown>): Promise<string> => (await client.completions.create({ model: MODEL, prompt, max_tokens: n, temperature: 0, ...body } as OpenAI.CompletionCreateParamsNonStreaming)).choices[0].text
    expect(await complete({})).toBe(dec(greedyIds))
    // -100 on the greedy first token: another comes first; +100 on 'Q' makes it every token.
    const banned = await complete({ max_tokens: 1, logit_bias: { [String(greedyIds[0])]: -100 } })
    expect(banned).not.toBe(dec(greedyIds.slice(0, 1)))
    expect(await complete({ max_tokens: 3, logit_bias: { 81: 100 } })).toBe('QQQ')
    // The penalties, against a reference one token at a time: each step's counts of the tokens
    // generated so far, sent as a logit_bias of −(count·frequency + presence).
    const frequency = 1
    const presence = 0.5
    const penalized = await complete({ frequency_penalty: frequency, presence_penalty: presence })
    expect(penalized).not.toBe(dec(greedyIds)) // the greedy answer repeats itself; penalties change it
    const ids: number[] = []
    for (let i = 0; i < n; i++) {
      const counts = new Map<number, number>()
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
      const bias = Object.fromEntries([...counts].map(([id, c]) => [String(id), -(c * frequency + presence)]))
      const next = await client.completions.create({ model: MODEL, prompt: [...enc(prompt), ...ids], max_tokens: 1, temperature: 0, logit_bias: bias })
      ids.push(...enc(next.choices[0].text))
    }
    expect(penalized).toBe(dec(ids))
    const status = async (body: Record<string, unknown>): Promise<[number, string | null]> => {
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt, max_tokens: 2, ...body }) })
      return [r.status, (await r.json() as { error: { param: string | null } }).error.param]
    }
    expect(await status({ frequency_penalty: 3 })).toEqual([400, 'frequency_penalty'])
    expect(await status({ presence_penalty: -2.5 })).toEqual([400, 'presence_penalty'])
    expect(await status({ logit_bias: { 65: 200 } })).toEqual([400, 'logit_bias'])
    expect(await status({ logit_bias: { 256: 1 } })).toEqual([400, 'logit_bias']) // past byte-llama's vocabulary
  })

  it('413s name what is too large: max_tokens as the request spelled it; a body over 4 MB is request_too_large', async () => {
    const chat = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 100000 }).catch((x: unknown) => x)
    expect(chat).toMatchObject({ status: 413, code: 'context_length_exceeded', param: 'max_tokens' })
    const chat2 = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 100000 }).catch((x: unknown) => x)
    expect(chat2).toMatchObject({ status: 413, param: 'max_completion_tokens' })
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'x'.repeat(5 << 20) }) })
    expect(r.status).toBe(413)
    expect((await r.json() as { error: { code: string } }).error.code).toBe('request_too_large')
  })

  it('404 for a model this API does not serve names the ones it does and how to serve another', async () => {
    const nf = await client.completions.create({ model: 'byte-mixtral', prompt: 'x', max_tokens: 1 }).catch((x: unknown) => x)
    expect(nf).toBeInstanceOf(OpenAI.NotFoundError)
    expect((nf as Error).message).toMatch(/'byte-mixtral' is not served by this API, which serves 'byte-llama'/)
    expect((nf as Error).message).toMatch(/webswarm api --bootstrap RELAY --model MODEL/)
  })

  it('a client that disconnects mid-stream frees its server sessions', async () => {
    const ac = new AbortController()
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Long' }], max_tokens: 200, temperature: 0, stream: true }, { signal: ac.signal })
    let n = 0
    try {
      for await (const c of stream) {
        if ((c.choices[0]?.delta.content ?? '') !== '' && ++n === 3) ac.abort()
      }
    } catch (e) {
      expect((e as Error).name).toMatch(/Abort/)
    }
    expect(n).toBe(3)
    // The server notices the closed socket, stops at its next token and closes the sessions.
    await api.whenIdle()
    expect(api.stats.aborted).toBeGreaterThanOrEqual(1)
    for (const r of s.roles) expect(r.server!.sessions.size).toBe(0)
  })
})

describe('API errors that need their own set-up', () => {
  it('401 without or with a wrong key; the right key works', async () => {
    const { client: good, url: u } = await serve({ generator: new SwarmGenerator([s.model]), apiKeys: ['sk-right'] }, 'sk-right')
    expect((await good.models.list()).data.length).toBe(1)
    const wrong = new OpenAI({ baseURL: `${u}/v1`, apiKey: 'sk-wrong', maxRetries: 0 })
    await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
    expect((await fetch(`${u}/v1/models`)).status).toBe(401)
  })

  it('429 past the per-key rate limit, again allowed once the (manual) clock refills the bucket; keys and IPs have separate buckets', async () => {
    const clock = new ManualClock(1e6)
    const { client: c, url: u } = await serve({ generator: new SwarmGenerator([s.model]), rateLimit: { perMinute: 60, burst: 2, now: clock.now } })
    const req = async (): Promise<unknown> => await c.completions.create({ model: MODEL, prompt: 'A', max_tokens: 1 }).catch((x: unknown) => x)
    expect(await req()).toHaveProperty('choices')
    expect(await req()).toHaveProperty('choices')
    const limited = await req()
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect((limited as InstanceType<typeof OpenAI.RateLimitError>).headers?.get('retry-after')).toBe('1')
    // Another client (no key: its IP's bucket) is not limited by this key's use.
    const anon = await fetch(`${u}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'A', max_tokens: 1 }) })
    expect(anon.status).toBe(200)
    clock.advance(1000)
    expect(await req()).toHaveProperty('choices')
  })

  it('503 naming the blocks no server covers', async () => {
    const partial = await swarm(3, [[0, 2]])
    const { client: c } = await serve({ generator: new SwarmGenerator([partial.model]) })
    const e = await c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(OpenAI.InternalServerError)
    const err = e as InstanceType<typeof OpenAI.APIError>
    expect(err.status).toBe(503)
    expect(err.code).toBe('blocks_not_served')
    expect(err.message).toMatch(/block 2 of byte-llama/)
  })

  it('503 swarm_busy when the servers\' session memory is full; the server keeps serving requests that fit', async () => {
    const small = await swarm(4, [[0, 3]], 64)
    const { client: c } = await serve({ generator: new SwarmGenerator([small.model]) })
    const e = await c.completions.create({ model: MODEL, prompt: 'The ', max_tokens: 100 }).catch((x: unknown) => x)
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
    expect((e as InstanceType<typeof OpenAI.APIError>).code).toBe('swarm_busy')
    const ok = await c.completions.create({ model: MODEL, prompt: 'The ', max_tokens: 8, temperature: 0 })
    expect(ok.choices[0].finish_reason).toBe('length')
  })

  it('past the concurrency cap, requests wait their turn (FIFO) and all get their own answer', async () => {
    const gen = new SwarmGenerator([s.model], 2)
    const { client: c } = await serve({ generator: gen })
    const prompts = ['The ', 'A ', 'It ', 'He ', 'We ']
    const refs = await Promise.all(prompts.map(async p => dec(await greedy(s, enc(p), 6))))
    const pending = prompts.map(async p => (await c.completions.create({ model: MODEL, prompt: p, max_tokens: 6, temperature: 0 })).choices[0].text)
    expect(await Promise.all(pending)).toEqual(refs)
    expect(gen.queued).toBe(0)
  })

  it('CORS: a preflight gets the origin, methods and the asked headers', async () => {
    const r = await fetch(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' } })
    expect(r.status).toBe(204)
    expect(r.headers.get('access-control-allow-origin')).toBe('*')
    expect(r.headers.get('access-control-allow-headers')).toBe('authorization, content-type, x-stainless-os')
    expect(r.headers.get('access-control-allow-methods')).toMatch(/POST/)
  })
})
