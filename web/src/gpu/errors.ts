/** Typed failures of the GPU runtime. Each names the op, tensor or feature at fault. */

/** No WebGPU implementation or no adapter on this machine. */
export class NoWebGpuError extends Error {
  override name = 'NoWebGpuError'
}

/** An op was given tensors whose shapes or dtypes it cannot combine. */
export class ShapeError extends Error {
  override name = 'ShapeError'
  constructor (op: string, detail: string) {
    super(`${op}: ${detail}`)
  }
}

/** A tensor was used after dispose(), or on another device than the op's. */
export class TensorStateError extends Error {
  override name = 'TensorStateError'
}

/** A WGSL module failed to compile or a pipeline failed to build. */
export class KernelCompileError extends Error {
  override name = 'KernelCompileError'
}

/** The device reported an error (validation, out-of-memory) while running a batch. */
export class DeviceError extends Error {
  override name = 'DeviceError'
}

/** An op that cannot take a tensor stored as row parts (see split.ts) was given one. */
export class SplitTensorError extends ShapeError {
  override name = 'SplitTensorError'
}

/** A tensor cannot be stored within the device's buffer limits, even split into row parts. */
export class TensorTooLargeError extends Error {
  override name = 'TensorTooLargeError'
}
