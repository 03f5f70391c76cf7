import { beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import type { DType, TypedArray } from '../../web/src/gpu/dtype.ts'
import { ShapeError } from '../../web/src/gpu/errors.ts'
import type { GpuBackend } from '../../web/src/gpu/gpu-backend.ts'
import {
  expertFFN, expertFFNBackward, MOE_KERNELS, moeCombine, moeCombineBackward, moeDispatch, moeGather, moeGatherBackward,
  routerTopK, routerTopKBackward, TOLERANCE
} from '../../web/src/gpu/ops/moe.ts'
import type { Tensor } from '../../web/src/gpu/tensor.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { assertClose } from '../helpers/assert-close.ts'
import { testGpu } from '../helpers/gpu.ts'

let gpu: GpuBackend
beforeAll(async () => { gpu = await testGpu() })

// ---- helpers ----

/** The same data on both backends. */
function pair (data: TypedArray, shape: number[], dtype: DType = 'f32'): { g: Tensor, c: Tensor } {
  return { g: gpu.tensor(data, shape, dtype), c: cpu.tensor(data, shape, dtype) }
}

function f32 (t: Tensor): Float32Array { return t.data as Float32Array }
function i32 (t: Tensor): Int32Array { return t.data as Int32Array }

/** k distinct experts per token, uniformly at random from `pool`. */
function randomExperts (rng: Rng, T: number, k: number, pool: number[]): Int32Array {
  const out = new Int32Array(T * k)
  for (let t = 0; t < T; t++) {
    const left = [...pool]
    for (let j = 0; j < k; j++) out[t * k + j] = left.splice(rng.int(left.length), 1)[0]
  }
  return out
}

function range (n: number): number[] { return Array.from({ length: n }, (_, i) => i) }

/** Σ a·b in f64 (the scalar loss L = Σ dy ⊙ y of the finite-difference checks). */
function dot (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * b[i]
  return s
}

/** Central differences of loss at every element of x (perturbed in place, restored). */
function finiteDiff (x: Float32Array, loss: () => number, eps: number): Float64Array {
  const g = new Float64Array(x.length)
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    x[i] = v + eps
    const xp = x[i]
    const lp = loss()
    x[i] = v - eps
    const xm = x[i]
    const lm = loss()
    x[i] = v
    g[i] = (lp - lm) / (xp - xm)
  }
  return g
}

/**
 * Finite differences of f32 twins: step 1e-2 keeps the f32 rounding noise of L (~1e-7·|L|/step)
 * and the O(step²) truncation error both near 1e-5 at these sizes.
 */
const FD_STEP = 1e-2
const FD_TOL = { atol: 1e-3, rtol: 1e-2 }

/** Scaled like an initialised layer so activations stay O(1). */
function randomWeights (rng: Rng, E: number, C: number, I: number): { w1: Float32Array, w3: Float32Array, w2: Float32Array } {
  return {
    w1: rng.uniform(E * I * C, -1 / Math.sqrt(C), 1 / Math.sqrt(C)),
    w3: rng.uniform(E * I * C, -1 / Math.sqrt(C), 1 / Math.sqrt(C)),
    w2: rng.uniform(E * C * I, -1 / Math.sqrt(I), 1 / Math.sqrt(I))
  }
}

/** The shape grid of the brief: T × E × k with k ≤ E, C and I cycling through odd sizes. */
const DIMS = [6, 10, 33]
const GRID = [1, 3, 17].flatMap(T => [1, 2, 4, 8].flatMap(E => [1, 2].filter(k => k <= E).map(k => ({ T, E, k }))))
  .map((s, i) => ({ ...s, C: DIMS[i % 3], I: DIMS[(i + 1) % 3] }))

it('every MoE kernel variant compiles', async () => {
  for (const [decl, variant] of MOE_KERNELS) await gpu.prepare(decl, variant)
})

// ---- router ----

