import { cpu } from '../cpu-backend.ts'
import * as twin from '../cpu/elementwise.ts'
import type { GeluApprox } from '../cpu/elementwise.ts'
import { ShapeError } from '../errors.ts'
import type { GpuBackend } from '../gpu-backend.ts'
import { defineKernel, type Variant } from '../kernel.ts'
import type { Tensor } from '../tensor.ts'
import { backendOf, expectDType, expectSameShape, groups, isCpu } from './util.ts'

export type { GeluApprox } from '../cpu/elementwise.ts'

/** Workgroup size of the flat elementwise kernels (threads; one element each). */
const WG = 256

/**
 * The one layout of shaders/elementwise.wgsl: every entry point is compiled in one module,
 * so they all see the same bindings. Ops with fewer inputs bind `a` again.
 */
export const ELEMENTWISE = defineKernel({
  name: 'elementwise', shader: 'elementwise',
  bindings: [
    { name: 'a', type: 'f32' }, // (n)
    { name: 'b', type: 'f32' }, // (n)
    { name: 'c', type: 'f32' }, // (n)
    { name: 'out', type: 'f32', access: 'read_write' } // (n)
  ],
  uniforms: [
    { name: 'n', type: 'u32' }, // elements
    { name: 's', type: 'f32' } // scalar of scale / addScaled / scaleInPlace
  ]
})

/** Entry points of shaders/elementwise.wgsl. */
export type ElementwiseEntry = 'add' | 'sub' | 'mul' | 'scale' | 'add_scaled' | 'add_in_place' | 'scale_in_place' |
'silu' | 'silu_backward' | 'gelu' | 'gelu_backward' | 'swiglu' | 'swiglu_backward_gate'

/** Every entry point, for compile-all checks. */
export const ELEMENTWISE_ENTRIES: readonly ElementwiseEntry[] = [
  'add', 'sub', 'mul', 'scale', 'add_scaled', 'add_in_place', 'scale_in_place',
  'silu', 'silu_backward', 'gelu', 'gelu_backward', 'swiglu', 'swiglu_backward_gate'
]

/** Variant builder (CONTRIBUTING.md STYLE 5): the entry, and the GELU form baked in as a constant. */
export function elementwiseVariant (entry: ElementwiseEntry, approx: GeluApprox = 'tanh'): Variant {
  return { key: `${entry}-${approx}-wg${WG}`, entry, workgroupSize: [WG], constants: { GELU_ERF: approx === 'erf' } }
}

/**
 * GPU vs CPU-twin tolerances. Exact ops are exact (f32 inputs, one rounding). Transcendentals
 * carry the WGSL exp/tanh error (spec allows a few ulp) and, for erf, the 1.2e-7 relative error
 * of the polynomial fit.
 */
export const TOLERANCE = {
  add: { atol: 0, rtol: 0 },
  sub: { atol: 0, rtol: 0 },
  mul: { atol: 0, rtol: 0 },
  scale: { atol: 0, rtol: 2e-7 },
  addScaled: { atol: 1e-6, rtol: 1e-6 }, // |a|, |s·b| ≲ 10: one rounding of s·b
  addInPlace: { atol: 0, rtol: 0 },
  scaleInPlace: { atol: 0, rtol: 2e-7 },
  silu: { atol: 1e-6, rtol: 1e-5 },
  siluBackward: { atol: 1e-6, rtol: 1e-5 },
  gelu: { atol: 1e-6, rtol: 1e-5 },
  geluBackward: { atol: 2e-6, rtol: 1e-5 },
  swiglu: { atol: 1e-6, rtol: 1e-5 },
  swigluBackward: { atol: 2e-6, rtol: 1e-5 }
} as const

function checkF32Same (op: string, ts: readonly Tensor[]): void {
  ts.forEach((t, i) => {
    expectDType(op, `input ${i}`, t, 'f32')
    if (i > 0) expectSameShape(op, ts[0], t)
  })
}

/** Encodes one flat dispatch; `inputs` fill a, b, c in order (missing ones repeat `a`). */
function dispatch (g: GpuBackend, entry: ElementwiseEntry, inputs: readonly Tensor[], out: Tensor, s = 0, approx: GeluApprox = 'tanh'): void {
  const [a, b = a, c = a] = inputs
  const n = out.numel
  g.run(ELEMENTWISE, elementwiseVariant(entry, approx), { a, b, c, out }, { n, s }, g.grid1d(groups(n, WG)))
}

/**
 * The shared path of every out-of-place op: validate (same shapes, f32), then run the CPU twin
 * or one dispatch into a fresh tensor of the inputs' shape.
 */
function flat (op: string, entry: ElementwiseEntry, inputs: readonly Tensor[], cpuTwin: (xs: Float32Array[]) => Float32Array, s = 0, approx: GeluApprox = 'tanh'): Tensor {
  const be = backendOf(op, ...inputs)
  checkF32Same(op, inputs)
  if (!Number.isFinite(s)) throw new ShapeError(op, `scalar must be finite, got ${s}`)
  if (isCpu(be)) return cpu.wrap(cpuTwin(inputs.map(t => t.data as Float32Array)), inputs[0].shape)
  const g = be as GpuBackend
  const out = g.empty(inputs[0].shape)
  dispatch(g, entry, inputs, out, s, approx)
  return out
}

