/** Typed failures of the scale simulator (CONTRIBUTING.md STYLE 9). */
import { declaredError, WebSwarmError } from '../util/errors.ts'

/** A simulator option is out of range (negative latency, a loss probability ≥ 1, N < 2). */
export class SimConfigError extends declaredError(WebSwarmError, { name: 'SimConfigError', errorCode: 'sim.config', callerFault: true }) {}

/** The simulated swarm could not reach the state a run needs (too few live peers, a node that would not start). */
export class SimStateError extends declaredError(WebSwarmError, { name: 'SimStateError', errorCode: 'sim.state', callerFault: false }) {}
