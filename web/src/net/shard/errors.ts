/** Typed failures of shard exchange. */
import { WebSwarmError } from '../../util/errors.ts'

/** A manifest does not parse, breaks a limit, or does not hash to the root it was fetched for. */
export class ManifestError extends WebSwarmError {
  override name = 'ManifestError'
  readonly errorCode = 'shard.manifest'
  readonly callerFault = true
}

/** A chunk's bytes do not hash to the name it was requested by: the provider is dropped. */
export class ChunkHashMismatchError extends WebSwarmError {
  override name = 'ChunkHashMismatchError'
  readonly errorCode = 'shard.chunk-hash-mismatch'
  readonly callerFault = true
}

/** No provider of the root could be found (or every one failed). */
export class NoProvidersError extends WebSwarmError {
  override name = 'NoProvidersError'
  readonly errorCode = 'shard.no-providers'
  readonly callerFault = false
}

/** A fetch gave up: some chunks could not be had from any provider. */
export class ShardFetchError extends WebSwarmError {
  override name = 'ShardFetchError'
  readonly errorCode = 'shard.fetch-failed'
  readonly callerFault = false
}

/** A shard request names an unknown op or a malformed hash. */
export class BadShardRequestError extends WebSwarmError {
  override name = 'BadShardRequestError'
  readonly errorCode = 'shard.bad-request'
  readonly callerFault = true
}

/** A pieced file's index does not parse, does not tile its file, or disagrees with a piece's manifest. */
export class PieceIndexError extends WebSwarmError {
  override name = 'PieceIndexError'
  readonly errorCode = 'shard.piece-index'
  readonly callerFault = true
}
