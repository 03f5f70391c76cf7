/**
 * Typed failures of the GPU runtime (CONTRIBUTING.md STYLE 9), in the one hierarchy (util/errors.ts): each names
 * the op, tensor or feature at fault, has a stable `errorCode` and says whether the caller is at
 * fault.
 */
import { declaredError, WebSwarmError, type ErrorCodeString } from '../util/errors.ts'

/** No WebGPU implementation or no adapter on this machine. */
export class NoWebGpuError extends declaredError(WebSwarmError, { name: 'NoWebGpuError', errorCode: 'gpu.no-webgpu', callerFault: false }) {}

/** An op was given tensors whose shapes or dtypes it cannot combine. */
export class ShapeError extends WebSwarmError {
  override name = 'ShapeError'
  readonly errorCode: ErrorCodeString = 'gpu.shape'
  readonly callerFault = true
  constructor (op: string, detail: string) {
    super(`${op}: ${detail}`)
  }
}

/** A tensor was used after dispose(), or on another device than the op's. */
export class TensorStateError extends declaredError(WebSwarmError, { name: 'TensorStateError', errorCode: 'gpu.tensor-state', callerFault: true }) {}

/** A WGSL module failed to compile or a pipeline failed to build. */
export class KernelCompileError extends declaredError(WebSwarmError, { name: 'KernelCompileError', errorCode: 'gpu.kernel-compile', callerFault: false }) {}

/** The device reported an error (validation, out-of-memory) while running a batch. */
export class DeviceError extends declaredError(WebSwarmError, { name: 'DeviceError', errorCode: 'gpu.device', callerFault: false }) {}

/** An op that cannot take a tensor stored as row parts (see split.ts) was given one. */
export class SplitTensorError extends declaredError(ShapeError, { name: 'SplitTensorError', errorCode: 'gpu.split-tensor' }) {}

/** A tensor cannot be stored within the device's buffer limits, even split into row parts. */
export class TensorTooLargeError extends declaredError(WebSwarmError, { name: 'TensorTooLargeError', errorCode: 'gpu.tensor-too-large', callerFault: true }) {}

/** Bad arguments to a runtime call: an unknown dtype, an invalid shape, a uniform that is not a u32. */
export class GpuArgumentError extends declaredError(WebSwarmError, { name: 'GpuArgumentError', errorCode: 'gpu.argument', callerFault: true }) {}

/** A kernel's WGSL source is missing (not loaded, no such file, an include that does not exist) or includes itself. */
export class ShaderSourceError extends declaredError(WebSwarmError, { name: 'ShaderSourceError', errorCode: 'gpu.shader-source', callerFault: false }) {}
