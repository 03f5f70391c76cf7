/**
 * Typed failures of the net layer (CONTRIBUTING.md STYLE 9). Each names the peer, protocol or record at fault.
 * MalformedMessageError and LimitExceededError are the only classes of those names: the framed
 * tensor streams (net/stream) and the swarm codecs (swarm/wire, swarm/errors.ts) use these.
 */
import { callerFault, declaredError, declaredErrors, notCallerFault, WebSwarmError } from '../util/errors.ts'

/** `detail`, prefixed with the protocol and what went wrong when a protocol is named. */
function describe (what: string, a: string, b: string | undefined): string {
  return b === undefined ? a : `${a}: ${what}: ${b}`
}

/** A peer sent bytes that do not parse under the protocol's grammar (truncated, trailing bytes, bad field, unknown type or version). */
export class MalformedMessageError extends declaredError(WebSwarmError, { name: 'MalformedMessageError', errorCode: 'net.malformed-message', callerFault: true }) {
  /** `(detail)`, or `(protocol, detail)` for "<protocol>: malformed message: <detail>". */
  constructor (...args: [detail: string] | [protocol: string, detail: string]) {
    super(describe('malformed message', args[0], args[1]))
  }
}

/** A message, frame, stream or record exceeded a declared size or count limit. */
export class LimitExceededError extends declaredError(WebSwarmError, { name: 'LimitExceededError', errorCode: 'net.limit-exceeded', callerFault: true }) {
  /** `(detail)`, or `(protocol, detail)` for "<protocol>: limit exceeded: <detail>". */
  constructor (...args: [detail: string] | [protocol: string, detail: string]) {
    super(describe('limit exceeded', args[0], args[1]))
  }
}

/** A message carried a type or version this node does not speak. */
export class UnsupportedMessageError extends declaredError(WebSwarmError, { name: 'UnsupportedMessageError', errorCode: 'net.unsupported-message', callerFault: true }) {
  constructor (protocol: string, detail: string) {
    super(`${protocol}: unsupported: ${detail}`)
  }
}

/** An exchange did not finish within its declared timeout. */
export class ProtocolTimeoutError extends declaredError(WebSwarmError, { name: 'ProtocolTimeoutError', errorCode: 'net.protocol-timeout', callerFault: false }) {
  constructor (protocol: string, timeoutMs: number) {
    super(`${protocol}: no completion within ${timeoutMs} ms`)
  }
}

/** A signed DHT record failed validation (bad signature, expired, wrong owner, bad encoding). */
export class InvalidRecordError extends declaredError(WebSwarmError, { name: 'InvalidRecordError', errorCode: 'net.invalid-record', callerFault: true }) {
  constructor (key: string, detail: string) {
    super(`DHT record ${key}: ${detail}`)
  }
}

/** No valid record exists for a DHT key (none found, or every one found was rejected). */
export class RecordNotFoundError extends declaredError(WebSwarmError, { name: 'RecordNotFoundError', errorCode: 'net.record-not-found', callerFault: false }) {
  constructor (key: string) {
    super(`DHT record ${key}: not found`)
  }
}

/** A CRDT update tried to write a peers-map entry it does not own, or broke an entry's signature. */
export class ForgedEntryError extends declaredError(WebSwarmError, { name: 'ForgedEntryError', errorCode: 'net.forged-entry', callerFault: true }) {
  constructor (key: string, detail: string) {
    super(`CRDT peers[${key}]: ${detail}`)
  }
}

export const { NetConfigError, BootstrapUnreachableError } = declaredErrors(WebSwarmError, {
  /** A caller passed an option or argument the net layer cannot use. */
  NetConfigError: callerFault('net.config'),
  /** The relay (bootstrap) could not be reached within the retry budget. */
  BootstrapUnreachableError: notCallerFault('net.bootstrap-unreachable')
})

/** A relay refused this peer's identity stamp (pow-protocol.ts): wrong scope, a past day, or too few zero bits for its difficulty. */
export class StampRefusedError extends declaredError(WebSwarmError, { name: 'StampRefusedError', errorCode: 'net.stamp-refused', callerFault: true }) {
  constructor (readonly relay: string) {
    super(`relay ${relay} refused the identity stamp (/webswarm/pow/1.0.0)`)
  }
}

/**
 * A CRDT update or sync frame belongs to another doc generation (crdt/generation.ts) than this
 * node's doc: an older one (the sender lags and re-seeds at its next sync) or a newer one (this
 * node re-seeds). Either way it is not applied.
 */
export class GenerationMismatchError extends declaredError(WebSwarmError, { name: 'GenerationMismatchError', errorCode: 'net.generation-mismatch', callerFault: true }) {
  constructor (protocol: string, readonly theirs: string, readonly ours: string, readonly newer: boolean) {
    super(`${protocol}: update of ${newer ? 'newer' : 'stale'} doc generation ${theirs}, this doc is at ${ours}${newer ? ' (re-seeding)' : ''}`)
  }
}
