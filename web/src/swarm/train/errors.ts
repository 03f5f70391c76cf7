/** Typed failures of DiLoCo training and the all-reduce (STYLE 9). */
import { WebSwarmError } from '../../util/errors.ts'

/** Bad options or arguments to a training call (sizes, counts, hyper-parameters). */
export class TrainArgumentError extends WebSwarmError {
  override name = 'TrainArgumentError'
  readonly errorCode = 'train.argument'
  readonly callerFault = true
}

/** An allreduce message is truncated, has a wrong version, an unknown type, or a bad field. */
export class AllReduceProtocolError extends WebSwarmError {
  override name = 'AllReduceProtocolError'
  readonly errorCode = 'train.allreduce-protocol'
  readonly callerFault = true
}

/** A contribution was refused by the bad-input rules (wrong size, non-finite scale). */
export class BadContributionError extends WebSwarmError {
  override name = 'BadContributionError'
  readonly errorCode = 'train.bad-contribution'
  readonly callerFault = true
  constructor (readonly peer: string, readonly reason: string) {
    super(`contribution of ${peer} refused: ${reason}`)
  }
}

/** One attempt of a round failed (a member died or stalled); the round is retried without the suspects. */
export class AttemptFailedError extends WebSwarmError {
  override name = 'AttemptFailedError'
  readonly errorCode = 'train.attempt-failed'
  readonly callerFault = false
  constructor (message: string, readonly suspects: readonly string[]) {
    super(message)
  }
}

/** This peer fell behind the swarm (the round completed without it): it must resync θ_global. */
export class BehindError extends WebSwarmError {
  override name = 'BehindError'
  readonly errorCode = 'train.behind'
  readonly callerFault = false
  constructor (readonly round: number, readonly completedRound: number) {
    super(`round ${round} was completed without this peer (swarm is at round ${completedRound}); resync`)
  }
}

/** No coordinator answered (every candidate timed out or is gone). */
export class NoCoordinatorError extends WebSwarmError {
  override name = 'NoCoordinatorError'
  readonly errorCode = 'train.no-coordinator'
  readonly callerFault = false
}

/** A round was attempted MAX_ATTEMPTS times without completing. */
export class RoundFailedError extends WebSwarmError {
  override name = 'RoundFailedError'
  readonly errorCode = 'train.round-failed'
  readonly callerFault = false
}

/** A fetched θ_global / momentum does not hash to the value the swarm recorded. */
export class StateHashMismatchError extends WebSwarmError {
  override name = 'StateHashMismatchError'
  readonly errorCode = 'train.state-hash-mismatch'
  readonly callerFault = true
}

/** A run declaration in the CRDT is malformed or names unsupported settings. */
export class RunConfigError extends WebSwarmError {
  override name = 'RunConfigError'
  readonly errorCode = 'train.run-config'
  readonly callerFault = true
}
