/** Typed failures of the page (CONTRIBUTING.md STYLE 9): what a panel shows as a short notice. */
import { callerFault, declaredError, declaredErrors, notCallerFault, WebSwarmError } from '../util/errors.ts'

export const { GenerationStoppedError, NoComputeDeviceError, PageParamError, NotJoinedError, WorkerComputeError, ChatInputError, TrainJoinError } = declaredErrors(WebSwarmError, {
  /** The user pressed Stop: generation ended early on purpose (not shown as a failure). */
  GenerationStoppedError: notCallerFault('page.generation-stopped'),
  /** The page has no WebGPU and the user has not chosen the CPU fallback (nor `?device=cpu`). */
  NoComputeDeviceError: notCallerFault('page.no-compute-device'),
  /** A page query parameter (`?relay=`, `?entry-ttl=`, `?max-gpu-memory=`) does not parse. */
  PageParamError: callerFault('page.bad-param'),
  /** The swarm is not joined (the relay is unreachable, or joining failed): nothing that needs peers can run. */
  NotJoinedError: notCallerFault('page.not-joined'),
  /** The compute worker failed to start, to load its blocks, or to run a step (the message names which). */
  WorkerComputeError: notCallerFault('page.worker-compute'),
  /** A chat message cannot be turned into tokens (empty, or a model without a tokenizer in the page). */
  ChatInputError: callerFault('page.chat-input'),
  /** Contribute asked the Training panel to join a run while it already trains one. */
  TrainJoinError: callerFault('page.train-join')
})

/** Contribute found no role within the GPU-memory budget (or no model it can load); the message says what the smallest role needs. */
export class NoRoleFitsError extends declaredError(WebSwarmError, { name: 'NoRoleFitsError', errorCode: 'page.no-role-fits', callerFault: false }) {
  /** The smallest role and its GPU bytes, when the budget was what ruled everything out. */
  constructor (message: string, readonly smallest?: { what: string, bytes: number }) {
    super(message)
  }
}
