/**
 * Finite-difference gradient checks for backward twins. The forward twin runs in f64
 * (Float64Array in, Float64Array out), so central differences with a small step are accurate
 * to ~1e-9 and a backward twin can be held to a tight tolerance.
 */

/** Default central-difference step: h² truncation and 1e-16/h rounding are both ~1e-10. */
export const FD_STEP = 1e-5

/** ∂f/∂x by central differences; x is restored afterwards. */
export function numericGrad (f: (x: Float64Array) => number, x: Float64Array, h = FD_STEP): Float64Array {
  const g = new Float64Array(x.length)
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]
    x[i] = x0 + h
    const fp = f(x)
    x[i] = x0 - h
    const fm = f(x)
    x[i] = x0
    g[i] = (fp - fm) / (2 * h)
  }
  return g
}

/** Σ a[i]·b[i] in f64: turns a tensor-valued forward into the scalar L = ⟨dy, y⟩ whose gradient the backward returns. */
export function dot (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * b[i]
  return s
}

/** Copies into a Float64Array. */
export function f64 (a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a)
}
