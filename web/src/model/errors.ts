/**
 * Typed failures of the model layer (CONTRIBUTING.md STYLE 9), in the one hierarchy (util/errors.ts). Each message
 * names the field, file or tensor at fault.
 */
import { declaredError, WebSwarmError } from '../util/errors.ts'

/** config.json asks for something this implementation does not compute (or is malformed). */
export class ConfigError extends declaredError(WebSwarmError, { name: 'ConfigError', errorCode: 'model.config', callerFault: true }) {
  constructor (readonly field: string, detail: string) {
    super(`config.json: ${field}: ${detail}`)
  }
}

/** A weights file is corrupt or truncated (bad header, offsets past the end, wrong byte count). */
export class CorruptWeightsError extends declaredError(WebSwarmError, { name: 'CorruptWeightsError', errorCode: 'model.corrupt-weights', callerFault: true }) {}

/** A tensor the model needs is in no weights file. */
export class MissingTensorError extends declaredError(WebSwarmError, { name: 'MissingTensorError', errorCode: 'model.missing-tensor', callerFault: true }) {
  constructor (readonly tensor: string, where: string) {
    super(`missing tensor '${tensor}' (${where})`)
  }
}

/** A tensor's stored shape differs from what config.json implies. */
export class TensorShapeMismatchError extends declaredError(WebSwarmError, { name: 'TensorShapeMismatchError', errorCode: 'model.tensor-shape-mismatch', callerFault: true }) {
  constructor (readonly tensor: string, expected: readonly number[], got: readonly number[]) {
    super(`tensor '${tensor}': shape [${got.join(', ')}] does not match config, expected [${expected.join(', ')}]`)
  }
}

/** A weights file uses a dtype we cannot read: one class with the runtime's (quant-types.ts), so a caller catches either. */
export { UnsupportedDTypeError } from '../gpu/quant-types.ts'

/** A weights source (directory, URL, Blob) could not be read. */
export class WeightsSourceError extends declaredError(WebSwarmError, { name: 'WeightsSourceError', errorCode: 'model.weights-source', callerFault: true }) {}

/** Token ids outside the vocabulary, or a tokenizer file we cannot use. */
export class TokenizerError extends declaredError(WebSwarmError, { name: 'TokenizerError', errorCode: 'model.tokenizer', callerFault: true }) {}

/** A KV-cache session was asked to hold more tokens than its capacity, or misused. */
export class SessionError extends declaredError(WebSwarmError, { name: 'SessionError', errorCode: 'model.session', callerFault: true }) {}

/** A checkpoint is missing pieces or disagrees with the model it is loaded into. */
export class CheckpointError extends declaredError(WebSwarmError, { name: 'CheckpointError', errorCode: 'model.checkpoint', callerFault: true }) {}

/** Bad arguments to a model-level call (ranges, ids, sampling options, training options). */
export class ModelArgumentError extends declaredError(WebSwarmError, { name: 'ModelArgumentError', errorCode: 'model.argument', callerFault: true }) {}