describe('routerTopK (shaders/moe_router.wgsl)', () => {
  for (const { T, E, k } of GRID) {
    for (const renorm of [true, false]) {
      it(`matches the CPU twin at T=${T} E=${E} k=${k} renormalize=${renorm}`, async () => {
        const rng = new Rng(1000 + T * 100 + E * 10 + k)
        const logits = pair(rng.uniform(T * E, -3, 3), [T, E])
        const ref = routerTopK(logits.c, k, renorm)
        const out = routerTopK(logits.g, k, renorm)
        expect(Array.from(await out.experts.read())).toEqual(Array.from(i32(ref.experts)))
        assertClose(await out.weights.readF32(), f32(ref.weights), { ...TOLERANCE.routerTopK, what: 'weights' })
        for (let t = 0; t < T; t++) {
          const w = f32(ref.weights).subarray(t * k, t * k + k)
          const sum = w.reduce((a, b) => a + b, 0)
          if (renorm) expect(sum).toBeCloseTo(1, 6)
          for (let j = 1; j < k; j++) expect(w[j]).toBeLessThanOrEqual(w[j - 1])
          expect(new Set(i32(ref.experts).subarray(t * k, t * k + k)).size).toBe(k)
        }
      })
    }
  }

  it('breaks ties toward the lower expert index on both backends', async () => {
    const data = new Float32Array([1, 3, 3, 0, /* */ 2, 2, 2, 2, /* */ -1, 5, -1, 5])
    const logits = pair(data, [3, 4])
    for (const be of ['g', 'c'] as const) {
      const r3 = routerTopK(logits[be], 3, false)
      expect(Array.from(await r3.experts.read())).toEqual([1, 2, 0, 0, 1, 2, 1, 3, 0])
      const r2 = routerTopK(logits[be], 2, true)
      expect(Array.from(await r2.experts.read())).toEqual([1, 2, 0, 1, 1, 3])
      assertClose(await r2.weights.readF32(), [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], { atol: 1e-7, rtol: 0, what: `tie weights (${be})` })
    }
  })

  it('weights are the softmax probabilities (renormalize = false) as computed directly', async () => {
    const logits = new Float32Array([0.5, -1, 2, 0.25, 1])
    const z = Array.from(logits).reduce((s, l) => s + Math.exp(l), 0)
    const r = routerTopK(gpu.tensor(logits, [1, 5]), 2, false)
    expect(Array.from(await r.experts.read())).toEqual([2, 4])
    assertClose(await r.weights.readF32(), [Math.exp(2) / z, Math.exp(1) / z], { ...TOLERANCE.routerTopK, what: 'probabilities' })
  })

  for (const { T, E, k } of GRID.filter(s => s.T !== 17)) {
    for (const renorm of [true, false]) {
      it(`backward matches the twin and finite differences at T=${T} E=${E} k=${k} renormalize=${renorm}`, async () => {
        const rng = new Rng(2000 + T * 100 + E * 10 + k)
        const l = rng.uniform(T * E, -2, 2)
        const dw = rng.uniform(T * k)
        const logits = pair(l, [T, E])
        const { experts } = routerTopK(logits.c, k, renorm)
        const dWeights = pair(dw, [T, k])
        const ref = routerTopKBackward(logits.c, experts, dWeights.c, renorm)
        const out = routerTopKBackward(logits.g, gpu.tensor(experts.data, [T, k], 'i32'), dWeights.g, renorm)
        assertClose(await out.readF32(), f32(ref), { ...TOLERANCE.routerTopKBackward, what: 'dlogits' })
        // FD with the choice held fixed: small steps on well-separated random logits keep it.
        const x = new Float32Array(l)
        const fd = finiteDiff(x, () => {
          const r = routerTopK(cpu.tensor(x, [T, E]), k, renorm)
          expect(Array.from(i32(r.experts))).toEqual(Array.from(i32(experts)))
          return dot(f32(r.weights), dw)
        }, 1e-3)
        assertClose(f32(ref), fd, { ...FD_TOL, what: 'dlogits vs finite differences' })
      })
    }
  }
})

// ---- dispatch ----

/** The sort's defining properties, checked from the outputs alone. */
function checkDispatch (experts: Int32Array, E: number, order: Int32Array, slotRow: Int32Array, offsets: Int32Array): void {
  const n = experts.length
  expect(offsets[0]).toBe(0)
  expect(offsets[E]).toBe(n)
  for (let e = 0; e < E; e++) {
    expect(offsets[e + 1] - offsets[e]).toBe(experts.filter(x => x === e).length)
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      expect(experts[order[r]]).toBe(e)
      if (r > offsets[e]) expect(order[r]).toBeGreaterThan(order[r - 1]) // stable
    }
  }
  for (let s = 0; s < n; s++) expect(order[slotRow[s]]).toBe(s)
}

