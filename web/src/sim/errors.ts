/** Typed failures of the scale simulator (STYLE 9). */
import { WebSwarmError } from '../util/errors.ts'

/** A simulator option is out of range (negative latency, a loss probability ≥ 1, N < 2). */
export class SimConfigError extends WebSwarmError {
  override name = 'SimConfigError'
  readonly errorCode = 'sim.config'
  readonly callerFault = true
}

/** The simulated swarm could not reach the state a run needs (too few live peers, a node that would not start). */
export class SimStateError extends WebSwarmError {
  override name = 'SimStateError'
  readonly errorCode = 'sim.state'
  readonly callerFault = false
}
