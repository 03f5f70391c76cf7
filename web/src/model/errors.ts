/**
 * Typed failures of the model layer (CONTRIBUTING.md STYLE 9), in the one hierarchy (util/errors.ts). Each message
 * names the field, file or tensor at fault.
 */
import { callerFault, declaredError, declaredErrors, WebSwarmError } from '../util/errors.ts'

/** config.json asks for something this implementation does not compute (or is malformed). */
export class ConfigError extends declaredError(WebSwarmError, { name: 'ConfigError', errorCode: 'model.config', callerFault: true }) {
  constructor (readonly field: string, detail: string) {
    super(`config.json: ${field}: ${detail}`)
  }
}

export const { CorruptWeightsError, WeightsSourceError, TokenizerError, SessionError, CheckpointError, ModelArgumentError } = declaredErrors(WebSwarmError, {
  /** A weights file is corrupt or truncated (bad header, offsets past the end, wrong byte count). */
  CorruptWeightsError: callerFault('model.corrupt-weights'),
  /** A weights source (directory, URL, Blob) could not be read. */
  WeightsSourceError: callerFault('model.weights-source'),
  /** Token ids outside the vocabulary, or a tokenizer file we cannot use. */
  TokenizerError: callerFault('model.tokenizer'),
  /** A KV-cache session was asked to hold more tokens than its capacity, or misused. */
  SessionError: callerFault('model.session'),
  /** A checkpoint is missing pieces or disagrees with the model it is loaded into. */
  CheckpointError: callerFault('model.checkpoint'),
  /** Bad arguments to a model-level call (ranges, ids, sampling options, training options). */
  ModelArgumentError: callerFault('model.argument')
})
export type TokenizerError = InstanceType<typeof TokenizerError>

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
