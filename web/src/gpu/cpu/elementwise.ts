/** CPU twins of shaders/elementwise.wgsl: plain loops, the definition of each op. */

/** out[i] = a[i] + b[i] */
export function add (a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i]
  return out
}
