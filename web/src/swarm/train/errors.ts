/** Typed failures of DiLoCo training and the all-reduce (CONTRIBUTING.md STYLE 9). */
import { callerFault, declaredError, declaredErrors, notCallerFault, WebSwarmError } from '../../util/errors.ts'

export const { TrainArgumentError, AllReduceProtocolError, NoCoordinatorError, RoundFailedError, StateHashMismatchError, RunConfigError, TrainerThreadError } = declaredErrors(WebSwarmError, {
  /** Bad options or arguments to a training call (sizes, counts, hyper-parameters). */
  TrainArgumentError: callerFault('train.argument'),
  /** An allreduce message is truncated, has a wrong version, an unknown type, or a bad field. */
  AllReduceProtocolError: callerFault('train.allreduce-protocol'),
  /** No coordinator answered (every candidate timed out or is gone). */
  NoCoordinatorError: notCallerFault('train.no-coordinator'),
  /** A round was attempted MAX_ATTEMPTS times without completing. */
  RoundFailedError: notCallerFault('train.round-failed'),
  /** A fetched θ_global / momentum does not hash to the value the swarm recorded. */
  StateHashMismatchError: callerFault('train.state-hash-mismatch'),
  /** A run declaration in the CRDT is malformed or names unsupported settings. */
  RunConfigError: callerFault('train.run-config'),
  /** A worker's trainer thread failed (an error in a step, a crash) or was stopped; the worker cannot go on. */
  TrainerThreadError: notCallerFault('train.trainer-thread')
})

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
