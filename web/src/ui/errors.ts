/** Typed failures of the page (STYLE 9): what a panel shows as a short notice. */
import { WebSwarmError } from '../util/errors.ts'

/** The user pressed Stop: generation ended early on purpose (not shown as a failure). */
export class GenerationStoppedError extends WebSwarmError {
  override name = 'GenerationStoppedError'
  readonly errorCode = 'page.generation-stopped'
  readonly callerFault = false
}

/** The page has no WebGPU and the user has not chosen the CPU fallback (nor `?device=cpu`). */
export class NoComputeDeviceError extends WebSwarmError {
  override name = 'NoComputeDeviceError'
  readonly errorCode = 'page.no-compute-device'
  readonly callerFault = false
}

/** A page query parameter (`?relay=`, `?entry-ttl=`, `?max-gpu-memory=`) does not parse. */
export class PageParamError extends WebSwarmError {
  override name = 'PageParamError'
  readonly errorCode = 'page.bad-param'
  readonly callerFault = true
}

/** The swarm is not joined (the relay is unreachable, or joining failed): nothing that needs peers can run. */
export class NotJoinedError extends WebSwarmError {
  override name = 'NotJoinedError'
  readonly errorCode = 'page.not-joined'
  readonly callerFault = false
}

/** The compute worker failed to start, to load its blocks, or to run a step (the message names which). */
export class WorkerComputeError extends WebSwarmError {
  override name = 'WorkerComputeError'
  readonly errorCode = 'page.worker-compute'
  readonly callerFault = false
}

/** A chat message cannot be turned into tokens (empty, or a model without a tokenizer in the page). */
export class ChatInputError extends WebSwarmError {
  override name = 'ChatInputError'
  readonly errorCode = 'page.chat-input'
  readonly callerFault = true
}

/** Contribute found no role within the GPU-memory budget (or no model it can load); the message says what the smallest role needs. */
export class NoRoleFitsError extends WebSwarmError {
  override name = 'NoRoleFitsError'
  readonly errorCode = 'page.no-role-fits'
  readonly callerFault = false
  /** The smallest role and its GPU bytes, when the budget was what ruled everything out. */
  constructor (message: string, readonly smallest?: { what: string, bytes: number }) {
    super(message)
  }
}

/** Contribute asked the Training panel to join a run while it already trains one. */
export class TrainJoinError extends WebSwarmError {
  override name = 'TrainJoinError'
  readonly errorCode = 'page.train-join'
  readonly callerFault = true
}
