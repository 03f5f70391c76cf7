/** Typed failures of shard exchange. */

/** A manifest does not parse, breaks a limit, or does not hash to the root it was fetched for. */
export class ManifestError extends Error {
  override name = 'ManifestError'
}

/** A chunk's bytes do not hash to the name it was requested by: the provider is dropped. */
export class ChunkHashMismatchError extends Error {
  override name = 'ChunkHashMismatchError'
}

/** No provider of the root could be found (or every one failed). */
export class NoProvidersError extends Error {
  override name = 'NoProvidersError'
}

/** A fetch gave up: some chunks could not be had from any provider. */
export class ShardFetchError extends Error {
  override name = 'ShardFetchError'
}

/** A shard request names an unknown op or a malformed hash. */
export class BadShardRequestError extends Error {
  override name = 'BadShardRequestError'
}