describe('moeDispatch (shaders/moe_dispatch.wgsl)', () => {
  const cases: Array<{ name: string, T: number, k: number, E: number, pool?: number[], withRepeats?: boolean }> = [
    ...GRID.map(s => ({ name: `T=${s.T} E=${s.E} k=${s.k}`, ...s })),
    { name: 'empty experts (only 1 and 6 of 8 used)', T: 17, k: 2, E: 8, pool: [1, 6] },
    { name: 'all slots to one expert', T: 17, k: 1, E: 4, pool: [2] },
    { name: 'chunk boundaries: 3 chunks + 5 slots', T: 3 * 256 + 5, k: 1, E: 3 },
    { name: 'T·k = 20000, E = 64', T: 5000, k: 4, E: 64 },
    { name: 'E = 256 (more experts than a chunk has slots)', T: 500, k: 2, E: 256 },
    { name: 'repeated experts within a token', T: 300, k: 3, E: 5, withRepeats: true }
  ]
  for (const c of cases) {
    it(`matches the CPU twin exactly: ${c.name}`, async () => {
      const rng = new Rng(c.T * 7 + c.E * 3 + c.k)
      const pool = c.pool ?? range(c.E)
      const ex = c.withRepeats === true
        ? Int32Array.from({ length: c.T * c.k }, () => rng.int(c.E))
        : randomExperts(rng, c.T, c.k, pool.length >= c.k ? pool : range(c.E)).map(e => pool[e % pool.length])
      const experts = pair(ex, [c.T, c.k], 'i32')
      const ref = moeDispatch(experts.c, c.E)
      checkDispatch(ex, c.E, i32(ref.order), i32(ref.slotRow), i32(ref.offsets))
      const out = moeDispatch(experts.g, c.E)
      expect(Array.from(await out.offsets.read())).toEqual(Array.from(i32(ref.offsets)))
      expect(Array.from(await out.order.read())).toEqual(Array.from(i32(ref.order)))
      expect(Array.from(await out.slotRow.read())).toEqual(Array.from(i32(ref.slotRow)))
    })
  }

  it('handles T = 0', async () => {
    const out = moeDispatch(gpu.tensor(new Int32Array(0), [0, 2], 'i32'), 4)
    expect(Array.from(await out.offsets.read())).toEqual([0, 0, 0, 0, 0])
    expect(out.order.shape).toEqual([0])
  })
})

// ---- gather ----

describe('moeGather / moeGatherBackward (shaders/moe_gather.wgsl)', () => {
  for (const { T, E, k, C } of GRID) {
    it(`match the twins and finite differences at T=${T} E=${E} k=${k} C=${C}`, async () => {
      const rng = new Rng(3000 + T * 100 + E * 10 + k)
      const { order, slotRow } = moeDispatch(cpu.tensor(randomExperts(rng, T, k, range(E)), [T, k], 'i32'), E)
      const N = T * k
      const x = pair(rng.uniform(T * C), [T, C])
      const ord = pair(i32(order), [N], 'i32')
      const sr = pair(i32(slotRow), [N], 'i32')
      const ref = moeGather(x.c, ord.c, k)
      assertClose(await moeGather(x.g, ord.g, k).readF32(), f32(ref), { ...TOLERANCE.moeGather, what: 'xs' })
      const dxsData = rng.uniform(N * C)
      const dxs = pair(dxsData, [N, C])
      const dref = moeGatherBackward(dxs.c, sr.c, T, k)
      assertClose(await moeGatherBackward(dxs.g, sr.g, T, k).readF32(), f32(dref), { ...TOLERANCE.moeGatherBackward, what: 'dx' })
      const xd = new Float32Array(f32(x.c))
      const fd = finiteDiff(xd, () => dot(f32(moeGather(cpu.tensor(xd, [T, C]), ord.c, k)), dxsData), FD_STEP)
      assertClose(f32(dref), fd, { ...FD_TOL, what: 'dx vs finite differences' })
    })
  }
})

// ---- expert FFN ----

interface FfnCase { name: string, N: number, C: number, I: number, E: number, offsets: number[] }

/** Offsets of a random routing of T tokens, k experts each, from `pool`. */
function routedOffsets (rng: Rng, T: number, k: number, E: number, pool: number[] = range(E)): number[] {
  return Array.from(i32(moeDispatch(cpu.tensor(randomExperts(rng, T, k, pool), [T, k], 'i32'), E).offsets))
}

const FFN_CASES: FfnCase[] = [
  ...GRID.map(({ T, E, k, C, I }) => ({ name: `T=${T} E=${E} k=${k} C=${C} I=${I}`, N: T * k, C, I, E, offsets: routedOffsets(new Rng(T * 31 + E * 7 + k), T, k, E) })),
  { name: 'empty experts (only 1 and 6 of 8)', N: 34, C: 10, I: 6, E: 8, offsets: routedOffsets(new Rng(5), 17, 2, 8, [1, 6]) },
  { name: 'all rows to one expert, across row tiles', N: 40, C: 6, I: 10, E: 4, offsets: [0, 0, 0, 40, 40] },
  { name: 'every tile edge (N=70, C=33, I=40)', N: 70, C: 33, I: 40, E: 3, offsets: [0, 33, 33, 70] },
  // 17 rows per expert: a partial row tile in every expert, the most tiles N rows can need.
  { name: 'a partial row tile in every expert', N: 136, C: 6, I: 10, E: 8, offsets: range(9).map(e => 17 * e) },
  { name: 'rows outside the local experts stay zero', N: 12, C: 10, I: 6, E: 3, offsets: [3, 5, 5, 9] }
]

