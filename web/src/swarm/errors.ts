/**
 * Typed failures of the swarm roles (STYLE 9). Errors a server reports to a client travel as an
 * `ERROR` message carrying a wire `code` (`reportable` picks it); `errorFromWire` turns it back
 * into the same class. Malformed input is the net layer's one MalformedMessageError (wire code
 * `malformed`), re-exported here.
 */
import { hasErrorCode, WebSwarmError } from '../util/errors.ts'
import { MalformedMessageError } from '../net/errors.ts'

export { MalformedMessageError }

/** Wire codes of errors a server sends back (PROTOCOL.md, `infer` / `expert`). */
export const ERROR_CODES = {
  malformed: 1,
  unknownSession: 2,
  shape: 3,
  position: 4,
  cacheFull: 5,
  span: 6,
  tooLarge: 7,
  expert: 8,
  internal: 9,
  busy: 10,
  pushWait: 11,
  superseded: 12
} as const

export type ErrorCode = typeof ERROR_CODES[keyof typeof ERROR_CODES]

/** Base of errors that a server reports to its client over the wire. */
export abstract class RemoteReportableError extends WebSwarmError {
  /** Wire code of the ERROR message that reports it. */
  abstract readonly code: ErrorCode
}

/** A message or one of its fields is larger than the protocol's limit. */
export class MessageTooLargeError extends RemoteReportableError {
  override name = 'MessageTooLargeError'
  readonly errorCode = 'swarm.message-too-large'
  readonly callerFault = true
  readonly code = ERROR_CODES.tooLarge
}

/** A step or close names a session this server does not hold (never opened, closed, or expired). */
export class UnknownSessionError extends RemoteReportableError {
  override name = 'UnknownSessionError'
  readonly errorCode = 'swarm.unknown-session'
  readonly callerFault = true
  readonly code = ERROR_CODES.unknownSession
}

/** A tensor has the wrong dtype, rank or sizes for what it is sent for. */
export class TensorShapeError extends RemoteReportableError {
  override name = 'TensorShapeError'
  readonly errorCode = 'swarm.tensor-shape'
  readonly callerFault = true
  readonly code = ERROR_CODES.shape
}

/** A step's position is not the session's next one, or would run past its max tokens. */
export class PositionError extends RemoteReportableError {
  override name = 'PositionError'
  readonly errorCode = 'swarm.position'
  readonly callerFault = true
  readonly code = ERROR_CODES.position
}

/** The server's KV-cache memory budget cannot hold another session of this size. */
export class CacheFullError extends RemoteReportableError {
  override name = 'CacheFullError'
  readonly errorCode = 'swarm.cache-full'
  readonly callerFault = false
  readonly code = ERROR_CODES.cacheFull
}

/** A session asked for blocks or a model this server does not serve. */
export class SpanNotServedError extends RemoteReportableError {
  override name = 'SpanNotServedError'
  readonly errorCode = 'swarm.span-not-served'
  readonly callerFault = true
  readonly code = ERROR_CODES.span
}

/** An expert call named an expert or layer this peer does not host. */
export class ExpertNotHostedError extends RemoteReportableError {
  override name = 'ExpertNotHostedError'
  readonly errorCode = 'swarm.expert-not-hosted'
  readonly callerFault = true
  readonly code = ERROR_CODES.expert
}

/** The server failed while computing (a bug or a device loss on its side), not the client's input. */
export class ServerInternalError extends RemoteReportableError {
  override name = 'ServerInternalError'
  readonly errorCode = 'swarm.server-internal'
  readonly callerFault = false
  readonly code = ERROR_CODES.internal
}

/** The server holds as many sessions as it may. */
export class ServerBusyError extends RemoteReportableError {
  override name = 'ServerBusyError'
  readonly errorCode = 'swarm.server-busy'
  readonly callerFault = false
  readonly code = ERROR_CODES.busy
}

/** A CHAIN step's input was to be pushed by the previous server, and did not come in time. */
export class PushNotReceivedError extends RemoteReportableError {
  override name = 'PushNotReceivedError'
  readonly errorCode = 'swarm.push-not-received'
  readonly callerFault = false
  readonly code = ERROR_CODES.pushWait
}

/** A CHAIN step waiting for its pushed input was replaced by a newer STEP / CHAIN from the client. */
export class SupersededError extends RemoteReportableError {
  override name = 'SupersededError'
  readonly errorCode = 'swarm.superseded'
  readonly callerFault = false
  readonly code = ERROR_CODES.superseded
}

