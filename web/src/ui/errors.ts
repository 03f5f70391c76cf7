/** Typed failures of the page (CONTRIBUTING.md STYLE 9): what a panel shows as a short notice. */
import { declaredError, WebSwarmError } from '../util/errors.ts'

/** The user pressed Stop: generation ended early on purpose (not shown as a failure). */
export class GenerationStoppedError extends declaredError(WebSwarmError, { name: 'GenerationStoppedError', errorCode: 'page.generation-stopped', callerFault: false }) {}

/** The page has no WebGPU and the user has not chosen the CPU fallback (nor `?device=cpu`). */
export class NoComputeDeviceError extends declaredError(WebSwarmError, { name: 'NoComputeDeviceError', errorCode: 'page.no-compute-device', callerFault: false }) {}

/** A page query parameter (`?relay=`, `?entry-ttl=`, `?max-gpu-memory=`) does not parse. */
export class PageParamError extends declaredError(WebSwarmError, { name: 'PageParamError', errorCode: 'page.bad-param', callerFault: true }) {}

/** The swarm is not joined (the relay is unreachable, or joining failed): nothing that needs peers can run. */
export class NotJoinedError extends declaredError(WebSwarmError, { name: 'NotJoinedError', errorCode: 'page.not-joined', callerFault: false }) {}

/** The compute worker failed to start, to load its blocks, or to run a step (the message names which). */
export class WorkerComputeError extends declaredError(WebSwarmError, { name: 'WorkerComputeError', errorCode: 'page.worker-compute', callerFault: false }) {}

/** A chat message cannot be turned into tokens (empty, or a model without a tokenizer in the page). */
export class ChatInputError extends declaredError(WebSwarmError, { name: 'ChatInputError', errorCode: 'page.chat-input', callerFault: true }) {}

/** Contribute found no role within the GPU-memory budget (or no model it can load); the message says what the smallest role needs. */
export class NoRoleFitsError extends declaredError(WebSwarmError, { name: 'NoRoleFitsError', errorCode: 'page.no-role-fits', callerFault: false }) {
  /** The smallest role and its GPU bytes, when the budget was what ruled everything out. */
  constructor (message: string, readonly smallest?: { what: string, bytes: number }) {
    super(message)
  }
}

/** Contribute asked the Training panel to join a run while it already trains one. */
export class TrainJoinError extends declaredError(WebSwarmError, { name: 'TrainJoinError', errorCode: 'page.train-join', callerFault: true }) {}