describe('expertFFN (shaders/moe_ffn_up.wgsl, moe_ffn_down.wgsl)', () => {
  for (const c of FFN_CASES) {
    it(`matches the CPU twin: ${c.name}`, async () => {
      const rng = new Rng(c.N * 13 + c.C + c.I)
      const w = randomWeights(rng, c.E, c.C, c.I)
      const xs = pair(rng.uniform(c.N * c.C), [c.N, c.C])
      const off = pair(Int32Array.from(c.offsets), [c.E + 1], 'i32')
      const w1 = pair(w.w1, [c.E, c.I, c.C])
      const w3 = pair(w.w3, [c.E, c.I, c.C])
      const w2 = pair(w.w2, [c.E, c.C, c.I])
      const ref = expertFFN(xs.c, off.c, w1.c, w3.c, w2.c)
      assertClose(await expertFFN(xs.g, off.g, w1.g, w3.g, w2.g).readF32(), f32(ref), { ...TOLERANCE.expertFFN, what: 'ys' })
      const covered = (r: number): boolean => r >= c.offsets[0] && r < c.offsets[c.E]
      for (let r = 0; r < c.N; r++) {
        const row = f32(ref).subarray(r * c.C, (r + 1) * c.C)
        if (!covered(r)) expect(row.every(v => v === 0)).toBe(true)
      }
    })
  }

  it('the twin is the per-row SwiGLU MLP of the row\'s expert', () => {
    const rng = new Rng(77)
    const [N, C, I, E] = [5, 6, 10, 2]
    const w = randomWeights(rng, E, C, I)
    const xs = rng.uniform(N * C)
    const offsets = [0, 2, 5]
    const ys = f32(expertFFN(cpu.tensor(xs, [N, C]), cpu.tensor(offsets, [E + 1], 'i32'), cpu.tensor(w.w1, [E, I, C]), cpu.tensor(w.w3, [E, I, C]), cpu.tensor(w.w2, [E, C, I])))
    for (let r = 0; r < N; r++) {
      const e = r < 2 ? 0 : 1
      const y = swigluMlp(xs.subarray(r * C, (r + 1) * C), w, e, C, I)
      assertClose(ys.subarray(r * C, (r + 1) * C), y, { atol: 1e-6, rtol: 1e-6, what: `row ${r}` })
    }
  })

  it('a peer hosting a subset of experts computes the same rows with its local stack', async () => {
    const rng = new Rng(91)
    const [T, k, E, C, I] = [17, 2, 8, 10, 6]
    const hosted = [2, 5]
    const w = randomWeights(rng, E, C, I)
    const ex = randomExperts(rng, T, k, range(E))
    const { offsets } = moeDispatch(cpu.tensor(ex, [T, k], 'i32'), E)
    const off = i32(offsets)
    const N = T * k
    const xs = rng.uniform(N * C)
    const full = f32(expertFFN(cpu.tensor(xs, [N, C]), offsets, cpu.tensor(w.w1, [E, I, C]), cpu.tensor(w.w3, [E, I, C]), cpu.tensor(w.w2, [E, C, I])))
    // The peer receives only its experts' rows and weights, and builds offsets for them.
    const rows = hosted.flatMap(e => range(off[e + 1] - off[e]).map(i => off[e] + i))
    const localOffsets = [0]
    for (const e of hosted) localOffsets.push(localOffsets[localOffsets.length - 1] + off[e + 1] - off[e])
    const pick = (src: Float32Array, per: number, idx: number[]): Float32Array => {
      const out = new Float32Array(idx.length * per)
      idx.forEach((i, n) => out.set(src.subarray(i * per, (i + 1) * per), n * per))
      return out
    }
    const ys = await expertFFN(
      gpu.tensor(pick(xs, C, rows), [rows.length, C]), gpu.tensor(localOffsets, [hosted.length + 1], 'i32'),
      gpu.tensor(pick(w.w1, I * C, hosted), [hosted.length, I, C]), gpu.tensor(pick(w.w3, I * C, hosted), [hosted.length, I, C]),
      gpu.tensor(pick(w.w2, C * I, hosted), [hosted.length, C, I])
    ).readF32()
    expect(rows.length).toBeGreaterThan(0)
    assertClose(ys, pick(full, C, rows), { ...TOLERANCE.expertFFN, what: 'local expert rows' })
  })
})

