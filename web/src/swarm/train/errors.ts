/** Typed failures of DiLoCo training and the all-reduce (CONTRIBUTING.md STYLE 9). */
import { declaredError, WebSwarmError } from '../../util/errors.ts'

/** Bad options or arguments to a training call (sizes, counts, hyper-parameters). */
export class TrainArgumentError extends declaredError(WebSwarmError, { name: 'TrainArgumentError', errorCode: 'train.argument', callerFault: true }) {}

/** An allreduce message is truncated, has a wrong version, an unknown type, or a bad field. */
export class AllReduceProtocolError extends declaredError(WebSwarmError, { name: 'AllReduceProtocolError', errorCode: 'train.allreduce-protocol', callerFault: true }) {}

/** A contribution was refused by the bad-input rules (wrong size, non-finite scale). */
export class BadContributionError extends declaredError(WebSwarmError, { name: 'BadContributionError', errorCode: 'train.bad-contribution', callerFault: true }) {
  constructor (readonly peer: string, readonly reason: string) {
    super(`contribution of ${peer} refused: ${reason}`)
  }
}

/** One attempt of a round failed (a member died or stalled); the round is retried without the suspects. */
export class AttemptFailedError extends declaredError(WebSwarmError, { name: 'AttemptFailedError', errorCode: 'train.attempt-failed', callerFault: false }) {
  constructor (message: string, readonly suspects: readonly string[]) {
    super(message)
  }
}

/** This peer fell behind the swarm (the round completed without it): it must resync θ_global. */
export class BehindError extends declaredError(WebSwarmError, { name: 'BehindError', errorCode: 'train.behind', callerFault: false }) {
  constructor (readonly round: number, readonly completedRound: number) {
    super(`round ${round} was completed without this peer (swarm is at round ${completedRound}); resync`)
  }
}

/** No coordinator answered (every candidate timed out or is gone). */
export class NoCoordinatorError extends declaredError(WebSwarmError, { name: 'NoCoordinatorError', errorCode: 'train.no-coordinator', callerFault: false }) {}

/** A round was attempted MAX_ATTEMPTS times without completing. */
export class RoundFailedError extends declaredError(WebSwarmError, { name: 'RoundFailedError', errorCode: 'train.round-failed', callerFault: false }) {}

/** A fetched θ_global / momentum does not hash to the value the swarm recorded. */
export class StateHashMismatchError extends declaredError(WebSwarmError, { name: 'StateHashMismatchError', errorCode: 'train.state-hash-mismatch', callerFault: true }) {}

/** A run declaration in the CRDT is malformed or names unsupported settings. */
export class RunConfigError extends declaredError(WebSwarmError, { name: 'RunConfigError', errorCode: 'train.run-config', callerFault: true }) {}
