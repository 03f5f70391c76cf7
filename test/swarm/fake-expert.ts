import { Rng } from '../../web/src/util/rng.ts'

/**
 * Expert e of layer l over rows of width C: y = tanh(x · w_{l,e}) · x (row-wise), a cheap,
 * distinct-per-expert stand-in for a SwiGLU FFN in the remote-expert tests.
 */
export function fakeExpert (C: number, l: number, e: number, rows: Float32Array, n: number): Float32Array {
  const w = new Rng(100 * l + e + 1).uniform(C)
  const y = new Float32Array(n * C)
  for (let r = 0; r < n; r++) {
    let d = 0
    for (let i = 0; i < C; i++) d += rows[r * C + i] * w[i]
    for (let i = 0; i < C; i++) y[r * C + i] = Math.tanh(d) * rows[r * C + i]
  }
  return y
}
