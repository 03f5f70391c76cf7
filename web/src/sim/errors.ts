/** Typed failures of the scale simulator (CONTRIBUTING.md STYLE 9). */
import { callerFault, declaredErrors, notCallerFault, WebSwarmError } from '../util/errors.ts'

export const { SimConfigError, SimStateError } = declaredErrors(WebSwarmError, {
  /** A simulator option is out of range (negative latency, a loss probability ≥ 1, N < 2). */
  SimConfigError: callerFault('sim.config'),
  /** The simulated swarm could not reach the state a run needs (too few live peers, a node that would not start). */
  SimStateError: notCallerFault('sim.state')
})
