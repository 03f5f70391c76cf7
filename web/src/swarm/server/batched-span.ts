/**
 * Continuous batching on a block server: the steps of several sessions that reach the server
 * together run as one forward over their stacked rows, so every linear layer (q/k/v/o, the MLP
 * or the MoE experts) is one M > 1 matmul instead of one GEMV per session. Attention is the only
 * per-session part: each session's rows write their K/V into its own cache at its own position
 * and attend over that cache alone. RoPE takes each row's absolute position, so sessions at
 * different positions (one prefilling, others decoding) share a batch.
 */
import type { Backend } from '../../gpu/backend.ts'
import type { CpuBackend } from '../../gpu/cpu-backend.ts'
import { attention, kvWrite } from '../../gpu/ops/attention.ts'
import type { GpuBackend } from '../../gpu/gpu-backend.ts'
import { tidy, type Tensor } from '../../gpu/tensor.ts'
import type { KvCache } from '../../model/model.ts'
import type { BlockSpan } from '../../model/model.ts'
import { SwarmArgumentError } from '../errors.ts'

/** One session's rows in a batch. */
export interface BatchRows {
  /** The session's cache over `span`'s blocks; grows by `tokens`. */
  kv: KvCache
  /** (T, C) f32 hidden states for positions [kv.length, kv.length + T). */
  hidden: Float32Array
  /** T */
  tokens: number
}

/** f32 bytes. */
const F32 = 4

/**
 * Rows [r0, r0 + n) of a contiguous tensor (R, ...) as a tensor (n, ...): on the CPU a view of
 * the same memory (read by kvWrite and attention within this step; `tensor()` would copy twice),
 * on WebGPU a copy.
 */
function takeRows (t: Tensor, r0: number, n: number): Tensor {
  const be = t.backend
  const rowElems = t.numel / t.shape[0]
  const shape = [n, ...t.shape.slice(1)]
  if (be.kind === 'cpu') return (be as CpuBackend).wrap((t.data as Float32Array).subarray(r0 * rowElems, (r0 + n) * rowElems), shape)
  const out = be.empty(shape)
  ;(be as GpuBackend).copy(t, out, r0 * rowElems * F32, 0, n * rowElems * F32)
  return out
}

/** Writes src (n, ...) into rows [r0, r0 + n) of dst (R, ...), in place (queued in order on WebGPU). */
function putRows (dst: Tensor, src: Tensor, r0: number): void {
  const rowElems = dst.numel / dst.shape[0]
  if (dst.backend.kind === 'cpu') {
    (dst.data as Float32Array).set(src.data as Float32Array, r0 * rowElems)
    return
  }
  ;(dst.backend as GpuBackend).copy(src, dst, 0, r0 * rowElems * F32, src.numel * F32)
}

/**
 * Runs `span` on every session's rows at once; returns each session's (T, C) output, in order,
 * and extends each cache by its T positions. Equal to running each session alone (the same
 * kernels on the same rows; only the matmuls' M differs).
 */
export async function forwardBatched (span: BlockSpan, steps: readonly BatchRows[]): Promise<Float32Array[]> {
  const be: Backend = span.backend
  const C = span.config.hiddenSize
  const seen = new Set<KvCache>()
  let M = 0
  for (const s of steps) {
    if (s.kv.span !== span) throw new SwarmArgumentError('batched forward: a cache belongs to another span')
    if (seen.has(s.kv)) throw new SwarmArgumentError('batched forward: one session appears twice in a batch')
    seen.add(s.kv)
    if (s.tokens < 1 || s.hidden.length !== s.tokens * C) throw new SwarmArgumentError(`batched forward: hidden must be (T=${s.tokens}, C=${C}), got ${s.hidden.length} values`)
    if (s.tokens > s.kv.remaining) throw new SwarmArgumentError(`batched forward: ${s.tokens} tokens exceed the cache's remaining ${s.kv.remaining}`)
    M += s.tokens
  }
  const stacked = new Float32Array(M * C) // (M, C)
  const pos = new Int32Array(M) // (M) absolute position of each row
  const first: number[] = [] // first row of each session in the stack
  let r = 0
  for (const s of steps) {
    first.push(r)
    stacked.set(s.hidden, r * C)
    for (let t = 0; t < s.tokens; t++) pos[r + t] = s.kv.length + t
    r += s.tokens
  }
  const positions = be.tensor(pos, [M], 'i32')
  let h = be.tensor(stacked, [M, C])
  try {
    span.blocks.forEach((block, j) => {
      // q (M, H, D), k/v (M, Hkv, D) → (M, H, D): each session over its own cache.
      const attend = (q: Tensor, k: Tensor, v: Tensor): Tensor => {
        const out = be.empty(q.shape)
        steps.forEach((s, i) => {
          const cache = s.kv.layers[j]
          const at = s.kv.length
          kvWrite(cache.k, takeRows(k, first[i], s.tokens), at)
          kvWrite(cache.v, takeRows(v, first[i], s.tokens), at)
          const a = attention(takeRows(q, first[i], s.tokens), cache.k, cache.v, { qOffset: at, kvLen: at + s.tokens })
          putRows(out, a.out, first[i])
        })
        return out
      }
      const x = h
      h = tidy(() => block.forward(x, { positions, start: 0, attend }).y)
      x.dispose()
    })
    for (const s of steps) s.kv.length += s.tokens
    const all = await h.readF32()
    return steps.map((s, i) => all.slice(first[i] * C, (first[i] + s.tokens) * C))
  } finally {
    h.dispose()
    positions.dispose()
  }
}
