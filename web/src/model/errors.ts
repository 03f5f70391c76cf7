/**
 * Typed failures of the model layer (STYLE 9), in the one hierarchy (util/errors.ts). Each message
 * names the field, file or tensor at fault.
 */
import { WebSwarmError } from '../util/errors.ts'

/** config.json asks for something this implementation does not compute (or is malformed). */
export class ConfigError extends WebSwarmError {
  override name = 'ConfigError'
  readonly errorCode = 'model.config'
  readonly callerFault = true
  constructor (readonly field: string, detail: string) {
    super(`config.json: ${field}: ${detail}`)
  }
}

/** A weights file is corrupt or truncated (bad header, offsets past the end, wrong byte count). */
export class CorruptWeightsError extends WebSwarmError {
  override name = 'CorruptWeightsError'
  readonly errorCode = 'model.corrupt-weights'
  readonly callerFault = true
}

/** A tensor the model needs is in no weights file. */
export class MissingTensorError extends WebSwarmError {
  override name = 'MissingTensorError'
  readonly errorCode = 'model.missing-tensor'
  readonly callerFault = true
  constructor (readonly tensor: string, where: string) {
    super(`missing tensor '${tensor}' (${where})`)
  }
}

/** A tensor's stored shape differs from what config.json implies. */
export class TensorShapeMismatchError extends WebSwarmError {
  override name = 'TensorShapeMismatchError'
  readonly errorCode = 'model.tensor-shape-mismatch'
  readonly callerFault = true
  constructor (readonly tensor: string, expected: readonly number[], got: readonly number[]) {
    super(`tensor '${tensor}': shape [${got.join(', ')}] does not match config, expected [${expected.join(', ')}]`)
  }
}

/** A weights file uses a dtype we cannot read: one class with the runtime's (quant-types.ts), so a caller catches either. */
export { UnsupportedDTypeError } from '../gpu/quant-types.ts'

/** A weights source (directory, URL, Blob) could not be read. */
export class WeightsSourceError extends WebSwarmError {
  override name = 'WeightsSourceError'
  readonly errorCode = 'model.weights-source'
  readonly callerFault = true
}

/** Token ids outside the vocabulary, or a tokenizer file we cannot use. */
export class TokenizerError extends WebSwarmError {
  override name = 'TokenizerError'
  readonly errorCode = 'model.tokenizer'
  readonly callerFault = true
}

/** A KV-cache session was asked to hold more tokens than its capacity, or misused. */
export class SessionError extends WebSwarmError {
  override name = 'SessionError'
  readonly errorCode = 'model.session'
  readonly callerFault = true
}

/** A checkpoint is missing pieces or disagrees with the model it is loaded into. */
export class CheckpointError extends WebSwarmError {
  override name = 'CheckpointError'
  readonly errorCode = 'model.checkpoint'
  readonly callerFault = true
}

/** Bad arguments to a model-level call (ranges, ids, sampling options, training options). */
export class ModelArgumentError extends WebSwarmError {
  override name = 'ModelArgumentError'
  readonly errorCode = 'model.argument'
  readonly callerFault = true
}
