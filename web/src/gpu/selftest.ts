import type { Backend } from './backend.ts'
import { cpu } from './cpu-backend.ts'
import type { GpuBackend } from './gpu-backend.ts'
import { Tensor, tidy } from './tensor.ts'
import { Rng } from '../util/rng.ts'
import * as attn from './ops/attention.ts'
import * as ew from './ops/elementwise.ts'
import * as emb from './ops/embedding.ts'
import * as loss from './ops/loss.ts'
import * as optim from './ops/optim.ts'
import * as sm from './ops/softmax.ts'
import * as mm from './ops/matmul.ts'
import * as moe from './ops/moe.ts'
import * as norm from './ops/norm.ts'
import * as quant from './ops/quant.ts'
import * as rope from './ops/rope.ts'

/**
 * The page's kernel self-test: every kernel family runs once on small odd shapes on this
 * adapter and is compared with its CPU twin under the op's declared tolerance. It catches a
 * driver that miscompiles a shader before the peer serves or trains anything.
 */

type Tol = { readonly atol: number, readonly rtol: number }
type Out = Tensor | Record<string, Tensor> | Array<Tensor | Record<string, Tensor>>

export interface SelfTestCase {
  family: string
  name: string
  tol: Tol
  /** Builds inputs from rng on `be` and runs the op; called once per backend with equal seeds. */
  run: (be: Backend, rng: Rng) => Out
}

export interface SelfTestResult {
  family: string
  name: string
  ok: boolean
  /** Largest |gpu − cpu| over all outputs. */
  maxErr: number
  /** Wall time of the GPU run including readback. */
  ms: number
  error?: string
}

const rand = (be: Backend, rng: Rng, shape: number[]): Tensor => be.tensor(rng.uniform(shape.reduce((a, b) => a * b, 1)), shape)
const ints = (be: Backend, values: number[]): Tensor => be.tensor(Int32Array.from(values), [values.length], 'i32')

export const SELF_TESTS: SelfTestCase[] = [
  { family: 'elementwise', name: 'add', tol: ew.TOLERANCE.add, run: (be, r) => ew.add(rand(be, r, [37]), rand(be, r, [37])) },
  { family: 'elementwise', name: 'swiglu + backward', tol: ew.TOLERANCE.swigluBackward, run: (be, r) => { const g = rand(be, r, [5, 13]); const u = rand(be, r, [5, 13]); return [ew.swiglu(g, u), ew.swigluBackward(g, u, rand(be, r, [5, 13]))] } },
  { family: 'elementwise', name: 'gelu (erf)', tol: ew.TOLERANCE.gelu, run: (be, r) => ew.gelu(rand(be, r, [71]), 'erf') },
  { family: 'matmul', name: 'matmul 33×17·17×9 + bias', tol: mm.TOLERANCE.matmul, run: (be, r) => mm.matmul(rand(be, r, [33, 17]), rand(be, r, [17, 9]), { bias: rand(be, r, [9]) }) },
  { family: 'matmul', name: 'linear GEMV (M = 1)', tol: mm.TOLERANCE.linear, run: (be, r) => mm.linear(rand(be, r, [1, 65]), rand(be, r, [31, 65])) },
  { family: 'matmul', name: 'batched transA·transB', tol: mm.TOLERANCE.matmul, run: (be, r) => mm.matmul(rand(be, r, [2, 7, 5]), rand(be, r, [2, 3, 7]), { transA: true, transB: true }) },
  { family: 'matmul', name: 'naive', tol: mm.TOLERANCE.matmulNaive, run: (be, r) => mm.matmulNaive(rand(be, r, [9, 11]), rand(be, r, [11, 6])) },
  { family: 'quant', name: 'int8 blocks: quantise + dequantise', tol: quant.TOLERANCE.dequantizeQ8, run: (be, r) => { const q = quant.quantizeQ8(rand(be, r, [130]), 64); return [q, quant.dequantizeQ8(q)] } },
  { family: 'quant', name: 'Q8_0 matmul', tol: quant.TOLERANCE.matmulQ8, run: (be, r) => quant.matmulQ8(rand(be, r, [3, 64]), quant.toQ8_0(rand(be, r, [5, 64]))) },
  { family: 'norm', name: 'rmsnorm + backward', tol: norm.TOLERANCE.rmsnormBackward, run: (be, r) => { const x = rand(be, r, [3, 67]); const w = rand(be, r, [67]); return [norm.rmsnorm(x, w, 1e-5), norm.rmsnormBackward(x, w, rand(be, r, [3, 67]), 1e-5)] } },
  { family: 'norm', name: 'layernorm', tol: norm.TOLERANCE.layernorm, run: (be, r) => norm.layernorm(rand(be, r, [4, 33]), rand(be, r, [33]), rand(be, r, [33]), 1e-5) },
  { family: 'softmax', name: 'softmax + backward', tol: sm.TOLERANCE.softmaxBackward, run: (be, r) => { const y = sm.softmax(rand(be, r, [3, 29])); return [y, sm.softmaxBackward(y, rand(be, r, [3, 29]))] } },
  { family: 'loss', name: 'cross-entropy + backward (V = 257)', tol: loss.TOLERANCE.crossEntropyBackward, run: (be, r) => { const l = rand(be, r, [4, 257]); const t = ints(be, [3, 256, -100, 0]); return [loss.crossEntropy(l, t), loss.crossEntropyBackward(l, t)] } },
  { family: 'embedding', name: 'gather + scatter-add backward', tol: emb.TOLERANCE.embeddingBackward, run: (be, r) => { const ids = ints(be, [2, 0, 2, 5, 2]); return [emb.embedding(ids, rand(be, r, [6, 7])), emb.embeddingBackward(ids, rand(be, r, [5, 7]), 6)] } },
  {
    family: 'optim', name: 'AdamW step + sum of squares', tol: optim.TOLERANCE.adamw,
    run: (be, r) => {
      const p = rand(be, r, [53]); const m = rand(be, r, [53]); const v = be.tensor(r.uniform(53, 0, 1), [53])
      optim.adamw(p, rand(be, r, [53]), m, v, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 3 })
      return [p, m, v, optim.sumSquares(p)]
    }
  },
  { family: 'rope', name: 'rope θ=10000', tol: rope.TOLERANCE.rope, run: (be, r) => rope.rope(rand(be, r, [5, 3, 8]), ints(be, [0, 1, 2, 30, 511]), 10000) },
  {
    family: 'attention', name: 'causal GQA prefill + backward', tol: attn.TOLERANCE.attentionBackward,
    run: (be, r) => {
      const q = rand(be, r, [5, 4, 8]); const k = rand(be, r, [5, 2, 8]); const v = rand(be, r, [5, 2, 8])
      const f = attn.attention(q, k, v)
      return [f.out, f.lse, attn.attentionBackward(q, k, v, f.out, f.lse, rand(be, r, [5, 4, 8]))]
    }
  },
  {
    family: 'attention', name: 'decode against a KV cache', tol: attn.TOLERANCE.attention,
    run: (be, r) => {
      const cache = be.zeros([9, 2, 8])
      attn.kvWrite(cache, rand(be, r, [6, 2, 8]), 0)
      return attn.attention(rand(be, r, [1, 4, 8]), cache, cache, { kvLen: 6 }).out
    }
  },
  {
    family: 'moe', name: 'router → dispatch → experts → combine', tol: moe.TOLERANCE.expertFFN,
    run: (be, r) => {
      const T = 7; const E = 4; const k = 2; const C = 10; const I = 6
      const x = rand(be, r, [T, C])
      const route = moe.routerTopK(rand(be, r, [T, E]), k)
      const d = moe.moeDispatch(route.experts, E)
      const ys = moe.expertFFN(moe.moeGather(x, d.order, k), d.offsets, rand(be, r, [E, I, C]), rand(be, r, [E, I, C]), rand(be, r, [E, C, I]))
      return [route.weights, route.experts, d.offsets, moe.moeCombine(ys, d.slotRow, route.weights)]
    }
  }
]

