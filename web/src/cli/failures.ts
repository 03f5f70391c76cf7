/**
 * Which failures of a `webswarm` command are expected (bad input, no adapter, bad files) — printed
 * as one line — and which are bugs, printed with their stack. Decided by error code, never by
 * comparing `name` strings (a renamed or duplicated class cannot slip through).
 */
import { hasErrorCode, type ErrorCodeString } from '../util/errors.ts'

/** Codes of the WebSwarm errors a command reports as one line: bad usage, no adapter, bad inputs and files. */
const EXPECTED_CODES: readonly ErrorCodeString[] = [
  'cli.usage',
  'gpu.no-webgpu', 'gpu.shape', 'gpu.split-tensor', 'gpu.unsupported-dtype',
  'model.config', 'model.corrupt-weights', 'model.missing-tensor', 'model.tensor-shape-mismatch', 'model.weights-source',
  'model.tokenizer', 'model.session', 'model.checkpoint', 'model.argument', 'model.gguf-unsupported', 'model.gguf-metadata'
]

/** Whether `e` is an expected failure: one line on stderr, no stack. */
export function isExpectedFailure (e: unknown): boolean {
  return hasErrorCode(e, ...EXPECTED_CODES)
}

/** The process exit status for a failed command: 2 for bad usage, 1 for anything else. */
export function exitStatusOf (e: unknown): number {
  return hasErrorCode(e, 'cli.usage') ? 2 : 1
}