/** One expert's MLP on one row, written out directly: w2·(silu(w1·x) ⊙ (w3·x)). */
function swigluMlp (x: ArrayLike<number>, w: { w1: Float32Array, w3: Float32Array, w2: Float32Array }, e: number, C: number, I: number): Float64Array {
  const h = new Float64Array(I)
  for (let i = 0; i < I; i++) {
    let a = 0
    let b = 0
    for (let c = 0; c < C; c++) { a += w.w1[(e * I + i) * C + c] * x[c]; b += w.w3[(e * I + i) * C + c] * x[c] }
    h[i] = a / (1 + Math.exp(-a)) * b
  }
  const y = new Float64Array(C)
  for (let c = 0; c < C; c++) for (let i = 0; i < I; i++) y[c] += w.w2[(e * C + c) * I + i] * h[i]
  return y
}

describe('expertFFNBackward (shaders/moe_ffn_backward_*.wgsl)', () => {
  for (const c of FFN_CASES) {
    it(`matches the CPU twin: ${c.name}`, async () => {
      const rng = new Rng(c.N * 17 + c.C + c.I)
      const w = randomWeights(rng, c.E, c.C, c.I)
      const xs = pair(rng.uniform(c.N * c.C), [c.N, c.C])
      const dys = pair(rng.uniform(c.N * c.C), [c.N, c.C])
      const off = pair(Int32Array.from(c.offsets), [c.E + 1], 'i32')
      const w1 = pair(w.w1, [c.E, c.I, c.C])
      const w3 = pair(w.w3, [c.E, c.I, c.C])
      const w2 = pair(w.w2, [c.E, c.C, c.I])
      const ref = expertFFNBackward(xs.c, off.c, w1.c, w3.c, w2.c, dys.c)
      const out = expertFFNBackward(xs.g, off.g, w1.g, w3.g, w2.g, dys.g)
      for (const name of ['dxs', 'dw1', 'dw3', 'dw2'] as const) {
        assertClose(await out[name].readF32(), f32(ref[name]), { ...TOLERANCE.expertFFNBackward, what: name })
      }
    })
  }

  it('is bit-for-bit deterministic on the GPU', async () => {
    const c = FFN_CASES.find(x => x.N === 70)!
    const rng = new Rng(5)
    const w = randomWeights(rng, c.E, c.C, c.I)
    const args = [
      gpu.tensor(rng.uniform(c.N * c.C), [c.N, c.C]), gpu.tensor(c.offsets, [c.E + 1], 'i32'),
      gpu.tensor(w.w1, [c.E, c.I, c.C]), gpu.tensor(w.w3, [c.E, c.I, c.C]), gpu.tensor(w.w2, [c.E, c.C, c.I]),
      gpu.tensor(rng.uniform(c.N * c.C), [c.N, c.C])
    ] as const
    const a = expertFFNBackward(...args)
    const b = expertFFNBackward(...args)
    for (const name of ['dxs', 'dw1', 'dw3', 'dw2'] as const) {
      expect(Array.from(await a[name].readF32())).toEqual(Array.from(await b[name].readF32()))
    }
  })

  it('the twin matches finite differences of the forward twin (one expert empty)', () => {
    const rng = new Rng(123)
    const [N, C, I, E] = [5, 6, 10, 3]
    const offsets = cpu.tensor([0, 2, 2, 5], [E + 1], 'i32')
    const w = randomWeights(rng, E, C, I)
    const xs = rng.uniform(N * C)
    const dys = rng.uniform(N * C)
    const loss = (): number => dot(f32(expertFFN(cpu.tensor(xs, [N, C]), offsets, cpu.tensor(w.w1, [E, I, C]), cpu.tensor(w.w3, [E, I, C]), cpu.tensor(w.w2, [E, C, I]))), dys)
    const g = expertFFNBackward(cpu.tensor(xs, [N, C]), offsets, cpu.tensor(w.w1, [E, I, C]), cpu.tensor(w.w3, [E, I, C]), cpu.tensor(w.w2, [E, C, I]), cpu.tensor(dys, [N, C]))
    assertClose(f32(g.dxs), finiteDiff(xs, loss, FD_STEP), { ...FD_TOL, what: 'dxs vs FD' })
    assertClose(f32(g.dw1), finiteDiff(w.w1, loss, FD_STEP), { ...FD_TOL, what: 'dw1 vs FD' })
    assertClose(f32(g.dw3), finiteDiff(w.w3, loss, FD_STEP), { ...FD_TOL, what: 'dw3 vs FD' })
    assertClose(f32(g.dw2), finiteDiff(w.w2, loss, FD_STEP), { ...FD_TOL, what: 'dw2 vs FD' })
    expect(f32(g.dw1).subarray(I * C, 2 * I * C).every(v => v === 0)).toBe(true) // expert 1 has no rows
  })
})

