/** Typed failures of the model layer (STYLE 9). Each message names the field, file or tensor at fault. */

/** config.json asks for something this implementation does not compute (or is malformed). */
export class ConfigError extends Error {
  override name = 'ConfigError'
  constructor (readonly field: string, detail: string) {
    super(`config.json: ${field}: ${detail}`)
  }
}

/** A weights file is corrupt or truncated (bad header, offsets past the end, wrong byte count). */
export class CorruptWeightsError extends Error {
  override name = 'CorruptWeightsError'
}

/** A tensor the model needs is in no weights file. */
export class MissingTensorError extends Error {
  override name = 'MissingTensorError'
  constructor (readonly tensor: string, where: string) {
    super(`missing tensor '${tensor}' (${where})`)
  }
}

/** A tensor's stored shape differs from what config.json implies. */
export class TensorShapeMismatchError extends Error {
  override name = 'TensorShapeMismatchError'
  constructor (readonly tensor: string, expected: readonly number[], got: readonly number[]) {
    super(`tensor '${tensor}': shape [${got.join(', ')}] does not match config, expected [${expected.join(', ')}]`)
  }
}

/** A weights file uses a dtype we cannot read: one class with the runtime's (quant-types.ts), so a caller catches either. */
export { UnsupportedDTypeError } from '../gpu/quant-types.ts'

/** A weights source (directory, URL, Blob) could not be read. */
export class WeightsSourceError extends Error {
  override name = 'WeightsSourceError'
}

/** Token ids outside the vocabulary, or a tokenizer file we cannot use. */
export class TokenizerError extends Error {
  override name = 'TokenizerError'
}

/** A KV-cache session was asked to hold more tokens than its capacity, or misused. */
export class SessionError extends Error {
  override name = 'SessionError'
}

/** A checkpoint is missing pieces or disagrees with the model it is loaded into. */
export class CheckpointError extends Error {
  override name = 'CheckpointError'
}

/** Bad arguments to a model-level call (ranges, ids, sampling options, training options). */
export class ModelArgumentError extends Error {
  override name = 'ModelArgumentError'
}
