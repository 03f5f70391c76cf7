/** CPU twin of shaders/copy_vec4.wgsl (CONTRIBUTING.md STYLE 1): out = a, element by element. */
export function copyVec4 (a: Float32Array): Float32Array {
  const out = new Float32Array(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i]
  return out
}
