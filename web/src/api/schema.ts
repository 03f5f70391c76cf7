/**
 * Request validation for POST /v1/chat/completions and /v1/completions, after OpenAI's API
 * reference: each field's type and range is checked and a bad one answers 400 naming it (`param`).
 * Fields OpenAI defines that would change the answer but are not implemented here (`n` > 1,
 * `logprobs`, `tools`, `echo`, `best_of` > 1, `suffix`, `response_format` other than text) are
 * refused rather than ignored; `frequency_penalty`, `presence_penalty` and `logit_bias` are
 * applied (penalties.ts); fields that do not change the answer (`user`, `metadata`, …) are
 * accepted and ignored, as OpenAI-compatible servers commonly do.
 */
import type { ChatMessage } from '../model/chat.ts'
import { InvalidParamError } from './errors.ts'

/** OpenAI's cap on stop sequences. */
const MAX_STOP_SEQUENCES = 4
/** Longest stop sequence accepted, in characters. */
const MAX_STOP_CHARS = 256
/** Most chat messages in one request. */
const MAX_MESSAGES = 1024
/** OpenAI's range of frequency_penalty and presence_penalty. */
const MAX_PENALTY = 2
/** OpenAI's range of a logit_bias value. */
const MAX_LOGIT_BIAS = 100
/** Most logit_bias entries in one request: bounds the work per sampled token. */
const MAX_LOGIT_BIAS_ENTRIES = 1024
/** Roles a chat message may have (`developer` is OpenAI's newer name for `system`). */
const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool'])

/** What both endpoints share. */
interface GenerationRequest {
  model: string
  /** Tokens to generate at most; undefined = what the context leaves (capped by the server). */
  maxTokens?: number
  /** The field maxTokens came from (`max_tokens`, or chat's `max_completion_tokens`): errors name it. */
  maxTokensParam: string
  /** 0 = greedy. OpenAI's default is 1. */
  temperature: number
  /** (0, 1]; OpenAI's top_p 0 is taken as greedy. */
  topP: number
  /** 0 = off (an extension; OpenAI has none). */
  topK: number
  seed?: number
  /** Text that ends the generation (not included in the output). */
  stop: string[]
  stream: boolean
  /** stream_options.include_usage: a last chunk carrying usage. */
  includeUsage: boolean
  /** [-2, 2]; 0 = off (penalties.ts). */
  frequencyPenalty: number
  /** [-2, 2]; 0 = off (penalties.ts). */
  presencePenalty: number
  /** Token id → bias in [-100, 100]; ids are checked against the model's vocabulary by the server. */
  logitBias: Map<number, number>
}

export interface ChatRequest extends GenerationRequest {
  kind: 'chat'
  messages: ChatMessage[]
}

export interface CompletionRequest extends GenerationRequest {
  kind: 'completion'
  /** Text, or token ids. */
  prompt: string | number[]
}

type Json = Record<string, unknown>