// ---- combine ----

describe('moeCombine / moeCombineBackward (shaders/moe_combine*.wgsl)', () => {
  for (const { T, E, k, C } of GRID) {
    it(`match the twins and finite differences at T=${T} E=${E} k=${k} C=${C}`, async () => {
      const rng = new Rng(4000 + T * 100 + E * 10 + k)
      const N = T * k
      const { slotRow } = moeDispatch(cpu.tensor(randomExperts(rng, T, k, range(E)), [T, k], 'i32'), E)
      const sr = pair(i32(slotRow), [N], 'i32')
      const ysData = rng.uniform(N * C)
      const wData = rng.uniform(T * k, 0, 1)
      const doutData = rng.uniform(T * C)
      const ys = pair(ysData, [N, C])
      const weights = pair(wData, [T, k])
      const dout = pair(doutData, [T, C])
      const ref = moeCombine(ys.c, sr.c, weights.c)
      assertClose(await moeCombine(ys.g, sr.g, weights.g).readF32(), f32(ref), { ...TOLERANCE.moeCombine, what: 'out' })
      const dref = moeCombineBackward(ys.c, sr.c, weights.c, dout.c)
      const dout2 = moeCombineBackward(ys.g, sr.g, weights.g, dout.g)
      assertClose(await dout2.dys.readF32(), f32(dref.dys), { ...TOLERANCE.moeCombineBackward, what: 'dys' })
      assertClose(await dout2.dWeights.readF32(), f32(dref.dWeights), { ...TOLERANCE.moeCombineBackward, what: 'dWeights' })
      const loss = (): number => dot(f32(moeCombine(cpu.tensor(ysData, [N, C]), sr.c, cpu.tensor(wData, [T, k]))), doutData)
      assertClose(f32(dref.dys), finiteDiff(ysData, loss, FD_STEP), { ...FD_TOL, what: 'dys vs FD' })
      assertClose(f32(dref.dWeights), finiteDiff(wData, loss, FD_STEP), { ...FD_TOL, what: 'dWeights vs FD' })
    })
  }
})

// ---- the whole layer ----

/** A Mixtral MoE layer on logits, token by token, written out directly (no dispatch). */
function directMoeLayer (x: Float32Array, logits: Float32Array, w: { w1: Float32Array, w3: Float32Array, w2: Float32Array }, T: number, C: number, I: number, E: number, k: number): Float64Array {
  const out = new Float64Array(T * C)
  for (let t = 0; t < T; t++) {
    const l = Array.from(logits.subarray(t * E, (t + 1) * E))
    const ranked = range(E).sort((a, b) => l[b] - l[a] || a - b).slice(0, k)
    const z = ranked.reduce((s, e) => s + Math.exp(l[e]), 0)
    for (const e of ranked) {
      const y = swigluMlp(x.subarray(t * C, (t + 1) * C), w, e, C, I)
      for (let c = 0; c < C; c++) out[t * C + c] += Math.exp(l[e]) / z * y[c]
    }
  }
  return out
}