/** Flattens nested results ({dx, dw} inside arrays) into a list of tensors. */
function flat (o: Out): Tensor[] {
  if (o instanceof Tensor) return [o]
  if (Array.isArray(o)) return o.flatMap(flat)
  return Object.values(o)
}

async function readAll (ts: Tensor[]): Promise<Float64Array[]> {
  const out: Float64Array[] = []
  for (const t of ts) out.push(Float64Array.from(await t.read() as ArrayLike<number>))
  return out
}

/** Runs one case on the GPU and on the CPU twins and compares. Never throws. */
export async function runSelfTest (gpu: GpuBackend, c: SelfTestCase, seed = 7): Promise<SelfTestResult> {
  const t0 = performance.now()
  try {
    const gOut = tidy(() => flat(c.run(gpu, new Rng(seed))))
    const g = await readAll(gOut)
    const ms = performance.now() - t0
    const cOut = tidy(() => flat(c.run(cpu, new Rng(seed))))
    const ref = await readAll(cOut)
    for (const t of [...gOut, ...cOut]) t.dispose()
    let maxErr = 0
    let ok = g.length === ref.length
    for (let i = 0; ok && i < ref.length; i++) {
      if (g[i].length !== ref[i].length) { ok = false; break }
      for (let j = 0; j < ref[i].length; j++) {
        const e = Math.abs(g[i][j] - ref[i][j])
        if (Number.isFinite(ref[i][j])) maxErr = Math.max(maxErr, e)
        if (!(e <= c.tol.atol + c.tol.rtol * Math.abs(ref[i][j])) && Number.isFinite(ref[i][j])) ok = false
      }
    }
    return { family: c.family, name: c.name, ok, maxErr, ms }
  } catch (e) {
    return { family: c.family, name: c.name, ok: false, maxErr: NaN, ms: performance.now() - t0, error: (e as Error).message }
  }
}

/** Runs every case, reporting each as it finishes. */
export async function runSelfTests (gpu: GpuBackend, onResult?: (r: SelfTestResult) => void): Promise<SelfTestResult[]> {
  const results: SelfTestResult[] = []
  for (const c of SELF_TESTS) {
    const r = await runSelfTest(gpu, c)
    results.push(r)
    onResult?.(r)
  }
  return results
}
