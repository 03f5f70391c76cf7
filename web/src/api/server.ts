/**
 * The OpenAI-compatible HTTP API over a Generator: GET /v1/models, POST /v1/chat/completions and
 * POST /v1/completions (JSON, or server-sent events ending `data: [DONE]`), OpenAI-shaped errors,
 * an optional Bearer key, a per-key/per-IP rate limit and CORS. Mounted by the relay (npm start)
 * and by `webswarm api`; plain node:http request/response objects in, nothing else assumed.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  ApiError, ApiInternalError, InvalidApiKeyError, InvalidParamError, MalformedBodyError, MethodNotAllowedError, ModelNotFoundError, PromptTooLongError, RateLimitError, RequestTooLargeError, UnknownRouteError
} from './errors.ts'
import type { ApiModel, FinishReason, Generator } from './generator.ts'
import { promptFor } from './prompt.ts'
import { RateLimiter, type RateLimitOptions } from './rate-limit.ts'
import { parseChatRequest, parseCompletionRequest, type ChatRequest, type CompletionRequest } from './schema.ts'
import { StopText } from './stop-text.ts'

/** Largest request body read, in bytes: a long chat fits many times over. */
export const MAX_BODY_BYTES = 4 << 20
/** Tokens a request without max_tokens may generate at most (the context may allow more). */
export const DEFAULT_MAX_TOKENS = 512
/** The path prefix the API answers under. */
export const API_PREFIX = '/v1'

export interface ApiServerOptions {
  generator: Generator
  /** Bearer keys accepted; none = no key needed. @default [] */
  apiKeys?: readonly string[]
  /** Per-client request rate limit; undefined = none. @default undefined */
  rateLimit?: RateLimitOptions
  /** Tokens a request without max_tokens may generate at most. @default DEFAULT_MAX_TOKENS */
  defaultMaxTokens?: number
  /** Clock, ms (the `created` fields). @default Date.now */
  now?: () => number
  /** One line per failed request. @default nothing */
  log?: (line: string) => void
}

type Finish = 'stop' | 'length'

export class ApiServer {
  readonly generator: Generator
  private readonly keys: Buffer[]
  private readonly limiter?: RateLimiter
  private readonly defaultMaxTokens: number
  private readonly now: () => number
  private readonly log: (line: string) => void
  private active = 0
  private idleWaiters: Array<() => void> = []
  /** Counters for tests and /metrics-like reporting. */
  readonly stats = { requests: 0, errors: 0, completions: 0, aborted: 0, tokens: 0 }

  constructor (opts: ApiServerOptions) {
    this.generator = opts.generator
    this.keys = (opts.apiKeys ?? []).map(digest)
    this.limiter = opts.rateLimit === undefined ? undefined : new RateLimiter(opts.rateLimit)
    this.defaultMaxTokens = opts.defaultMaxTokens ?? DEFAULT_MAX_TOKENS
    this.now = opts.now ?? Date.now
    this.log = opts.log ?? (() => {})
  }

  /** Generations in progress. */
  get inFlight (): number {
    return this.active
  }

  /** Resolves once no generation is in progress (their server sessions are closed by then). */
  async whenIdle (): Promise<void> {
    if (this.active === 0) return
    await new Promise<void>(resolve => this.idleWaiters.push(resolve))
  }

  /** Whether `pathname` is the API's to answer. */
  static owns (pathname: string): boolean {
    return pathname === API_PREFIX || pathname.startsWith(`${API_PREFIX}/`)
  }

