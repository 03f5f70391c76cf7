/**
 * Failures the API reports, one class per failure (CONTRIBUTING.md STYLE 9), each knowing its HTTP status and
 * OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}` — the fields OpenAI's
 * own clients read (`openai` npm raises BadRequestError, NotFoundError, … from the status).
 */
import { declaredError, declaredErrors, WebSwarmError, type ErrorCodeString } from '../util/errors.ts'

/** The body of every error response. */
export interface OpenAiErrorBody {
  error: { message: string, type: string, param: string | null, code: string | null }
}

export abstract class ApiError extends WebSwarmError {
  /** HTTP status. */
  abstract readonly status: number
  /** OpenAI's machine-readable code, or null. */
  readonly code: string | null = null

  constructor (message: string, readonly param: string | null = null) {
    super(message)
  }

  /** A 4xx is the caller's fault (the same request fails again), a 5xx ours: follows from the status. */
  get callerFault (): boolean {
    return this.status < 500
  }

  /** OpenAI's error type, which its API also derives from the status: 429 rate limit, 5xx server, else the request. */
  get type (): string {
    return this.status === 429 ? 'rate_limit_error' : this.status >= 500 ? 'server_error' : 'invalid_request_error'
  }

  body (): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

/** A parameter is missing, of the wrong type or out of range (400). */
export class InvalidParamError extends declaredError(ApiError, { name: 'InvalidParamError', errorCode: 'api.invalid-param', status: 400 }) {
  override readonly code: string | null

  constructor (message: string, param: string | null = null, code: string | null = 'invalid_value') {
    super(message, param)
    this.code = code
  }
}

/** An entry of the table below: its fault follows from `status` (ApiError.callerFault). */
function httpFailure (errorCode: ErrorCodeString, status: number, code: string): { errorCode: ErrorCodeString, status: number, code: string } {
  return { errorCode, status, code }
}

export const { MalformedBodyError, InvalidApiKeyError, UnknownRouteError, MethodNotAllowedError, ModelNotFoundError, PromptTooLongError, RequestTooLargeError, ApiInternalError } = declaredErrors(ApiError, {
  /** The body is not JSON, or not a JSON object (400). */
  MalformedBodyError: httpFailure('api.malformed-body', 400, 'invalid_json'),
  /** No or a wrong Bearer key (401). */
  InvalidApiKeyError: httpFailure('api.invalid-api-key', 401, 'invalid_api_key'),
  /** No such route under /v1 (404). */
  UnknownRouteError: httpFailure('api.unknown-route', 404, 'unknown_url'),
  /** The route exists, the method does not (405). */
  MethodNotAllowedError: httpFailure('api.method-not-allowed', 405, 'method_not_allowed'),
  /** `model` names a model this API does not serve (404). */
  ModelNotFoundError: httpFailure('api.model-not-found', 404, 'model_not_found'),
  /** The prompt (with max_tokens) does not fit the model's context (413). */
  PromptTooLongError: httpFailure('api.prompt-too-long', 413, 'context_length_exceeded'),
  /** The request body is over MAX_BODY_BYTES (413). */
  RequestTooLargeError: httpFailure('api.request-too-large', 413, 'request_too_large'),
  /** A failure of ours (500): a bug, or a generation that failed after it began. */
  ApiInternalError: httpFailure('api.internal', 500, 'internal_error')
})

/** Over the per-key / per-IP request rate (429). */
export class RateLimitError extends declaredError(ApiError, { name: 'RateLimitError', errorCode: 'api.rate-limit', status: 429, code: 'rate_limit_exceeded' }) {

  constructor (message: string, /** Seconds until a request would be taken. */ readonly retryAfterS: number) {
    super(message)
  }
}

/** The swarm cannot run the model now: no servers for some blocks, or every server is full (503). */
export class SwarmUnavailableError extends declaredError(ApiError, { name: 'SwarmUnavailableError', errorCode: 'api.swarm-unavailable', status: 503 }) {
  override readonly code: string

  constructor (message: string, code = 'blocks_not_served', /** Blocks no live server covers. */ readonly missingBlocks: readonly number[] = []) {
    super(message)
    this.code = code
  }
}

