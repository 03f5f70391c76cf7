/**
 * Typed failures of the swarm roles (STYLE 9). Errors a server reports to a client travel as an
 * `ERROR` message carrying `code`; `errorFromWire` turns it back into the same class.
 */

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
export abstract class RemoteReportableError extends Error {
  abstract readonly code: ErrorCode
}

/** A message is truncated, has trailing bytes, an unknown type, a wrong version, or a bad field. */
export class MalformedMessageError extends RemoteReportableError {
  override name = 'MalformedMessageError'
  readonly code = ERROR_CODES.malformed
}

/** A message or one of its fields is larger than the protocol's limit. */
export class MessageTooLargeError extends RemoteReportableError {
  override name = 'MessageTooLargeError'
  readonly code = ERROR_CODES.tooLarge
}

/** A step or close names a session this server does not hold (never opened, closed, or expired). */
export class UnknownSessionError extends RemoteReportableError {
  override name = 'UnknownSessionError'
  readonly code = ERROR_CODES.unknownSession
}

/** A tensor has the wrong dtype, rank or sizes for what it is sent for. */
export class TensorShapeError extends RemoteReportableError {
  override name = 'TensorShapeError'
  readonly code = ERROR_CODES.shape
}

/** A step's position is not the session's next one, or would run past its max tokens. */
export class PositionError extends RemoteReportableError {
  override name = 'PositionError'
  readonly code = ERROR_CODES.position
}

/** The server's KV-cache memory budget cannot hold another session of this size. */
export class CacheFullError extends RemoteReportableError {
  override name = 'CacheFullError'
  readonly code = ERROR_CODES.cacheFull
}

/** A session asked for blocks or a model this server does not serve. */
export class SpanNotServedError extends RemoteReportableError {
  override name = 'SpanNotServedError'
  readonly code = ERROR_CODES.span
}

/** An expert call named an expert or layer this peer does not host. */
export class ExpertNotHostedError extends RemoteReportableError {
  override name = 'ExpertNotHostedError'
  readonly code = ERROR_CODES.expert
}

/** The server failed while computing (a bug or a device loss on its side), not the client's input. */
export class ServerInternalError extends RemoteReportableError {
  override name = 'ServerInternalError'
  readonly code = ERROR_CODES.internal
}

/** The server holds as many sessions as it may. */
export class ServerBusyError extends RemoteReportableError {
  override name = 'ServerBusyError'
  readonly code = ERROR_CODES.busy
}

/** A CHAIN step's input was to be pushed by the previous server, and did not come in time. */
export class PushNotReceivedError extends RemoteReportableError {
  override name = 'PushNotReceivedError'
  readonly code = ERROR_CODES.pushWait
}

/** A CHAIN step waiting for its pushed input was replaced by a newer STEP / CHAIN from the client. */
export class SupersededError extends RemoteReportableError {
  override name = 'SupersededError'
  readonly code = ERROR_CODES.superseded
}

/** Rebuild the typed error a server reported, from its wire code. */
export function errorFromWire (code: number, message: string): RemoteReportableError {
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
export class PeerTimeoutError extends Error {
  override name = 'PeerTimeoutError'
  constructor (readonly peer: string, readonly ms: number) {
    super(`peer ${peer} did not answer within ${ms} ms`)
  }
}

/** A peer cannot be reached (not connected, link dropped, peer gone). */
export class PeerUnreachableError extends Error {
  override name = 'PeerUnreachableError'
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} unreachable: ${detail}`)
  }
}

/** No set of live, unbanned servers covers the blocks a route needs. */
export class NoRouteError extends Error {
  override name = 'NoRouteError'
}

/** A generation failed over more times than allowed for one step. */
export class FailoverExhaustedError extends Error {
  override name = 'FailoverExhaustedError'
}

/** Bad arguments to a swarm-level call (spans, counts, options). */
export class SwarmArgumentError extends Error {
  override name = 'SwarmArgumentError'
}

/** No live host for an expert the router picked. */
export class NoExpertHostError extends Error {
  override name = 'NoExpertHostError'
}

/** An expert host answered with other experts or shapes than asked: that host is faulty (it gets banned). */
export class ExpertReplyError extends Error {
  override name = 'ExpertReplyError'
}

/** A peer's reply did not decode (garbage, wrong version): the peer is faulty, not our request. */
export class PeerProtocolError extends Error {
  override name = 'PeerProtocolError'
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} sent a bad reply: ${detail}`)
  }
}
