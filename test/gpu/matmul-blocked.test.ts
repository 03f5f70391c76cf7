import { describe, expect, it } from 'vitest'
import { matmul, type MatmulDims } from '../../web/src/gpu/cpu/matmul.ts'
import { matmulBlocked } from '../../web/src/gpu/cpu/matmul-blocked.ts'
import { Rng } from '../../web/src/util/rng.ts'

/** Indices where two f32 arrays differ bit for bit (-0 vs +0 and NaN payloads included). */
function bitDiffs (x: Float32Array, y: Float32Array): number[] {
  const xb = new Uint32Array(x.buffer, x.byteOffset, x.length)
  const yb = new Uint32Array(y.buffer, y.byteOffset, y.length)
  const out: number[] = []
  for (let i = 0; i < xb.length; i++) if (xb[i] !== yb[i]) out.push(i)
  return out
}

/** (M, N, K): 1-element, below / at / past the 4-row and 4-column blocks, and byte-llama's decode shapes. */
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 3, 5], [1, 4, 7], [1, 5, 2], [3, 7, 5], [4, 4, 4], [5, 9, 3], [7, 3, 1], [8, 256, 96], [9, 13, 33], [33, 65, 17], [1, 256, 96], [2, 96, 256]
]

describe('matmulBlocked (cpu/matmul-blocked.ts) equals the twin bit for bit', () => {
  for (const [M, N, K] of SHAPES) {
    it(`M ${M}, N ${N}, K ${K}: every layout, batch, bias and alpha`, () => {
      const rng = new Rng(M * 10007 + N * 101 + K)
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const [B, bBatched] of [[1, false], [3, false], [2, true]] as Array<[number, boolean]>) {
            const d: MatmulDims = { B, M, N, K, transA, transB, bBatched }
            const a = rng.uniform(B * M * K)
            const b = rng.uniform((bBatched ? B : 1) * K * N)
            const bias = rng.uniform(N)
            for (const [withBias, alpha] of [[false, 1], [true, 1], [true, 0.37], [false, -2.5]] as Array<[boolean, number]>) {
              const ref = matmul(a, b, d, withBias ? bias : undefined, alpha)
              const got = matmulBlocked(a, b, d, withBias ? bias : undefined, alpha)
              expect(got.length).toBe(ref.length)
              expect(bitDiffs(got, ref), JSON.stringify({ ...d, withBias, alpha })).toEqual([])
            }
          }
        }
      }
    })
  }

  it('keeps the twin\'s signed zeros, infinities and NaNs', () => {
    // Row 0 sums to -0 (→ +0 with the `+ 0` of no bias), row 1 overflows to ±Infinity, row 2 holds a NaN.
    const K = 2
    const a = new Float32Array([-0, -0, 3e38, 3e38, Number.NaN, 1, 1, -1, 0, 0])
    const b = new Float32Array([1, 1, 1, -1, 1e30, 2]) // (N = 3, K) stored transposed
    for (const M of [1, 4, 5]) {
      const d: MatmulDims = { B: 1, M, N: 3, K, transA: false, transB: true, bBatched: false }
      const aM = a.subarray(0, M * K)
      expect(bitDiffs(matmulBlocked(aM, b, d), matmul(aM, b, d))).toEqual([])
      expect(bitDiffs(matmulBlocked(aM, b, d, new Float32Array([-0, -0, -0])), matmul(aM, b, d, new Float32Array([-0, -0, -0])))).toEqual([])
    }
  })
})
