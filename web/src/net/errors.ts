/** Typed failures of the net layer. Each names the peer, protocol or record at fault. */

/** A peer sent bytes that do not parse under the protocol's grammar. */
export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError'
  constructor (protocol: string, detail: string) {
    super(`${protocol}: malformed message: ${detail}`)
  }
}

/** A message, stream or record exceeded a declared size or count limit. */
export class LimitExceededError extends Error {
  override name = 'LimitExceededError'
  constructor (protocol: string, detail: string) {
    super(`${protocol}: limit exceeded: ${detail}`)
  }
}

/** A message carried a type or version this node does not speak. */
export class UnsupportedMessageError extends Error {
  override name = 'UnsupportedMessageError'
  constructor (protocol: string, detail: string) {
    super(`${protocol}: unsupported: ${detail}`)
  }
}

/** An exchange did not finish within its declared timeout. */
export class ProtocolTimeoutError extends Error {
  override name = 'ProtocolTimeoutError'
  constructor (protocol: string, timeoutMs: number) {
    super(`${protocol}: no completion within ${timeoutMs} ms`)
  }
}

/** A signed DHT record failed validation (bad signature, expired, wrong owner, bad encoding). */
export class InvalidRecordError extends Error {
  override name = 'InvalidRecordError'
  constructor (key: string, detail: string) {
    super(`DHT record ${key}: ${detail}`)
  }
}

/** No valid record exists for a DHT key (none found, or every one found was rejected). */
export class RecordNotFoundError extends Error {
  override name = 'RecordNotFoundError'
  constructor (key: string) {
    super(`DHT record ${key}: not found`)
  }
}

/** A CRDT update tried to write a peers-map entry it does not own, or broke an entry's signature. */
export class ForgedEntryError extends Error {
  override name = 'ForgedEntryError'
  constructor (key: string, detail: string) {
    super(`CRDT peers[${key}]: ${detail}`)
  }
}

/** A caller passed an option or argument the net layer cannot use. */
export class NetConfigError extends Error {
  override name = 'NetConfigError'
}

/** The relay (bootstrap) could not be reached within the retry budget. */
export class BootstrapUnreachableError extends Error {
  override name = 'BootstrapUnreachableError'
}