describe('MoE layer end to end', () => {
  const layerCases = [{ T: 17, E: 8, k: 2, C: 33, I: 10 }, { T: 3, E: 4, k: 1, C: 6, I: 10 }, { T: 40, E: 4, k: 2, C: 10, I: 33 }]
  for (const { T, E, k, C, I } of layerCases) {
    it(`router → dispatch → gather → expertFFN → combine on the GPU equals a per-token loop (T=${T} E=${E} k=${k})`, async () => {
      const rng = new Rng(T + E + k + C)
      const xData = rng.uniform(T * C)
      const lData = rng.uniform(T * E, -2, 2)
      const w = randomWeights(rng, E, C, I)
      const ref = directMoeLayer(xData, lData, w, T, C, I, E, k)
      for (const be of [gpu, cpu]) {
        const x = be.tensor(xData, [T, C])
        const { weights, experts } = routerTopK(be.tensor(lData, [T, E]), k)
        const { order, slotRow, offsets } = moeDispatch(experts, E)
        const xs = moeGather(x, order, k)
        const ys = expertFFN(xs, offsets, be.tensor(w.w1, [E, I, C]), be.tensor(w.w3, [E, I, C]), be.tensor(w.w2, [E, C, I]))
        const out = moeCombine(ys, slotRow, weights)
        assertClose(await out.readF32(), ref, { ...TOLERANCE.expertFFN, what: `layer output (${be.kind})` })
      }
    })
  }

  it('the layer backward on the GPU matches finite differences of the per-token loop', async () => {
    const [T, E, k, C, I] = [5, 4, 2, 6, 10]
    const rng = new Rng(808)
    const xData = rng.uniform(T * C)
    const lData = rng.uniform(T * E, -2, 2)
    const dout = rng.uniform(T * C)
    const w = randomWeights(rng, E, C, I)
    const x = gpu.tensor(xData, [T, C])
    const logits = gpu.tensor(lData, [T, E])
    const w1 = gpu.tensor(w.w1, [E, I, C])
    const w3 = gpu.tensor(w.w3, [E, I, C])
    const w2 = gpu.tensor(w.w2, [E, C, I])
    const { weights, experts } = routerTopK(logits, k)
    const { order, slotRow, offsets } = moeDispatch(experts, E)
    const xs = moeGather(x, order, k)
    const ys = expertFFN(xs, offsets, w1, w3, w2)
    const { dys, dWeights } = moeCombineBackward(ys, slotRow, weights, gpu.tensor(dout, [T, C]))
    const g = expertFFNBackward(xs, offsets, w1, w3, w2, dys)
    const dx = await moeGatherBackward(g.dxs, slotRow, T, k).readF32()
    const dlogits = await routerTopKBackward(logits, experts, dWeights).readF32()
    const loss = (): number => dot(directMoeLayer(xData, lData, w, T, C, I, E, k), dout)
    assertClose(dx, finiteDiff(xData, loss, 1e-3), { ...FD_TOL, what: 'dx vs FD' })
    assertClose(dlogits, finiteDiff(lData, loss, 1e-3), { ...FD_TOL, what: 'dlogits vs FD' })
    assertClose(await g.dw2.readF32(), finiteDiff(w.w2, loss, 1e-3), { ...FD_TOL, what: 'dw2 vs FD' })
  })
})

// ---- bad input ----

