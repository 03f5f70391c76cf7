/**
 * Typed failures of the framed tensor stream protocol (CONTRIBUTING.md STYLE 9). Each message names the field at
 * fault. A frame, message or stream over a limit throws the net layer's one LimitExceededError.
 */
import { declaredError, WebSwarmError } from '../../util/errors.ts'
import { LimitExceededError } from '../errors.ts'

export { LimitExceededError }

/** A frame's version byte is not {@link PROTOCOL_VERSION}: the peer speaks another protocol version. */
export class ProtocolVersionError extends declaredError(WebSwarmError, { name: 'ProtocolVersionError', errorCode: 'stream.protocol-version', callerFault: true }) {}

/** A frame's type byte is not one this version defines. */
export class UnknownFrameTypeError extends declaredError(WebSwarmError, { name: 'UnknownFrameTypeError', errorCode: 'stream.unknown-frame-type', callerFault: true }) {}

/** A frame body does not parse: bad dtype, shape, JSON, lengths, or non-zero reserved bits. */
export class MalformedFrameError extends declaredError(WebSwarmError, { name: 'MalformedFrameError', errorCode: 'stream.malformed-frame', callerFault: true }) {}

/** A frame body's crc32 does not match its header. */
export class ChecksumError extends declaredError(WebSwarmError, { name: 'ChecksumError', errorCode: 'stream.checksum', callerFault: true }) {}

/** A well-formed frame arrived where the grammar forbids it (DATA before START, wrong id, no credit). */
export class UnexpectedFrameError extends declaredError(WebSwarmError, { name: 'UnexpectedFrameError', errorCode: 'stream.unexpected-frame', callerFault: true }) {}

/** The peer did not send, or did not drain, within the timeout. */
export class StreamTimeoutError extends declaredError(WebSwarmError, { name: 'StreamTimeoutError', errorCode: 'stream.timeout', callerFault: false }) {}

/** The local caller cancelled the operation through its AbortSignal. */
export class CancelledError extends declaredError(WebSwarmError, { name: 'CancelledError', errorCode: 'stream.cancelled', callerFault: false }) {}

/** The stream closed or was reset before the expected message arrived. */
export class StreamEndedError extends declaredError(WebSwarmError, { name: 'StreamEndedError', errorCode: 'stream.ended', callerFault: false }) {}

/** A tensor we were asked to send is inconsistent (dtype, shape and byte length disagree). */
export class InvalidTensorError extends declaredError(WebSwarmError, { name: 'InvalidTensorError', errorCode: 'stream.invalid-tensor', callerFault: true }) {}

/** An error that travels as an ERROR frame: `code` is its wire code, one of {@link ErrorCode}. */
abstract class FrameCodedError extends WebSwarmError {
  constructor (readonly code: number, message: string) {
    super(message)
  }
}

/** The peer answered with an ERROR frame carrying `code`. */
export class RemoteError extends declaredError(FrameCodedError, { name: 'RemoteError', errorCode: 'stream.remote', callerFault: false }) {}

/** Codes of the errors caused by bytes a peer sent (the stream is reset, the peer is at fault). */
const PEER_FAULT_CODES: ReadonlySet<string> = new Set([
  'stream.protocol-version', 'stream.unknown-frame-type', 'stream.malformed-frame', 'stream.checksum',
  'net.limit-exceeded', 'stream.unexpected-frame'
])

/** Errors caused by bytes a peer sent: the stream is reset and the peer is at fault. */
export function isPeerFault (err: unknown): boolean {
  return err instanceof WebSwarmError && PEER_FAULT_CODES.has(err.errorCode)
}

/** Thrown by a handler to answer with a specific ERROR code (see ErrorCode) instead of HANDLER_FAILED. */
export class HandlerError extends declaredError(FrameCodedError, { name: 'HandlerError', errorCode: 'stream.handler', callerFault: true }) {}