function isObject (v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function has (o: Json, k: string): boolean {
  return o[k] !== undefined && o[k] !== null
}

function num (o: Json, k: string, lo: number, hi: number, fallback: number): number {
  if (!has(o, k)) return fallback
  const v = o[k]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidParamError(`'${k}' must be a number, got ${JSON.stringify(v)}`, k, 'invalid_type')
  if (v < lo || v > hi) throw new InvalidParamError(`'${k}' must be in [${lo}, ${hi}], got ${v}`, k)
  return v
}

function int (o: Json, k: string, lo: number, hi: number): number | undefined {
  if (!has(o, k)) return undefined
  const v = o[k]
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidParamError(`'${k}' must be an integer, got ${JSON.stringify(v)}`, k, 'invalid_type')
  if (v < lo || v > hi) throw new InvalidParamError(`'${k}' must be in [${lo}, ${hi}], got ${v}`, k)
  return v
}

function bool (o: Json, k: string): boolean {
  if (!has(o, k)) return false
  if (typeof o[k] !== 'boolean') throw new InvalidParamError(`'${k}' must be a boolean, got ${JSON.stringify(o[k])}`, k, 'invalid_type')
  return o[k] as boolean
}

function stops (o: Json): string[] {
  if (!has(o, 'stop')) return []
  const v = o.stop
  const list = typeof v === 'string' ? [v] : v
  if (!Array.isArray(list) || !list.every(s => typeof s === 'string')) throw new InvalidParamError(`'stop' must be a string or an array of strings, got ${JSON.stringify(v)}`, 'stop', 'invalid_type')
  if (list.length > MAX_STOP_SEQUENCES) throw new InvalidParamError(`'stop' takes at most ${MAX_STOP_SEQUENCES} sequences, got ${list.length}`, 'stop')
  for (const s of list as string[]) {
    if (s === '' || s.length > MAX_STOP_CHARS) throw new InvalidParamError(`each 'stop' sequence must have 1 to ${MAX_STOP_CHARS} characters`, 'stop')
  }
  return list as string[]
}

/** logit_bias: `{"token id": bias}`, ids as decimal strings (JSON keys), biases in [-100, 100]. */
function logitBias (o: Json): Map<number, number> {
  const out = new Map<number, number>()
  if (!has(o, 'logit_bias')) return out
  const v = o.logit_bias
  if (!isObject(v)) throw new InvalidParamError(`'logit_bias' must be an object mapping token ids to biases, got ${JSON.stringify(v)}`, 'logit_bias', 'invalid_type')
  const entries = Object.entries(v)
  if (entries.length > MAX_LOGIT_BIAS_ENTRIES) throw new InvalidParamError(`'logit_bias' holds ${entries.length} entries; at most ${MAX_LOGIT_BIAS_ENTRIES}`, 'logit_bias')
  for (const [k, b] of entries) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(k)) throw new InvalidParamError(`'logit_bias' keys must be token ids (non-negative integers as strings), got ${JSON.stringify(k)}`, 'logit_bias')
    if (typeof b !== 'number' || !Number.isFinite(b)) throw new InvalidParamError(`'logit_bias' values must be numbers, got ${JSON.stringify(b)} for token ${k}`, 'logit_bias', 'invalid_type')
    if (b < -MAX_LOGIT_BIAS || b > MAX_LOGIT_BIAS) throw new InvalidParamError(`'logit_bias' values must be in [-${MAX_LOGIT_BIAS}, ${MAX_LOGIT_BIAS}], got ${b} for token ${k}`, 'logit_bias')
    out.set(Number(k), b)
  }
  return out
}

/** Refuses fields whose meaning this server does not implement. */
function unsupported (o: Json): void {
  const n = int(o, 'n', 1, 128)
  if (n !== undefined && n !== 1) throw new InvalidParamError(`'n' must be 1 here (one choice per request), got ${n}`, 'n', 'unsupported_value')
  const bestOf = int(o, 'best_of', 1, 128)
  if (bestOf !== undefined && bestOf !== 1) throw new InvalidParamError(`'best_of' must be 1 here, got ${bestOf}`, 'best_of', 'unsupported_value')
  if (o.logprobs === true || (typeof o.logprobs === 'number' && o.logprobs > 0)) throw new InvalidParamError("'logprobs' is not supported", 'logprobs', 'unsupported_parameter')
  if (has(o, 'top_logprobs') && o.top_logprobs !== 0) throw new InvalidParamError("'top_logprobs' is not supported", 'top_logprobs', 'unsupported_parameter')
  if (o.echo === true) throw new InvalidParamError("'echo' is not supported", 'echo', 'unsupported_parameter')
  if (has(o, 'suffix')) throw new InvalidParamError("'suffix' is not supported", 'suffix', 'unsupported_parameter')
  for (const k of ['tools', 'functions', 'tool_choice', 'function_call']) {
    if (has(o, k) && !(Array.isArray(o[k]) && (o[k] as unknown[]).length === 0) && o[k] !== 'none') throw new InvalidParamError(`'${k}' (tool calling) is not supported`, k, 'unsupported_parameter')
  }
  const rf = o.response_format
  if (has(o, 'response_format') && !(isObject(rf) && rf.type === 'text')) throw new InvalidParamError("'response_format' other than {type: 'text'} is not supported", 'response_format', 'unsupported_value')
}