  /** Answers one request under /v1. Never throws: failures become OpenAI-shaped error responses. */
  async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++
    cors(req, res)
    try {
      await this.route(req, res)
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiInternalError(`internal error: ${(e as Error).message}`)
      this.stats.errors++
      if (!(e instanceof ApiError)) this.log(`api: ${req.method ?? ''} ${req.url ?? ''}: ${(e as Error).stack ?? String(e)}`)
      else this.log(`api: ${req.method ?? ''} ${req.url ?? ''}: ${err.status} ${err.message}`)
      if (res.headersSent) {
        // Mid-stream: the error as one more event, then the end (OpenAI's clients raise it).
        if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`)
        return
      }
      const headers: Record<string, string> = {}
      if (err instanceof RateLimitError) headers['retry-after'] = String(err.retryAfterS)
      if (err instanceof InvalidApiKeyError) headers['www-authenticate'] = 'Bearer'
      // The rest of the body is left unread: the connection cannot carry another request.
      if (err instanceof RequestTooLargeError) headers.connection = 'close'
      sendJson(res, err.status, err.body(), headers)
    }
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://api')
    const path = url.pathname.replace(/\/+$/, '')
    const method = req.method ?? 'GET'
    if (method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-max-age': '600' })
      res.end()
      return
    }
    const endpoint = path === '/v1/models' || path.startsWith('/v1/models/') ? 'models' : path === '/v1/chat/completions' ? 'chat' : path === '/v1/completions' ? 'completions' : undefined
    if (endpoint === undefined) throw new UnknownRouteError(`no route ${method} ${url.pathname}: this server answers GET /v1/models, POST /v1/chat/completions and POST /v1/completions`)
    this.authorize(req)
    if (endpoint === 'models') {
      if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowedError(`${method} ${path}: use GET`)
      const id = path.length > '/v1/models/'.length ? decodeURIComponent(path.slice('/v1/models/'.length)) : undefined
      if (id === undefined) {
        sendJson(res, 200, { object: 'list', data: this.generator.models().map(modelObject) })
        return
      }
      sendJson(res, 200, modelObject(this.model(id, null)))
      return
    }
    if (method !== 'POST') throw new MethodNotAllowedError(`${method} ${path}: use POST`)
    this.rateLimit(req)
    const body = await readJson(req)
    const request = endpoint === 'chat' ? parseChatRequest(body) : parseCompletionRequest(body)
    await this.complete(request, req, res)
  }

  private authorize (req: IncomingMessage): void {
    if (this.keys.length === 0) return
    const h = req.headers.authorization
    const m = typeof h === 'string' ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null
    if (m === null) throw new InvalidApiKeyError('missing API key: send the header `Authorization: Bearer <key>`')
    const d = digest(m[1])
    if (!this.keys.some(k => timingSafeEqual(k, d))) throw new InvalidApiKeyError('incorrect API key')
  }

  private rateLimit (req: IncomingMessage): void {
    if (this.limiter === undefined) return
    const h = req.headers.authorization
    // Per key when there is one (a digest: keys are not kept in memory), else per address.
    const client = typeof h === 'string' && h !== '' ? `key:${digest(h).toString('hex')}` : `ip:${req.socket.remoteAddress ?? 'unknown'}`
    const wait = this.limiter.take(client)
    if (wait > 0) throw new RateLimitError(`rate limit reached (${this.limiter.perMinute} requests a minute, bursts of ${this.limiter.burst}); retry in ${wait} s`, wait)
  }

  private model (id: string, param: string | null): ApiModel {
    const m = this.generator.models().find(x => x.id === id)
    if (m === undefined) {
      const served = this.generator.models().map(x => `'${x.id}'`).join(', ') || 'none'
      // A relay's /models lists more than its API serves: say how to get an API for another one.
      throw new ModelNotFoundError(`the model '${id}' is not served by this API, which serves ${served} (GET /v1/models); an API serves the one model it was started with: for another, run \`webswarm api --bootstrap RELAY --model MODEL\` (MODEL: a file or URL, e.g. RELAY/models/NAME.gguf from the relay's /models list)`, param)
    }
    return m
  }

  private async complete (request: ChatRequest | CompletionRequest, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const model = this.model(request.model, 'model')
    const prompt = promptFor(model, request)
    const ctx = model.contextLength
    if (prompt.ids.length >= ctx) throw new PromptTooLongError(`the prompt is ${prompt.ids.length} tokens; ${model.id} takes at most ${ctx} tokens of prompt and completion together`, request.kind === 'chat' ? 'messages' : 'prompt')
    const room = ctx - prompt.ids.length
    if (request.maxTokens !== undefined && request.maxTokens > room) {
      throw new PromptTooLongError(`the prompt (${prompt.ids.length} tokens) and ${request.maxTokensParam} (${request.maxTokens}) exceed ${model.id}'s context of ${ctx} tokens; ask for at most ${room}`, request.maxTokensParam)
    }
    const maxTokens = request.maxTokens ?? Math.min(room, this.defaultMaxTokens)
    const outside = [...request.logitBias.keys()].find(t => t >= model.tokenizer.vocabSize)
    if (outside !== undefined) throw new InvalidParamError(`'logit_bias': token id ${outside} is outside ${model.id}'s vocabulary [0, ${model.tokenizer.vocabSize})`, 'logit_bias')
    const id = `${request.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`
    const created = Math.floor(this.now() / 1000)
    const stops = new StopText([...request.stop, ...prompt.stopStrings])
    const decode = model.tokenizer.decoder()
    const abort = new AbortController()
    // The client left (closed the socket): stop at the next token, which closes the server sessions.
    res.on('close', () => { if (!res.writableEnded) abort.abort() })
    const chunk = (choice: Record<string, unknown>, usage?: unknown): string => {
      const base = request.kind === 'chat'
        ? { id, object: 'chat.completion.chunk', created, model: model.id, system_fingerprint: null, choices: [{ index: 0, ...choice, logprobs: null }] }
        : { id, object: 'text_completion', created, model: model.id, choices: [{ index: 0, ...choice, logprobs: null }] }
      return `data: ${JSON.stringify(request.includeUsage ? { ...base, usage: usage ?? null } : base)}\n\n`
    }
    const textChoice = (text: string, finish: Finish | null): Record<string, unknown> =>
      request.kind === 'chat' ? { delta: text === '' && finish !== null ? {} : { content: text }, finish_reason: finish } : { text, finish_reason: finish }

    let started = false
    const start = (): void => {
      if (started || !request.stream) return
      started = true
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
      if (request.kind === 'chat') res.write(chunk({ delta: { role: 'assistant', content: '' }, finish_reason: null }))
    }
    // Every token's event is the same JSON but for its text: built once, around a placeholder
    // (a NUL no model id or text field holds), so a token costs one JSON.stringify of its text.
    const around = chunk(textChoice(TEXT_SLOT, null)).split(JSON.stringify(TEXT_SLOT))
    const textEvent = around.length === 2 ? (text: string) => around[0] + JSON.stringify(text) + around[1] : (text: string) => chunk(textChoice(text, null))
    const onToken = (tok: number): void => {
      start()
      const text = stops.push(decode(tok))
      if (stops.stopped) abort.abort()
      if (request.stream && text !== '' && !res.writableEnded) res.write(textEvent(text))
    }

    this.active++
    let result
    try {
      result = await this.generator.generate(model.id, prompt.ids, {
        maxTokens,
        stopTokens: prompt.stopTokens,
        temperature: request.temperature,
        topP: request.topP,
        topK: request.topK,
        seed: request.seed,
        frequencyPenalty: request.frequencyPenalty,
        presencePenalty: request.presencePenalty,
        logitBias: request.logitBias
      }, onToken, abort.signal)
    } finally {
      if (--this.active === 0) for (const w of this.idleWaiters.splice(0)) w()
    }
    this.stats.tokens += result.tokens.length
    if (res.writableEnded || res.destroyed || (result.finish === 'aborted' && !stops.stopped)) {
      this.stats.aborted++
      return
    }
    this.stats.completions++
    const finish: Finish = stops.stopped || result.finish === 'stop' ? 'stop' : finishOf(result.finish)
    const rest = stops.flush()
    const usage = { prompt_tokens: prompt.ids.length, completion_tokens: result.tokens.length, total_tokens: prompt.ids.length + result.tokens.length }
    if (request.stream) {
      start()
      if (rest !== '') res.write(chunk(textChoice(rest, null)))
      res.write(chunk(textChoice('', finish)))
      if (request.includeUsage) {
        const last = request.kind === 'chat'
          ? { id, object: 'chat.completion.chunk', created, model: model.id, system_fingerprint: null, choices: [], usage }
          : { id, object: 'text_completion', created, model: model.id, choices: [], usage }
        res.write(`data: ${JSON.stringify(last)}\n\n`)
      }
      res.end('data: [DONE]\n\n')
      return
    }
    const text = stops.all
    sendJson(res, 200, request.kind === 'chat'
      ? { id, object: 'chat.completion', created, model: model.id, system_fingerprint: null, choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }], usage }
      : { id, object: 'text_completion', created, model: model.id, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage })
  }
}

