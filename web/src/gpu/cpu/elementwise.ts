/**
 * CPU twins of shaders/elementwise.wgsl: plain loops, the definition of each op.
 * Arithmetic runs in f64 (JS numbers); the result has the input's array type, so the ops
 * get Float32Array while gradient checks run the same code on Float64Array.
 */

export type Floats = Float32Array | Float64Array

/** A zeroed array of the same type as `like`. */
export function alloc<A extends Floats> (like: A, n: number): A {
  return (like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n)) as A
}

/** out[i] = a[i] + b[i] */
export function add<A extends Floats> (a: A, b: Floats): A {
  const out = alloc(a, a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i]
  return out
}

/** out[i] = a[i] − b[i] */
export function sub<A extends Floats> (a: A, b: Floats): A {
  const out = alloc(a, a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i]
  return out
}

/** out[i] = a[i] · b[i] */
export function mul<A extends Floats> (a: A, b: Floats): A {
  const out = alloc(a, a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] * b[i]
  return out
}

/** out[i] = s · a[i] */
export function scale<A extends Floats> (a: A, s: number): A {
  const out = alloc(a, a.length)
  for (let i = 0; i < a.length; i++) out[i] = s * a[i]
  return out
}

/** out[i] = a[i] + s · b[i] */
export function addScaled<A extends Floats> (a: A, b: Floats, s: number): A {
  const out = alloc(a, a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] + s * b[i]
  return out
}

/** dst[i] += src[i] (src may be dst itself: then dst doubles). */
export function addInPlace (dst: Floats, src: Floats): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i]
}

/** t[i] *= s */
export function scaleInPlace (t: Floats, s: number): void {
  for (let i = 0; i < t.length; i++) t[i] *= s
}

export function sigmoid (x: number): number {
  return 1 / (1 + Math.exp(-x))
}

/** silu(x) = x · sigmoid(x) */
export function silu<A extends Floats> (x: A): A {
  const out = alloc(x, x.length)
  for (let i = 0; i < x.length; i++) out[i] = x[i] * sigmoid(x[i])
  return out
}

/** dx = dy · sigmoid(x) · (1 + x · (1 − sigmoid(x))) */
export function siluBackward<A extends Floats> (x: A, dy: Floats): A {
  const out = alloc(x, x.length)
  for (let i = 0; i < x.length; i++) {
    const s = sigmoid(x[i])
    out[i] = dy[i] * s * (1 + x[i] * (1 - s))
  }
  return out
}

export type GeluApprox = 'tanh' | 'erf'

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI)
const GELU_CUBIC = 0.044715
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI)
/** Beyond this |x| erf(x) is ±1 to f64 precision. */
const ERF_SATURATES = 6
/** erfc(x) < 1e-300 beyond this: below f64's normal range. */
const ERFC_UNDERFLOWS = 26
/** Below this |x| the Maclaurin series converges fast enough and loses < 3 digits to cancellation. */
const ERF_SERIES_MAX = 3

/**
 * erf in f64 (JS has no Math.erf): Maclaurin series for |x| < 3, Lentz's continued fraction for
 * erfc beyond; both accurate to ~1e-14, far below the f32 kernels' error.
 */
export function erf (x: number): number {
  const ax = Math.abs(x)
  if (Number.isNaN(x)) return NaN
  if (ax >= ERF_SATURATES) return Math.sign(x)
  if (ax < ERF_SERIES_MAX) {
    // erf(x) = 2/√π · Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = x
    let sum = x
    const x2 = x * x
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n
      const add = term / (2 * n + 1)
      sum += add
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break
    }
    return TWO_OVER_SQRT_PI * sum
  }
  return Math.sign(x) * (1 - erfcContinuedFraction(ax))
}

/** erfc(x) = 1 − erf(x), relatively accurate in the tail x ≥ 3 where 1 − erf(x) would cancel. */
export function erfc (x: number): number {
  if (Number.isNaN(x)) return NaN
  if (Math.abs(x) < ERF_SERIES_MAX) return 1 - erf(x)
  const tail = Math.abs(x) >= ERFC_UNDERFLOWS ? 0 : erfcContinuedFraction(Math.abs(x))
  return x > 0 ? tail : 2 - tail
}

/** erfc(z) for z ≥ 3: exp(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))) by modified Lentz. */
function erfcContinuedFraction (z: number): number {
  const tiny = 1e-300
  let f = z
  let C = z
  let D = 0
  for (let k = 1; k < 500; k++) {
    const an = k / 2
    D = z + an * D
    D = 1 / (Math.abs(D) < tiny ? tiny : D)
    C = z + an / C
    if (Math.abs(C) < tiny) C = tiny
    const delta = C * D
    f *= delta
    if (Math.abs(delta - 1) < 1e-16) break
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f
}

function geluOne (x: number, approx: GeluApprox): number {
  // x·Φ(x) with Φ(x) = erfc(−x/√2)/2: no cancellation for very negative x.
  if (approx === 'erf') return 0.5 * x * erfc(-x / Math.SQRT2)
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))
}

function geluGradOne (x: number, approx: GeluApprox): number {
  if (approx === 'erf') return 0.5 * erfc(-x / Math.SQRT2) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI)
  const t = Math.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x))
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * x * x)
}

/** gelu(x): 'erf' = x·Φ(x) exactly; 'tanh' = PyTorch's approximate='tanh' (GPT-2's gelu_new). */
export function gelu<A extends Floats> (x: A, approx: GeluApprox): A {
  const out = alloc(x, x.length)
  for (let i = 0; i < x.length; i++) out[i] = geluOne(x[i], approx)
  return out
}

/** dx = dy · gelu'(x) */
export function geluBackward<A extends Floats> (x: A, dy: Floats, approx: GeluApprox): A {
  const out = alloc(x, x.length)
  for (let i = 0; i < x.length; i++) out[i] = dy[i] * geluGradOne(x[i], approx)
  return out
}

/** swiglu(gate, up) = silu(gate) · up */
export function swiglu<A extends Floats> (gate: A, up: Floats): A {
  const out = alloc(gate, gate.length)
  for (let i = 0; i < gate.length; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i]
  return out
}

/** dGate = dy · up · silu'(gate); dUp = dy · silu(gate) */
export function swigluBackward<A extends Floats> (gate: A, up: Floats, dy: Floats): { dGate: A, dUp: A } {
  const dGate = alloc(gate, gate.length)
  const dUp = alloc(gate, gate.length)
  for (let i = 0; i < gate.length; i++) {
    const s = sigmoid(gate[i])
    dGate[i] = dy[i] * up[i] * s * (1 + gate[i] * (1 - s))
    dUp[i] = dy[i] * gate[i] * s
  }
  return { dGate, dUp }
}
