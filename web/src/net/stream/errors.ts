/**
 * Typed failures of the framed tensor stream protocol (CONTRIBUTING.md STYLE 9). Each message names the field at
 * fault. A frame, message or stream over a limit throws the net layer's one LimitExceededError.
 */
import { callerFault, declaredErrors, notCallerFault, WebSwarmError } from '../../util/errors.ts'
import { LimitExceededError } from '../errors.ts'

export { LimitExceededError }

export const { ProtocolVersionError, UnknownFrameTypeError, MalformedFrameError, ChecksumError, UnexpectedFrameError, StreamTimeoutError, CancelledError, StreamEndedError, InvalidTensorError } = declaredErrors(WebSwarmError, {
  /** A frame's version byte is not {@link PROTOCOL_VERSION}: the peer speaks another protocol version. */
  ProtocolVersionError: callerFault('stream.protocol-version'),
  /** A frame's type byte is not one this version defines. */
  UnknownFrameTypeError: callerFault('stream.unknown-frame-type'),
  /** A frame body does not parse: bad dtype, shape, JSON, lengths, or non-zero reserved bits. */
  MalformedFrameError: callerFault('stream.malformed-frame'),
  /** A frame body's crc32 does not match its header. */
  ChecksumError: callerFault('stream.checksum'),
  /** A well-formed frame arrived where the grammar forbids it (DATA before START, wrong id, no credit). */
  UnexpectedFrameError: callerFault('stream.unexpected-frame'),
  /** The peer did not send, or did not drain, within the timeout. */
  StreamTimeoutError: notCallerFault('stream.timeout'),
  /** The local caller cancelled the operation through its AbortSignal. */
  CancelledError: notCallerFault('stream.cancelled'),
  /** The stream closed or was reset before the expected message arrived. */
  StreamEndedError: notCallerFault('stream.ended'),
  /** A tensor we were asked to send is inconsistent (dtype, shape and byte length disagree). */
  InvalidTensorError: callerFault('stream.invalid-tensor')
})

/** An error that travels as an ERROR frame: `code` is its wire code, one of {@link ErrorCode}. */
abstract class FrameCodedError extends WebSwarmError {
  constructor (readonly code: number, message: string) {
    super(message)
  }
}

export const { RemoteError, HandlerError } = declaredErrors(FrameCodedError, {
  /** The peer answered with an ERROR frame carrying `code`. */
  RemoteError: notCallerFault('stream.remote'),
  /** Thrown by a handler to answer with a specific ERROR code (see ErrorCode) instead of HANDLER_FAILED. */
  HandlerError: callerFault('stream.handler')
})
export type RemoteError = InstanceType<typeof RemoteError>
export type HandlerError = InstanceType<typeof HandlerError>

/** Codes of the errors caused by bytes a peer sent (the stream is reset, the peer is at fault). */
const PEER_FAULT_CODES: ReadonlySet<string> = new Set([
  'stream.protocol-version', 'stream.unknown-frame-type', 'stream.malformed-frame', 'stream.checksum',
  'net.limit-exceeded', 'stream.unexpected-frame'
])

/** Errors caused by bytes a peer sent: the stream is reset and the peer is at fault. */
export function isPeerFault (err: unknown): boolean {
  return err instanceof WebSwarmError && PEER_FAULT_CODES.has(err.errorCode)
}
