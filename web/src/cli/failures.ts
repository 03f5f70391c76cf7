/**
 * Which failures of a `webswarm` command are expected (bad input, no adapter, bad files, a relay
 * or model URL that does not answer, a busy port) — printed as one line — and which are bugs,
 * printed with their stack. WebSwarm errors are told by error code, never by comparing `name`
 * strings (a renamed or duplicated class cannot slip through); Node's own network errors by
 * their `code` (ECONNREFUSED, EADDRINUSE, …).
 */
import { declaredError, hasErrorCode, WebSwarmError, type ErrorCodeString } from '../util/errors.ts'

/** A port to listen on is taken: names it and how to choose another (relay/main.ts, `webswarm api`). */
export class PortInUseError extends declaredError(WebSwarmError, { name: 'PortInUseError', errorCode: 'cli.port-in-use', callerFault: true }) {
  constructor (readonly host: string, readonly port: number, /** How to pick another port, e.g. "--port 9000". */ how: string) {
    super(`port ${port} on ${host} is already in use (another relay, API or program listens there); choose another: ${how}`)
  }
}

/** Codes of the WebSwarm errors a command reports as one line: bad usage, no adapter, bad inputs and files. */
const EXPECTED_CODES: readonly ErrorCodeString[] = [
  'cli.usage', 'cli.port-in-use',
  'gpu.no-webgpu', 'gpu.shape', 'gpu.split-tensor', 'gpu.unsupported-dtype',
  'model.config', 'model.corrupt-weights', 'model.missing-tensor', 'model.tensor-shape-mismatch', 'model.weights-source',
  'model.tokenizer', 'model.session', 'model.checkpoint', 'model.argument', 'model.gguf-unsupported', 'model.gguf-metadata',
  'net.bootstrap-unreachable', 'net.config'
]

/** Node's codes for a host that cannot be reached or named, in words. */
const NETWORK_CODES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be resolved now',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_SOCKET: 'the connection closed early'
}

interface SystemError { code?: unknown, address?: unknown, port?: unknown, hostname?: unknown }

/**
 * One line for a fetch that could not reach its host (undici's `TypeError: fetch failed` with a
 * system error as its cause), naming the host and port and which of the `urls` given on the
 * command line point there; undefined for anything else.
 */
export function networkFailure (e: unknown, urls: readonly string[] = []): string | undefined {
  if (!(e instanceof Error)) return undefined
  // undici nests the system error (ECONNREFUSED, …) as the cause, sometimes one level deeper (AggregateError of IPv4/IPv6 tries).
  let cause = (e as { cause?: unknown }).cause as (SystemError & { errors?: SystemError[] }) | undefined
  if (cause !== undefined && cause !== null && typeof cause.code !== 'string' && Array.isArray(cause.errors)) cause = cause.errors[0]
  if (cause === undefined || cause === null || typeof cause.code !== 'string' || !(cause.code in NETWORK_CODES)) return undefined
  const host = typeof cause.address === 'string' ? cause.address : typeof cause.hostname === 'string' ? cause.hostname : undefined
  const port = typeof cause.port === 'number' ? cause.port : undefined
  const where = host === undefined ? '' : port !== undefined ? ` ${host.includes(':') ? `[${host}]` : host}:${port}` : ` ${host}`
  const named = urls.filter(u => pointsAt(u, host, port))
  return `cannot reach${where} (${NETWORK_CODES[cause.code]})${named.length > 0 ? `: ${named.join(', ')}` : ''}`
}

/** Whether URL `u` goes to `host`:`port` (a name given in the URL counts when the port matches: the cause holds the address it resolved to). */
function pointsAt (u: string, host: string | undefined, port: number | undefined): boolean {
  let url: URL
  try { url = new URL(u) } catch { return false }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
  const p = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  if (port !== undefined) return p === port
  return host !== undefined && url.hostname.replace(/^\[|\]$/g, '') === host
}

/** Whether `e` is an expected failure: one line on stderr, no stack. */
export function isExpectedFailure (e: unknown): boolean {
  return hasErrorCode(e, ...EXPECTED_CODES) || networkFailure(e) !== undefined
}

/** The process exit status for a failed command: 2 for bad usage, 1 for anything else. */
export function exitStatusOf (e: unknown): number {
  return hasErrorCode(e, 'cli.usage') ? 2 : 1
}