function checkApprox (op: string, approx: string): void {
  if (approx !== 'tanh' && approx !== 'erf') throw new ShapeError(op, `approx must be 'tanh' or 'erf', got '${approx}'`)
}

/** a + b, same shapes. */
export function add (a: Tensor, b: Tensor): Tensor {
  return flat('add', 'add', [a, b], ([x, y]) => twin.add(x, y))
}

/** a − b, same shapes. */
export function sub (a: Tensor, b: Tensor): Tensor {
  return flat('sub', 'sub', [a, b], ([x, y]) => twin.sub(x, y))
}

/** a · b elementwise, same shapes. */
export function mul (a: Tensor, b: Tensor): Tensor {
  return flat('mul', 'mul', [a, b], ([x, y]) => twin.mul(x, y))
}

/** s · a (s is applied as an f32). */
export function scale (a: Tensor, s: number): Tensor {
  return flat('scale', 'scale', [a], ([x]) => twin.scale(x, Math.fround(s)), s)
}

/** a + s · b, same shapes. */
export function addScaled (a: Tensor, b: Tensor, s: number): Tensor {
  return flat('addScaled', 'add_scaled', [a, b], ([x, y]) => twin.addScaled(x, y, Math.fround(s)), s)
}

/** silu(x) = x · sigmoid(x). */
export function silu (x: Tensor): Tensor {
  return flat('silu', 'silu', [x], ([v]) => twin.silu(v))
}

/** dx = dy · silu'(x). */
export function siluBackward (x: Tensor, dy: Tensor): Tensor {
  return flat('siluBackward', 'silu_backward', [x, dy], ([v, d]) => twin.siluBackward(v, d))
}

/** gelu(x): 'tanh' (GPT-2, PyTorch approximate='tanh') or 'erf' (exact x·Φ(x)). */
export function gelu (x: Tensor, approx: GeluApprox = 'tanh'): Tensor {
  checkApprox('gelu', approx)
  return flat('gelu', 'gelu', [x], ([v]) => twin.gelu(v, approx), 0, approx)
}

/** dx = dy · gelu'(x) for the same approximation as the forward. */
export function geluBackward (x: Tensor, dy: Tensor, approx: GeluApprox = 'tanh'): Tensor {
  checkApprox('geluBackward', approx)
  return flat('geluBackward', 'gelu_backward', [x, dy], ([v, d]) => twin.geluBackward(v, d, approx), 0, approx)
}

/** silu(gate) · up, same shapes (the Llama MLP's gated activation). */
export function swiglu (gate: Tensor, up: Tensor): Tensor {
  return flat('swiglu', 'swiglu', [gate, up], ([g, u]) => twin.swiglu(g, u))
}

/** Gradients of swiglu: dGate = dy · up · silu'(gate), dUp = dy · silu(gate). Two dispatches. */
export function swigluBackward (gate: Tensor, up: Tensor, dy: Tensor): { dGate: Tensor, dUp: Tensor } {
  const be = backendOf('swigluBackward', gate, up, dy)
  checkF32Same('swigluBackward', [gate, up, dy])
  if (isCpu(be)) {
    const r = twin.swigluBackward(gate.data as Float32Array, up.data as Float32Array, dy.data as Float32Array)
    return { dGate: cpu.wrap(r.dGate, gate.shape), dUp: cpu.wrap(r.dUp, gate.shape) }
  }
  const g = be as GpuBackend
  const dGate = g.empty(gate.shape)
  const dUp = g.empty(gate.shape)
  dispatch(g, 'swiglu_backward_gate', [gate, up, dy], dGate)
  dispatch(g, 'swiglu', [gate, dy], dUp)
  return { dGate, dUp }
}

/** dst += src in place (residuals, gradient accumulation); same shapes. `src` may be `dst`. */
export function addInPlace (dst: Tensor, src: Tensor): void {
  const be = backendOf('addInPlace', dst, src)
  checkF32Same('addInPlace', [dst, src])
  if (isCpu(be)) { twin.addInPlace(dst.data as Float32Array, src.data as Float32Array); return }
  const g = be as GpuBackend
  // One buffer cannot be bound writable and readable in one dispatch: t += t is t *= 2.
  if (dst.buffer === src.buffer) scaleInPlaceGpu(g, dst, 2)
  else dispatch(g, 'add_in_place', [src], dst)
}

/** t *= s in place (s is applied as an f32). */
export function scaleInPlace (t: Tensor, s: number): void {
  const be = backendOf('scaleInPlace', t)
  checkF32Same('scaleInPlace', [t])
  if (!Number.isFinite(s)) throw new ShapeError('scaleInPlace', `scalar must be finite, got ${s}`)
  if (isCpu(be)) { twin.scaleInPlace(t.data as Float32Array, Math.fround(s)); return }
  scaleInPlaceGpu(be as GpuBackend, t, s)
}

/**
 * `scale_in_place` reads nothing but `out`, yet the layout needs a read binding that is not
 * `out` itself: a 1-element placeholder, released once encoded (the pool reuses it only after
 * the next submit).
 */
function scaleInPlaceGpu (g: GpuBackend, t: Tensor, s: number): void {
  const placeholder = g.empty([1])
  dispatch(g, 'scale_in_place', [placeholder], t, s)
  placeholder.dispose()
}
