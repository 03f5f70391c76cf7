/**
 * Typed failures of the GPU runtime (CONTRIBUTING.md STYLE 9), in the one hierarchy (util/errors.ts): each names
 * the op, tensor or feature at fault, has a stable `errorCode` and says whether the caller is at
 * fault.
 */
import { callerFault, declaredError, declaredErrors, notCallerFault, WebSwarmError, type ErrorCodeString } from '../util/errors.ts'

export const { NoWebGpuError, TensorStateError, KernelCompileError, DeviceError, TensorTooLargeError, GpuArgumentError, ShaderSourceError } = declaredErrors(WebSwarmError, {
  /** No WebGPU implementation or no adapter on this machine. */
  NoWebGpuError: notCallerFault('gpu.no-webgpu'),
  /** A tensor was used after dispose(), or on another device than the op's. */
  TensorStateError: callerFault('gpu.tensor-state'),
  /** A WGSL module failed to compile or a pipeline failed to build. */
  KernelCompileError: notCallerFault('gpu.kernel-compile'),
  /** The device reported an error (validation, out-of-memory) while running a batch. */
  DeviceError: notCallerFault('gpu.device'),
  /** A tensor cannot be stored within the device's buffer limits, even split into row parts. */
  TensorTooLargeError: callerFault('gpu.tensor-too-large'),
  /** Bad arguments to a runtime call: an unknown dtype, an invalid shape, a uniform that is not a u32. */
  GpuArgumentError: callerFault('gpu.argument'),
  /** A kernel's WGSL source is missing (not loaded, no such file, an include that does not exist) or includes itself. */
  ShaderSourceError: notCallerFault('gpu.shader-source')
})

/** An op was given tensors whose shapes or dtypes it cannot combine. */
export class ShapeError extends WebSwarmError {
  override name = 'ShapeError'
  readonly errorCode: ErrorCodeString = 'gpu.shape'
  readonly callerFault = true
  constructor (op: string, detail: string) {
    super(`${op}: ${detail}`)
  }
}

/** An op that cannot take a tensor stored as row parts (see split.ts) was given one. */
export class SplitTensorError extends declaredError(ShapeError, { name: 'SplitTensorError', errorCode: 'gpu.split-tensor' }) {}
