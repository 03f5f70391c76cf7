/**
 * Typed failures of the GPU runtime (STYLE 9), in the one hierarchy (util/errors.ts): each names
 * the op, tensor or feature at fault, has a stable `errorCode` and says whether the caller is at
 * fault.
 */
import { WebSwarmError, type ErrorCodeString } from '../util/errors.ts'

/** No WebGPU implementation or no adapter on this machine. */
export class NoWebGpuError extends WebSwarmError {
  override name = 'NoWebGpuError'
  readonly errorCode = 'gpu.no-webgpu'
  readonly callerFault = false
}

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
export class TensorStateError extends WebSwarmError {
  override name = 'TensorStateError'
  readonly errorCode = 'gpu.tensor-state'
  readonly callerFault = true
}

/** A WGSL module failed to compile or a pipeline failed to build. */
export class KernelCompileError extends WebSwarmError {
  override name = 'KernelCompileError'
  readonly errorCode = 'gpu.kernel-compile'
  readonly callerFault = false
}

/** The device reported an error (validation, out-of-memory) while running a batch. */
export class DeviceError extends WebSwarmError {
  override name = 'DeviceError'
  readonly errorCode = 'gpu.device'
  readonly callerFault = false
}

/** An op that cannot take a tensor stored as row parts (see split.ts) was given one. */
export class SplitTensorError extends ShapeError {
  override name = 'SplitTensorError'
  override readonly errorCode = 'gpu.split-tensor'
}

/** A tensor cannot be stored within the device's buffer limits, even split into row parts. */
export class TensorTooLargeError extends WebSwarmError {
  override name = 'TensorTooLargeError'
  readonly errorCode = 'gpu.tensor-too-large'
  readonly callerFault = true
}

/** Bad arguments to a runtime call: an unknown dtype, an invalid shape, a uniform that is not a u32. */
export class GpuArgumentError extends WebSwarmError {
  override name = 'GpuArgumentError'
  readonly errorCode = 'gpu.argument'
  readonly callerFault = true
}

/** A kernel's WGSL source is missing (not loaded, no such file, an include that does not exist) or includes itself. */
export class ShaderSourceError extends WebSwarmError {
  override name = 'ShaderSourceError'
  readonly errorCode = 'gpu.shader-source'
  readonly callerFault = false
}
