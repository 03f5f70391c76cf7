/** Failures specific to GGUF files (CONTRIBUTING.md STYLE 9); corrupt bytes use the model layer's CorruptWeightsError. */

/** A well-formed GGUF file that uses something we do not read: an old version, a value type, an arch. */
export class UnsupportedGgufError extends Error {
  override name = 'UnsupportedGgufError'
}

/** A metadata key the model needs is missing or has the wrong type or value. */
export class GgufMetadataError extends Error {
  override name = 'GgufMetadataError'
  constructor (readonly key: string, detail: string) {
    super(`GGUF metadata '${key}': ${detail}`)
  }
}