/** The wire code a server reports `e` under; anything outside these classes is the server's own failure (`internal`). */
export function reportable (e: unknown): { error: Error, code: ErrorCode } {
  if (e instanceof RemoteReportableError) return { error: e, code: e.code }
  if (hasErrorCode(e, 'net.malformed-message')) return { error: e as Error, code: ERROR_CODES.malformed }
  return { error: new ServerInternalError((e as Error).message), code: ERROR_CODES.internal }
}

/** Rebuild the typed error a server reported, from its wire code. */
export function errorFromWire (code: number, message: string): WebSwarmError {
  switch (code) {
    case ERROR_CODES.malformed: return new MalformedMessageError(message)
    case ERROR_CODES.unknownSession: return new UnknownSessionError(message)
    case ERROR_CODES.shape: return new TensorShapeError(message)
    case ERROR_CODES.position: return new PositionError(message)
    case ERROR_CODES.cacheFull: return new CacheFullError(message)
    case ERROR_CODES.span: return new SpanNotServedError(message)
    case ERROR_CODES.tooLarge: return new MessageTooLargeError(message)
    case ERROR_CODES.expert: return new ExpertNotHostedError(message)
    case ERROR_CODES.internal: return new ServerInternalError(message)
    case ERROR_CODES.busy: return new ServerBusyError(message)
    case ERROR_CODES.pushWait: return new PushNotReceivedError(message)
    case ERROR_CODES.superseded: return new SupersededError(message)
    default: return new MalformedMessageError(`unknown error code ${code}: ${message}`)
  }
}

/** A peer did not answer within the timeout. */
export class PeerTimeoutError extends WebSwarmError {
  override name = 'PeerTimeoutError'
  readonly errorCode = 'swarm.peer-timeout'
  readonly callerFault = false
  constructor (readonly peer: string, readonly ms: number) {
    super(`peer ${peer} did not answer within ${ms} ms`)
  }
}

/** A peer cannot be reached (not connected, link dropped, peer gone). */
export class PeerUnreachableError extends WebSwarmError {
  override name = 'PeerUnreachableError'
  readonly errorCode = 'swarm.peer-unreachable'
  readonly callerFault = false
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} unreachable: ${detail}`)
  }
}

/** No set of live, unbanned servers covers the blocks a route needs. */
export class NoRouteError extends WebSwarmError {
  override name = 'NoRouteError'
  readonly errorCode = 'swarm.no-route'
  readonly callerFault = false
}

/** A generation failed over more times than allowed for one step. */
export class FailoverExhaustedError extends WebSwarmError {
  override name = 'FailoverExhaustedError'
  readonly errorCode = 'swarm.failover-exhausted'
  readonly callerFault = false
}

/**
 * Verification (client/verify.ts) caught a server returning wrong outputs: it is banned, and the
 * session was rebuilt without it holding positions [0, position) only. The caller re-sends its
 * inputs from `position` (swarmGenerate does, re-sampling the tokens that depended on them).
 */
export class SessionRewoundError extends WebSwarmError {
  override name = 'SessionRewoundError'
  readonly errorCode = 'swarm.session-rewound'
  readonly callerFault = false
  constructor (readonly position: number, readonly liar: string) {
    super(`server ${liar} returned wrong outputs at position ${position}; the session was rebuilt without it and holds positions [0, ${position}): resend the inputs from there`)
  }
}

/** An evidence entry of the swarm doc (swarm/evidence.ts) that does not hold well-formed accusations. */
export class MalformedEvidenceError extends WebSwarmError {
  override name = 'MalformedEvidenceError'
  readonly errorCode = 'swarm.malformed-evidence'
  readonly callerFault = true
}

/** Bad arguments to a swarm-level call (spans, counts, options). */
export class SwarmArgumentError extends WebSwarmError {
  override name = 'SwarmArgumentError'
  readonly errorCode = 'swarm.argument'
  readonly callerFault = true
}

/** No live host for an expert the router picked. */
export class NoExpertHostError extends WebSwarmError {
  override name = 'NoExpertHostError'
  readonly errorCode = 'swarm.no-expert-host'
  readonly callerFault = false
}

/** An expert host answered with other experts or shapes than asked: that host is faulty (it gets banned). */
export class ExpertReplyError extends WebSwarmError {
  override name = 'ExpertReplyError'
  readonly errorCode = 'swarm.expert-reply'
  readonly callerFault = false
}

/** A peer's reply did not decode (garbage, wrong version): the peer is faulty, not our request. */
export class PeerProtocolError extends WebSwarmError {
  override name = 'PeerProtocolError'
  readonly errorCode = 'swarm.peer-protocol'
  readonly callerFault = false
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} sent a bad reply: ${detail}`)
  }
}