/** Stands for a text event's text in its prebuilt JSON (ApiServer.complete). */
const TEXT_SLOT = '\u0000text\u0000'

function finishOf (f: FinishReason): Finish {
  return f === 'length' ? 'length' : 'stop'
}

function modelObject (m: ApiModel): Record<string, unknown> {
  return { id: m.id, object: 'model', created: m.created, owned_by: m.ownedBy ?? 'webswarm', context_length: m.contextLength }
}

function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** CORS for browser apps: any origin, the methods used, and whatever headers the preflight asks for (OpenAI's SDK sends x-stainless-*). */
function cors (req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('access-control-allow-origin', '*')
  res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS')
  const asked = req.headers['access-control-request-headers']
  res.setHeader('access-control-allow-headers', typeof asked === 'string' && asked !== '' ? asked : 'authorization, content-type')
  res.setHeader('access-control-expose-headers', 'retry-after')
}

function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

/** The request body as JSON, at most MAX_BODY_BYTES. */
async function readJson (req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const c of req) {
    const b = c as Buffer
    bytes += b.length
    if (bytes > MAX_BODY_BYTES) throw new RequestTooLargeError(`the request body exceeds ${MAX_BODY_BYTES} bytes`)
    chunks.push(b)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') throw new MalformedBodyError('the body is empty; send a JSON object')
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new MalformedBodyError(`the body is not valid JSON: ${(e as Error).message}`)
  }
}
