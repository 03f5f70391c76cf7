/**
 * Typed failures of the swarm roles (CONTRIBUTING.md STYLE 9). Errors a server reports to a client travel as an
 * `ERROR` message carrying a wire `code` (`reportable` picks it); `errorFromWire` turns it back
 * into the same class. Malformed input is the net layer's one MalformedMessageError (wire code
 * `malformed`), re-exported here.
 */
import { callerFault, declaredError, declaredErrors, hasErrorCode, notCallerFault, WebSwarmError } from '../util/errors.ts'
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

export const { MessageTooLargeError, UnknownSessionError, TensorShapeError, PositionError, CacheFullError, SpanNotServedError, ExpertNotHostedError, ServerInternalError, ServerBusyError, PushNotReceivedError, SupersededError } = declaredErrors(RemoteReportableError, {
  /** A message or one of its fields is larger than the protocol's limit. */
  MessageTooLargeError: callerFault('swarm.message-too-large', { code: ERROR_CODES.tooLarge }),
  /** A step or close names a session this server does not hold (never opened, closed, or expired). */
  UnknownSessionError: callerFault('swarm.unknown-session', { code: ERROR_CODES.unknownSession }),
  /** A tensor has the wrong dtype, rank or sizes for what it is sent for. */
  TensorShapeError: callerFault('swarm.tensor-shape', { code: ERROR_CODES.shape }),
  /** A step's position is not the session's next one, or would run past its max tokens. */
  PositionError: callerFault('swarm.position', { code: ERROR_CODES.position }),
  /** The server's KV-cache memory budget cannot hold another session of this size. */
  CacheFullError: notCallerFault('swarm.cache-full', { code: ERROR_CODES.cacheFull }),
  /** A session asked for blocks or a model this server does not serve. */
  SpanNotServedError: callerFault('swarm.span-not-served', { code: ERROR_CODES.span }),
  /** An expert call named an expert or layer this peer does not host. */
  ExpertNotHostedError: callerFault('swarm.expert-not-hosted', { code: ERROR_CODES.expert }),
  /** The server failed while computing (a bug or a device loss on its side), not the client's input. */
  ServerInternalError: notCallerFault('swarm.server-internal', { code: ERROR_CODES.internal }),
  /** The server holds as many sessions as it may. */
  ServerBusyError: notCallerFault('swarm.server-busy', { code: ERROR_CODES.busy }),
  /** A CHAIN step's input was to be pushed by the previous server, and did not come in time. */
  PushNotReceivedError: notCallerFault('swarm.push-not-received', { code: ERROR_CODES.pushWait }),
  /** A CHAIN step waiting for its pushed input was replaced by a newer STEP / CHAIN from the client. */
  SupersededError: notCallerFault('swarm.superseded', { code: ERROR_CODES.superseded })
})

/** The wire code a server reports `e` under; anything outside these classes is the server's own failure (`internal`). */
export function reportable (e: unknown): { error: Error, code: ErrorCode } {
  if (e instanceof RemoteReportableError) return { error: e, code: e.code }
  if (hasErrorCode(e, 'net.malformed-message')) return { error: e as Error, code: ERROR_CODES.malformed }
  return { error: new ServerInternalError((e as Error).message), code: ERROR_CODES.internal }
}

/** Every error a server reports, by its wire code (MalformedMessageError is the net layer's: `malformed`). */
const BY_WIRE_CODE = new Map<number, new (message: string) => WebSwarmError>([
  [ERROR_CODES.malformed, MalformedMessageError],
  ...[UnknownSessionError, TensorShapeError, PositionError, CacheFullError, SpanNotServedError, MessageTooLargeError, ExpertNotHostedError, ServerInternalError, ServerBusyError, PushNotReceivedError, SupersededError]
    .map(C => [C.declared.code, C] as const)
])

/** Rebuild the typed error a server reported, from its wire code. */
export function errorFromWire (code: number, message: string): WebSwarmError {
  const C = BY_WIRE_CODE.get(code)
  return C === undefined ? new MalformedMessageError(`unknown error code ${code}: ${message}`) : new C(message)
}

/** A peer did not answer within the timeout. */
export class PeerTimeoutError extends declaredError(WebSwarmError, { name: 'PeerTimeoutError', errorCode: 'swarm.peer-timeout', callerFault: false }) {
  constructor (readonly peer: string, readonly ms: number) {
    super(`peer ${peer} did not answer within ${ms} ms`)
  }
}

/** A peer cannot be reached (not connected, link dropped, peer gone). */
export class PeerUnreachableError extends declaredError(WebSwarmError, { name: 'PeerUnreachableError', errorCode: 'swarm.peer-unreachable', callerFault: false }) {
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} unreachable: ${detail}`)
  }
}

export const { NoRouteError, FailoverExhaustedError, MalformedEvidenceError, SwarmArgumentError, NoExpertHostError, ExpertReplyError } = declaredErrors(WebSwarmError, {
  /** No set of live, unbanned servers covers the blocks a route needs. */
  NoRouteError: notCallerFault('swarm.no-route'),
  /** A generation failed over more times than allowed for one step. */
  FailoverExhaustedError: notCallerFault('swarm.failover-exhausted'),
  /** An evidence entry of the swarm doc (swarm/evidence.ts) that does not hold well-formed accusations. */
  MalformedEvidenceError: callerFault('swarm.malformed-evidence'),
  /** Bad arguments to a swarm-level call (spans, counts, options). */
  SwarmArgumentError: callerFault('swarm.argument'),
  /** No live host for an expert the router picked. */
  NoExpertHostError: notCallerFault('swarm.no-expert-host'),
  /** An expert host answered with other experts or shapes than asked: that host is faulty (it gets banned). */
  ExpertReplyError: notCallerFault('swarm.expert-reply')
})

/**
 * Verification (client/verify.ts) caught a server returning wrong outputs: it is banned, and the
 * session was rebuilt without it holding positions [0, position) only. The caller re-sends its
 * inputs from `position` (swarmGenerate does, re-sampling the tokens that depended on them).
 */
export class SessionRewoundError extends declaredError(WebSwarmError, { name: 'SessionRewoundError', errorCode: 'swarm.session-rewound', callerFault: false }) {
  constructor (readonly position: number, readonly liar: string) {
    super(`server ${liar} returned wrong outputs at position ${position}; the session was rebuilt without it and holds positions [0, ${position}): resend the inputs from there`)
  }
}

/** A peer's reply did not decode (garbage, wrong version): the peer is faulty, not our request. */
export class PeerProtocolError extends declaredError(WebSwarmError, { name: 'PeerProtocolError', errorCode: 'swarm.peer-protocol', callerFault: false }) {
  constructor (readonly peer: string, detail: string) {
    super(`peer ${peer} sent a bad reply: ${detail}`)
  }
}
