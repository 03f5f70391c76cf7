/**
 * Which failures of a `webswarm` command are expected (bad input, no adapter, bad files) — printed
 * as one line — and which are bugs, printed with their stack. Decided by error code and class,
 * never by comparing `name` strings (a renamed or duplicated class cannot slip through).
 */
import { NoWebGpuError, ShapeError } from '../gpu/errors.ts'
import {
  CheckpointError, ConfigError, CorruptWeightsError, MissingTensorError, ModelArgumentError, SessionError, TensorShapeMismatchError,
  TokenizerError, UnsupportedDTypeError, WeightsSourceError
} from '../model/errors.ts'
import { hasErrorCode, type ErrorCodeString } from '../util/errors.ts'

/** Codes of the WebSwarm errors a command reports as one line. */
const EXPECTED_CODES: readonly ErrorCodeString[] = ['cli.usage']

/**
 * The gpu/ and model/ errors are not WebSwarmErrors yet (no `errorCode`); until they are, they are
 * matched by class.
 */
const EXPECTED_CLASSES: ReadonlyArray<abstract new (...args: never[]) => Error> = [
  NoWebGpuError, ShapeError, ConfigError, CorruptWeightsError, MissingTensorError, TensorShapeMismatchError, UnsupportedDTypeError,
  WeightsSourceError, TokenizerError, SessionError, CheckpointError, ModelArgumentError
]

/** Whether `e` is an expected failure: one line on stderr, no stack. */
export function isExpectedFailure (e: unknown): boolean {
  return hasErrorCode(e, ...EXPECTED_CODES) || EXPECTED_CLASSES.some(c => e instanceof c)
}

/** The process exit status for a failed command: 2 for bad usage, 1 for anything else. */
export function exitStatusOf (e: unknown): number {
  return hasErrorCode(e, 'cli.usage') ? 2 : 1
}
