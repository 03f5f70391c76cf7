import { MissingTensorError } from './errors.ts'
import { linear, linearBackward } from '../gpu/ops/matmul.ts'
import { expertFFN, expertFFNBackward, moeCombine, moeCombineBackward, moeDispatch, moeGather, moeGatherBackward, routerTopK, routerTopKBackward } from '../gpu/ops/moe.ts'
import { add } from '../gpu/ops/elementwise.ts'
import type { Tensor } from '../gpu/tensor.ts'
import type { ModelConfig } from './config.ts'
import { layerPrefix } from './params.ts'
import type { GradSink } from './block.ts'

/**
 * Mixtral's sparse MoE layer split at its natural seams, so experts can run away from the
 * router (on other peers, DMoE):
 *
 *   routing = layer.route(x)                 // router logits → softmax f32 → top-k → renormalise
 *   xs      = layer.gather(x, routing)       // (T·k, C) token rows sorted by expert
 *   ys      = experts.forward(xs, offsets)   // any ExpertGroup: local, or a remote host's
 *   y       = layer.combine(ys, routing)     // weighted sum back to (T, C)
 *
 * `routing.offsets` (E + 1) delimits each expert's rows in xs, so rows [offsets[e],
 * offsets[e+1]) can be shipped to whoever hosts expert e.
 */
export interface Routing {
  /** (T, E) router logits (kept for backward). */
  logits: Tensor
  /** (T, k) renormalised weights of the chosen experts. */
  weights: Tensor
  /** (T, k) i32 chosen experts. */
  experts: Tensor
  /** (T·k) i32: row r of the sorted layout holds slot order[r] = t·k + j. */
  order: Tensor
  /** (T·k) i32: inverse of order. */
  slotRow: Tensor
  /** (E + 1) i32: expert e's rows are [offsets[e], offsets[e+1]). */
  offsets: Tensor
}

/** Weights of several experts stacked: w1, w3 (E, I, C) and w2 (E, C, I). */
export interface ExpertWeights {
  w1: Tensor
  w3: Tensor
  w2: Tensor
}

/** Runs experts on rows already sorted by expert (grouped SwiGLU). */
export function runExperts (w: ExpertWeights, xs: Tensor, offsets: Tensor): Tensor {
  return expertFFN(xs, offsets, w.w1, w.w3, w.w2) // (N, C)
}

/**
 * One expert on its rows x (N, C), e.g. on a peer hosting a single expert: w1, w3 (1, I, C),
 * w2 (1, C, I). Same kernel as the grouped path, with one group covering every row.
 */
export function runOneExpert (w: ExpertWeights, x: Tensor): Tensor {
  const offsets = x.backend.tensor(new Int32Array([0, x.shape[0]]), [2], 'i32')
  const y = expertFFN(x, offsets, w.w1, w.w3, w.w2)
  offsets.dispose()
  return y
}

export interface MoeTape {
  x: Tensor
  routing: Routing
  xs: Tensor
  ys: Tensor
}

export class MoeLayer {
  readonly gate: Tensor
  readonly experts: ExpertWeights
  readonly prefix: string

  constructor (readonly config: ModelConfig, readonly index: number, params: ReadonlyMap<string, Tensor>) {
    this.prefix = `${layerPrefix(index)}block_sparse_moe.`
    const get = (n: string): Tensor => {
      const t = params.get(this.prefix + n)
      if (t === undefined) throw new MissingTensorError(this.prefix + n, `MoeLayer ${index}: not loaded`)
      return t
    }
    this.gate = get('gate.weight')
    this.experts = { w1: get('experts.*.w1.weight'), w3: get('experts.*.w3.weight'), w2: get('experts.*.w2.weight') }
  }

  /** x (T, C) → routing decisions. */
  route (x: Tensor): Routing {
    const logits = linear(x, this.gate) // (T, E)
    const { weights, experts } = routerTopK(logits, this.config.expertsPerToken, true)
    const { order, slotRow, offsets } = moeDispatch(experts, this.config.numExperts)
    return { logits, weights, experts, order, slotRow, offsets }
  }

  /** x (T, C) → rows sorted by expert (T·k, C). */
  gather (x: Tensor, r: Routing): Tensor {
    return moeGather(x, r.order, this.config.expertsPerToken)
  }

  /** ys (T·k, C) → y (T, C) = Σ_j weight_j · expert_j(x). */
  combine (ys: Tensor, r: Routing): Tensor {
    return moeCombine(ys, r.slotRow, r.weights)
  }

  /** The whole layer with local experts; `tape` keeps what backward needs. */
  forward (x: Tensor, tape: boolean): { y: Tensor, tape?: MoeTape } {
    const routing = this.route(x)
    const xs = this.gather(x, routing)
    const ys = runExperts(this.experts, xs, routing.offsets)
    const y = this.combine(ys, routing)
    return { y, tape: tape ? { x, routing, xs, ys } : undefined }
  }

  /** dy (T, C) → dx (T, C); parameter gradients go to `grads`. */
  backward (t: MoeTape, dy: Tensor, grads: GradSink): Tensor {
    const k = this.config.expertsPerToken
    const T = t.x.shape[0]
    const { dys, dWeights } = moeCombineBackward(t.ys, t.routing.slotRow, t.routing.weights, dy)
    const e = expertFFNBackward(t.xs, t.routing.offsets, this.experts.w1, this.experts.w3, this.experts.w2, dys)
    grads(this.prefix + 'experts.*.w1.weight', e.dw1)
    grads(this.prefix + 'experts.*.w3.weight', e.dw3)
    grads(this.prefix + 'experts.*.w2.weight', e.dw2)
    const dxExperts = moeGatherBackward(e.dxs, t.routing.slotRow, T, k)
    const dLogits = routerTopKBackward(t.routing.logits, t.routing.experts, dWeights, true)
    const g = linearBackward(t.x, this.gate, dLogits, false)
    grads(this.prefix + 'gate.weight', g.dw)
    return add(dxExperts, g.dx)
  }
}