describe('MoE ops reject bad input with ShapeError naming the op and shapes', () => {
  it('routerTopK: k > E, k = 0, wrong rank and dtype', () => {
    const logits = gpu.tensor(new Float32Array(6), [3, 2])
    expect(() => routerTopK(logits, 3)).toThrow(ShapeError)
    expect(() => routerTopK(logits, 3)).toThrow(/routerTopK: k=3 must be an integer in \[1, E=2\] for logits \(3, 2\)/)
    expect(() => routerTopK(logits, 0)).toThrow(/routerTopK: k=0/)
    expect(() => routerTopK(gpu.tensor(new Float32Array(6), [6]), 1)).toThrow(/routerTopK: logits must have rank 2, got \(6\)/)
    expect(() => routerTopK(gpu.tensor(new Int32Array(6), [3, 2], 'i32'), 1)).toThrow(/routerTopK: logits must be f32, got i32/)
  })

  it('routerTopKBackward: mismatched shapes and out-of-range experts', () => {
    const logits = cpu.tensor(new Float32Array(8), [2, 4])
    expect(() => routerTopKBackward(logits, cpu.tensor([0, 1, 2], [3, 1], 'i32'), cpu.tensor([1, 1, 1], [3, 1]))).toThrow(/routerTopKBackward: experts must have shape \(2, \*\), got \(3, 1\)/)
    expect(() => routerTopKBackward(logits, cpu.tensor([0, 1], [2, 1], 'i32'), cpu.tensor([1, 1, 1, 1], [2, 2]))).toThrow(/routerTopKBackward: dWeights must have shape \(2, 1\), got \(2, 2\)/)
    expect(() => routerTopKBackward(logits, cpu.tensor([0, 4], [2, 1], 'i32'), cpu.tensor([1, 1], [2, 1]))).toThrow(/routerTopKBackward: experts\[1\] = 4 is outside \[0, 4\)/)
  })

  it('moeDispatch: wrong dtype, bad E, ids out of range', () => {
    expect(() => moeDispatch(gpu.tensor([0, 1], [1, 2]), 2)).toThrow(/moeDispatch: experts must be i32, got f32/)
    expect(() => moeDispatch(gpu.tensor([0, 1], [1, 2], 'i32'), 0)).toThrow(/moeDispatch: E \(for experts \(1, 2\)\) must be an integer ≥ 1, got 0/)
    expect(() => moeDispatch(cpu.tensor([0, 5], [1, 2], 'i32'), 4)).toThrow(/moeDispatch: experts\[1\] = 5 is outside \[0, 4\)/)
  })

  it('moeGather / moeGatherBackward: order and slotRow lengths', () => {
    const x = gpu.tensor(new Float32Array(12), [3, 4])
    expect(() => moeGather(x, gpu.tensor([0, 1, 2], [3], 'i32'), 2)).toThrow(/moeGather: order \(for x \(3, 4\), k=2\) must have shape \(6\), got \(3\)/)
    expect(() => moeGather(x, gpu.tensor([0, 1, 2, 3, 4, 5], [6]), 2)).toThrow(/moeGather: order must be i32, got f32/)
    expect(() => moeGatherBackward(gpu.tensor(new Float32Array(20), [5, 4]), gpu.tensor(new Int32Array(6), [6], 'i32'), 3, 2)).toThrow(/moeGatherBackward: dxs \(for T=3, k=2\) must have shape \(6, 4\), got \(5, 4\)/)
  })

  it('expertFFN / expertFFNBackward: weight and offset shapes, dtypes, bad offsets', () => {
    const [N, C, I, E] = [4, 6, 10, 2]
    const xs = gpu.tensor(new Float32Array(N * C), [N, C])
    const off = gpu.tensor([0, 2, 4], [E + 1], 'i32')
    const w1 = gpu.tensor(new Float32Array(E * I * C), [E, I, C])
    const w2 = gpu.tensor(new Float32Array(E * C * I), [E, C, I])
    expect(() => expertFFN(xs, off, w1, w1, w1)).toThrow(ShapeError)
    expect(() => expertFFN(xs, off, w1, w1, w1)).toThrow(/expertFFN: w2 \(for w1 \(2, 10, 6\)\) must have shape \(2, 6, 10\), got \(2, 10, 6\)/)
    expect(() => expertFFN(xs, off, w2, w2, w1)).toThrow(/expertFFN: w1 \(2, 6, 10\) must be \(E, I, C=6\) for xs \(4, 6\)/)
    expect(() => expertFFN(xs, gpu.tensor([0, 4], [2], 'i32'), w1, w1, w2)).toThrow(/expertFFN: offsets \(for 2 experts\) must have shape \(3\), got \(2\)/)
    expect(() => expertFFN(xs, gpu.tensor([0, 2, 4], [3]), w1, w1, w2)).toThrow(/expertFFN: offsets must be i32, got f32/)
    const c = (t: number[], s: number[], d: DType = 'f32'): Tensor => cpu.tensor(t, s, d)
    const cw1 = cpu.tensor(new Float32Array(E * I * C), [E, I, C])
    const cw2 = cpu.tensor(new Float32Array(E * C * I), [E, C, I])
    expect(() => expertFFN(cpu.tensor(new Float32Array(N * C), [N, C]), c([0, 3, 2], [3], 'i32'), cw1, cw1, cw2)).toThrow(/expertFFN: offsets must be non-decreasing within \[0, N=4\], got \[0, 3, 2\]/)
    expect(() => expertFFNBackward(xs, off, w1, w1, w2, gpu.tensor(new Float32Array(C), [1, C]))).toThrow(/expertFFNBackward: dys \(like xs \(4, 6\)\) must have shape \(4, 6\), got \(1, 6\)/)
    expect(() => expertFFN(xs, off, cw1, cw1, cw2)).toThrow(/expertFFN: inputs live on different backends/)
  })

  it('moeCombine / moeCombineBackward: ys, slotRow and dout shapes', () => {
    const ys = gpu.tensor(new Float32Array(24), [6, 4])
    const sr = gpu.tensor(new Int32Array(6), [6], 'i32')
    expect(() => moeCombine(ys, sr, gpu.tensor(new Float32Array(4), [2, 2]))).toThrow(/moeCombine: ys \(for weights \(2, 2\)\) must have shape \(4, 4\), got \(6, 4\)/)
    expect(() => moeCombine(ys, gpu.tensor(new Int32Array(5), [5], 'i32'), gpu.tensor(new Float32Array(6), [3, 2]))).toThrow(/moeCombine: slotRow \(for weights \(3, 2\)\) must have shape \(6\), got \(5\)/)
    expect(() => moeCombineBackward(ys, sr, gpu.tensor(new Float32Array(6), [3, 2]), gpu.tensor(new Float32Array(8), [2, 4]))).toThrow(/moeCombineBackward: dout \(for weights \(3, 2\)\) must have shape \(3, 4\), got \(2, 4\)/)
    expect(() => moeCombine(cpu.tensor(new Float32Array(24), [6, 4]), cpu.tensor([0, 1, 2, 3, 4, 6], [6], 'i32'), cpu.tensor(new Float32Array(6), [3, 2]))).toThrow(/moeCombine: slotRow\[5\] = 6 is outside \[0, 6\)/)
  })
})