function common (o: Json, maxTokensKeys: string[]): GenerationRequest {
  if (typeof o.model !== 'string' || o.model === '') throw new InvalidParamError("'model' is required: a model id from GET /v1/models", 'model', has(o, 'model') ? 'invalid_type' : 'missing_required_parameter')
  unsupported(o)
  let maxTokens: number | undefined
  let maxTokensParam = maxTokensKeys[0]
  for (const k of maxTokensKeys) {
    if (maxTokens !== undefined) break
    maxTokens = int(o, k, 1, 1 << 20)
    if (maxTokens !== undefined) maxTokensParam = k
  }
  const temperature = num(o, 'temperature', 0, 2, 1)
  const topP = num(o, 'top_p', 0, 1, 1)
  const topK = int(o, 'top_k', 0, 1 << 20) ?? 0
  const seed = int(o, 'seed', -(2 ** 53) + 1, 2 ** 53 - 1)
  const stream = bool(o, 'stream')
  let includeUsage = false
  if (has(o, 'stream_options')) {
    const so = o.stream_options
    if (!isObject(so)) throw new InvalidParamError("'stream_options' must be an object", 'stream_options', 'invalid_type')
    if (!stream) throw new InvalidParamError("'stream_options' is only allowed with 'stream': true", 'stream_options')
    includeUsage = bool(so, 'include_usage')
  }
  return {
    model: o.model,
    maxTokens,
    maxTokensParam,
    // top_p 0 keeps only the most likely token: greedy.
    temperature: topP === 0 ? 0 : temperature,
    topP: topP === 0 ? 1 : topP,
    topK,
    seed,
    stop: stops(o),
    stream,
    includeUsage,
    frequencyPenalty: num(o, 'frequency_penalty', -MAX_PENALTY, MAX_PENALTY, 0),
    presencePenalty: num(o, 'presence_penalty', -MAX_PENALTY, MAX_PENALTY, 0),
    logitBias: logitBias(o)
  }
}

/** A message's content: a string, or an array of text parts (OpenAI's content parts; images are refused). */
function content (v: unknown, i: number): string {
  if (typeof v === 'string') return v
  if (v === null || v === undefined) return ''
  if (!Array.isArray(v)) throw new InvalidParamError(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`, 'invalid_type')
  return v.map((p, j) => {
    if (!isObject(p) || p.type !== 'text' || typeof p.text !== 'string') throw new InvalidParamError(`messages[${i}].content[${j}]: only {type: 'text', text} parts are supported`, `messages[${i}].content[${j}]`, 'unsupported_value')
    return p.text
  }).join('')
}

/** Validates a /v1/chat/completions body. */
export function parseChatRequest (body: unknown): ChatRequest {
  if (!isObject(body)) throw new InvalidParamError('the body must be a JSON object', null, 'invalid_type')
  const base = common(body, ['max_completion_tokens', 'max_tokens'])
  const m = body.messages
  if (!Array.isArray(m) || m.length === 0) throw new InvalidParamError("'messages' must be a non-empty array", 'messages', has(body, 'messages') ? 'invalid_type' : 'missing_required_parameter')
  if (m.length > MAX_MESSAGES) throw new InvalidParamError(`'messages' holds ${m.length} messages; at most ${MAX_MESSAGES}`, 'messages')
  const messages = m.map((x: unknown, i): ChatMessage => {
    if (!isObject(x)) throw new InvalidParamError(`messages[${i}] must be an object`, `messages[${i}]`, 'invalid_type')
    if (typeof x.role !== 'string' || !CHAT_ROLES.has(x.role)) throw new InvalidParamError(`messages[${i}].role must be one of ${[...CHAT_ROLES].join(', ')}, got ${JSON.stringify(x.role)}`, `messages[${i}].role`)
    return { role: x.role === 'developer' ? 'system' : x.role, content: content(x.content, i) }
  })
  return { kind: 'chat', ...base, messages }
}

/** Validates a /v1/completions body. */
export function parseCompletionRequest (body: unknown): CompletionRequest {
  if (!isObject(body)) throw new InvalidParamError('the body must be a JSON object', null, 'invalid_type')
  const base = common(body, ['max_tokens'])
  let p = body.prompt
  // OpenAI takes a string, an array of strings, token ids, or arrays of token ids; one prompt per request here.
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0]
  let prompt: string | number[]
  if (typeof p === 'string') prompt = p
  else if (Array.isArray(p) && p.length > 0 && p.every(x => Number.isInteger(x) && (x as number) >= 0)) prompt = p as number[]
  else if (Array.isArray(p) && p.length > 1 && p.every(x => typeof x === 'string' || Array.isArray(x))) throw new InvalidParamError("'prompt' holds several prompts; send one per request", 'prompt', 'unsupported_value')
  else throw new InvalidParamError("'prompt' must be a string or a non-empty array of token ids", 'prompt', has(body, 'prompt') ? 'invalid_type' : 'missing_required_parameter')
  if (prompt === '') throw new InvalidParamError("'prompt' is empty", 'prompt')
  return { kind: 'completion', ...base, prompt }
}
