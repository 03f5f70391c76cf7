/** Typed failures of shard exchange. */
import { declaredError, WebSwarmError } from '../../util/errors.ts'

/** A manifest does not parse, breaks a limit, or does not hash to the root it was fetched for. */
export class ManifestError extends declaredError(WebSwarmError, { name: 'ManifestError', errorCode: 'shard.manifest', callerFault: true }) {}

/** A chunk's bytes do not hash to the name it was requested by: the provider is dropped. */
export class ChunkHashMismatchError extends declaredError(WebSwarmError, { name: 'ChunkHashMismatchError', errorCode: 'shard.chunk-hash-mismatch', callerFault: true }) {}

/** No provider of the root could be found (or every one failed). */
export class NoProvidersError extends declaredError(WebSwarmError, { name: 'NoProvidersError', errorCode: 'shard.no-providers', callerFault: false }) {}

/** A fetch gave up: some chunks could not be had from any provider. */
export class ShardFetchError extends declaredError(WebSwarmError, { name: 'ShardFetchError', errorCode: 'shard.fetch-failed', callerFault: false }) {}

/** A shard request names an unknown op or a malformed hash. */
export class BadShardRequestError extends declaredError(WebSwarmError, { name: 'BadShardRequestError', errorCode: 'shard.bad-request', callerFault: true }) {}

/** A pieced file's index does not parse, does not tile its file, or disagrees with a piece's manifest. */
export class PieceIndexError extends declaredError(WebSwarmError, { name: 'PieceIndexError', errorCode: 'shard.piece-index', callerFault: true }) {}
