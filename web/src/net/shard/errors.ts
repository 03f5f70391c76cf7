/** Typed failures of shard exchange. */
import { callerFault, declaredErrors, notCallerFault, WebSwarmError } from '../../util/errors.ts'

export const { ManifestError, ChunkHashMismatchError, NoProvidersError, ShardFetchError, BadShardRequestError, PieceIndexError } = declaredErrors(WebSwarmError, {
  /** A manifest does not parse, breaks a limit, or does not hash to the root it was fetched for. */
  ManifestError: callerFault('shard.manifest'),
  /** A chunk's bytes do not hash to the name it was requested by: the provider is dropped. */
  ChunkHashMismatchError: callerFault('shard.chunk-hash-mismatch'),
  /** No provider of the root could be found (or every one failed). */
  NoProvidersError: notCallerFault('shard.no-providers'),
  /** A fetch gave up: some chunks could not be had from any provider. */
  ShardFetchError: notCallerFault('shard.fetch-failed'),
  /** A shard request names an unknown op or a malformed hash. */
  BadShardRequestError: callerFault('shard.bad-request'),
  /** A pieced file's index does not parse, does not tile its file, or disagrees with a piece's manifest. */
  PieceIndexError: callerFault('shard.piece-index')
})
