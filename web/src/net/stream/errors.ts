/** Typed failures of the framed tensor stream protocol. Each message names the field at fault. */

/** A frame's version byte is not {@link PROTOCOL_VERSION}: the peer speaks another protocol version. */
export class ProtocolVersionError extends Error {
  override name = 'ProtocolVersionError'
}

/** A frame's type byte is not one this version defines. */
export class UnknownFrameTypeError extends Error {
  override name = 'UnknownFrameTypeError'
}

/** A frame body does not parse: bad dtype, shape, JSON, lengths, or non-zero reserved bits. */
export class MalformedFrameError extends Error {
  override name = 'MalformedFrameError'
}

/** A frame body's crc32 does not match its header. */
export class ChecksumError extends Error {
  override name = 'ChecksumError'
}

/** A frame, message or stream exceeds a size or count limit. */
export class LimitExceededError extends Error {
  override name = 'LimitExceededError'
}

/** A well-formed frame arrived where the grammar forbids it (DATA before START, wrong id, no credit). */
export class UnexpectedFrameError extends Error {
  override name = 'UnexpectedFrameError'
}

/** The peer did not send, or did not drain, within the timeout. */
export class StreamTimeoutError extends Error {
  override name = 'StreamTimeoutError'
}

/** The local caller cancelled the operation through its AbortSignal. */
export class CancelledError extends Error {
  override name = 'CancelledError'
}

/** The stream closed or was reset before the expected message arrived. */
export class StreamEndedError extends Error {
  override name = 'StreamEndedError'
}

/** A tensor we were asked to send is inconsistent (dtype, shape and byte length disagree). */
export class InvalidTensorError extends Error {
  override name = 'InvalidTensorError'
}

/** The peer answered with an ERROR frame; `code` is one of {@link ErrorCode}. */
export class RemoteError extends Error {
  override name = 'RemoteError'
  readonly code: number
  constructor (code: number, message: string) {
    super(message)
    this.code = code
  }
}

/** Errors caused by bytes a peer sent: the stream is reset and the peer is at fault. */
export function isPeerFault (err: unknown): boolean {
  return err instanceof ProtocolVersionError || err instanceof UnknownFrameTypeError ||
    err instanceof MalformedFrameError || err instanceof ChecksumError ||
    err instanceof LimitExceededError || err instanceof UnexpectedFrameError
}

/** Thrown by a handler to answer with a specific ERROR code (see ErrorCode) instead of HANDLER_FAILED. */
export class HandlerError extends Error {
  override name = 'HandlerError'
  readonly code: number
  constructor (code: number, message: string) {
    super(message)
    this.code = code
  }
}
