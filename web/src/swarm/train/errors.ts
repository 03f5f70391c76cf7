/** Typed failures of DiLoCo training and the all-reduce (STYLE 9). */

/** Bad options or arguments to a training call (sizes, counts, hyper-parameters). */
export class TrainArgumentError extends Error {
  override name = 'TrainArgumentError'
}

/** An allreduce message is truncated, has a wrong version, an unknown type, or a bad field. */
export class AllReduceProtocolError extends Error {
  override name = 'AllReduceProtocolError'
}

/** A contribution was refused by the bad-input rules (wrong size, non-finite scale). */
export class BadContributionError extends Error {
  override name = 'BadContributionError'
  constructor (readonly peer: string, readonly reason: string) {
    super(`contribution of ${peer} refused: ${reason}`)
  }
}

/** One attempt of a round failed (a member died or stalled); the round is retried without the suspects. */
export class AttemptFailedError extends Error {
  override name = 'AttemptFailedError'
  constructor (message: string, readonly suspects: readonly string[]) {
    super(message)
  }
}

/** This peer fell behind the swarm (the round completed without it): it must resync θ_global. */
export class BehindError extends Error {
  override name = 'BehindError'
  constructor (readonly round: number, readonly completedRound: number) {
    super(`round ${round} was completed without this peer (swarm is at round ${completedRound}); resync`)
  }
}

/** No coordinator answered (every candidate timed out or is gone). */
export class NoCoordinatorError extends Error {
  override name = 'NoCoordinatorError'
}

/** A round was attempted MAX_ATTEMPTS times without completing. */
export class RoundFailedError extends Error {
  override name = 'RoundFailedError'
}

/** A fetched θ_global / momentum does not hash to the value the swarm recorded. */
export class StateHashMismatchError extends Error {
  override name = 'StateHashMismatchError'
}

/** A run declaration in the CRDT is malformed or names unsupported settings. */
export class RunConfigError extends Error {
  override name = 'RunConfigError'
}
