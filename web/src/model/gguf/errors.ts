/** Failures specific to GGUF files (CONTRIBUTING.md STYLE 9); corrupt bytes use the model layer's CorruptWeightsError. */
import { declaredError, WebSwarmError } from '../../util/errors.ts'

/** A well-formed GGUF file that uses something we do not read: an old version, a value type, an arch. */
export class UnsupportedGgufError extends declaredError(WebSwarmError, { name: 'UnsupportedGgufError', errorCode: 'model.gguf-unsupported', callerFault: true }) {}

/** A metadata key the model needs is missing or has the wrong type or value. */
export class GgufMetadataError extends declaredError(WebSwarmError, { name: 'GgufMetadataError', errorCode: 'model.gguf-metadata', callerFault: true }) {
  constructor (readonly key: string, detail: string) {
    super(`GGUF metadata '${key}': ${detail}`)
  }
}
