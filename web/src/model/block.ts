import { MissingTensorError, ModelArgumentError } from './errors.ts'
import { attention, attentionBackward, kvWrite } from '../gpu/ops/attention.ts'
import { add, swiglu, swigluBackward } from '../gpu/ops/elementwise.ts'
import { linear, linearBackward } from '../gpu/ops/matmul.ts'
import { rmsnorm, rmsnormBackward } from '../gpu/ops/norm.ts'
import { rope } from '../gpu/ops/rope.ts'
import { scaledInvFreq } from '../gpu/cpu/rope.ts'
import type { Tensor } from '../gpu/tensor.ts'
import type { ModelConfig } from './config.ts'
import { MoeLayer, type MoeTape } from './moe.ts'
import { layerPrefix } from './params.ts'

/** Receives a parameter gradient (accumulates into the named slot). */
export type GradSink = (name: string, grad: Tensor) => void

/** One layer's KV cache: capacity S positions. */
export interface LayerCache {
  /** (S, Hkv, D) */
  k: Tensor
  /** (S, Hkv, D) */
  v: Tensor
}

/** Where this call's tokens sit: positions (for RoPE) and, in a session, the cache to extend. */
export interface BlockContext {
  /** (T) i32 absolute positions of the T rows. */
  positions: Tensor
  /** Absolute position of the first row (== tokens already in the cache). */
  start: number
  /** Present during a session (inference); absent in training (attention over these rows only). */
  cache?: LayerCache
  /** Keep activations for backward. */
  tape?: boolean
  /**
   * Replaces the attention step (inference only): q (T, H, D), k/v (T, Hkv, D) after RoPE →
   * (T, H, D). A block server's batched decode stacks several sessions' rows and attends each
   * session's rows over its own KV cache (swarm/server/batched-span.ts).
   */
  attend?: (q: Tensor, k: Tensor, v: Tensor) => Tensor
}

/** Activations a block keeps for its backward pass. */
export interface BlockTape {
  x: Tensor
  xn1: Tensor
  /** (T, H, D) after RoPE */
  q: Tensor
  /** (T, Hkv, D) after RoPE */
  k: Tensor
  /** (T, Hkv, D) */
  v: Tensor
  /** (T, H, D) */
  att: Tensor
  /** (H, T) */
  lse: Tensor
  /** (T, C) after the attention residual */
  x2: Tensor
  xn2: Tensor
  positions: Tensor
  /** q (T, H·D) and k (T, Hkv·D) before the per-head norm (Qwen3 only). */
  qkPre?: { q: Tensor, k: Tensor }
  mlp?: { gate: Tensor, up: Tensor, act: Tensor }
  moe?: MoeTape
}

/**
 * A Llama/Mistral/Qwen2/Qwen3/Mixtral decoder layer (pre-norm):
 *   x2 = x + o_proj(attn(rope(q_proj(rms(x))), rope(k_proj(rms(x))), v_proj(rms(x))))
 *        (Qwen3: each head of q and k RMS-normalised before RoPE)
 *   y  = x2 + mlp(rms(x2))     mlp = down(silu(gate(·)) ⊙ up(·))  or the sparse MoE layer
 */
export class DecoderBlock {
  readonly prefix: string
  private readonly w: (n: string) => Tensor
  private readonly wOpt: (n: string) => Tensor | undefined
  readonly moe?: MoeLayer
  /** RoPE inverse frequencies when the model scales them (Llama 3.1); undefined: the plain table. */
  private readonly invFreq?: Float32Array

  constructor (readonly config: ModelConfig, readonly index: number, readonly params: ReadonlyMap<string, Tensor>) {
    this.prefix = layerPrefix(index)
    this.wOpt = n => params.get(this.prefix + n)
    this.w = n => {
      const t = params.get(this.prefix + n)
      if (t === undefined) throw new MissingTensorError(this.prefix + n, `layer ${index}: not loaded`)
      return t
    }
    if (config.numExperts > 0) this.moe = new MoeLayer(config, index, params)
    if (config.ropeFreqFactors !== undefined) this.invFreq = scaledInvFreq(config.headDim, config.ropeTheta, config.ropeFreqFactors)
  }

  /** x (T, C) → y (T, C). With ctx.cache, writes this call's K/V at rows [start, start + T). */
  forward (x: Tensor, ctx: BlockContext): { y: Tensor, tape?: BlockTape } {
    const c = this.config
    const T = x.shape[0]
    const H = c.numHeads
    const Hkv = c.numKvHeads
    const D = c.headDim
    const xn1 = rmsnorm(x, this.w('input_layernorm.weight'), c.rmsNormEps) // (T, C)
    const qPre = linear(xn1, this.w('self_attn.q_proj.weight'), this.wOpt('self_attn.q_proj.bias')) // (T, H·D)
    const kPre = linear(xn1, this.w('self_attn.k_proj.weight'), this.wOpt('self_attn.k_proj.bias')) // (T, Hkv·D)
    const q = rope(this.headNorm(qPre, 'q', T, H), ctx.positions, c.ropeTheta, false, this.invFreq) // (T, H, D)
    const k = rope(this.headNorm(kPre, 'k', T, Hkv), ctx.positions, c.ropeTheta, false, this.invFreq) // (T, Hkv, D)
    const v = linear(xn1, this.w('self_attn.v_proj.weight'), this.wOpt('self_attn.v_proj.bias')).reshape([T, Hkv, D]) // (T, Hkv, D)
    let a: { out: Tensor, lse: Tensor }
    if (ctx.attend !== undefined) {
      if (ctx.tape === true) throw new ModelArgumentError(`layer ${this.index}: a replaced attention (ctx.attend) has no backward`)
      const out = ctx.attend(q, k, v)
      a = { out, lse: out }
    } else if (ctx.cache !== undefined) {
      kvWrite(ctx.cache.k, k, ctx.start)
      kvWrite(ctx.cache.v, v, ctx.start)
      a = attention(q, ctx.cache.k, ctx.cache.v, { qOffset: ctx.start, kvLen: ctx.start + T })
    } else {
      a = attention(q, k, v, { qOffset: 0, kvLen: T }) // rows attend to each other only
    }
    const attFlat = a.out.reshape([T, H * D]) // (T, H·D)
    const x2 = add(x, linear(attFlat, this.w('self_attn.o_proj.weight'), this.wOpt('self_attn.o_proj.bias'))) // (T, C)
    const xn2 = rmsnorm(x2, this.w('post_attention_layernorm.weight'), c.rmsNormEps) // (T, C)
    let y: Tensor
    let mlpTape: BlockTape['mlp']
    let moeTape: MoeTape | undefined
    if (this.moe !== undefined) {
      const r = this.moe.forward(xn2, ctx.tape === true)
      y = add(x2, r.y)
      moeTape = r.tape
    } else {
      const gate = linear(xn2, this.w('mlp.gate_proj.weight'), this.wOpt('mlp.gate_proj.bias')) // (T, I)
      const up = linear(xn2, this.w('mlp.up_proj.weight'), this.wOpt('mlp.up_proj.bias')) // (T, I)
      const act = swiglu(gate, up) // (T, I)
      y = add(x2, linear(act, this.w('mlp.down_proj.weight'), this.wOpt('mlp.down_proj.bias')))
      mlpTape = { gate, up, act }
    }
    if (ctx.tape !== true) return { y }
    const qkPre = c.qkNorm ? { q: qPre, k: kPre } : undefined
    return { y, tape: { x, xn1, q, k, v, att: a.out, lse: a.lse, x2, xn2, positions: ctx.positions, qkPre, mlp: mlpTape, moe: moeTape } }
  }

  /** (T, n·D) → (T, n, D), each head RMS-normalised with `{q,k}_norm.weight` (D) when the model has them (Qwen3). */
  private headNorm (pre: Tensor, which: 'q' | 'k', T: number, n: number): Tensor {
    const D = this.config.headDim
    if (!this.config.qkNorm) return pre.reshape([T, n, D])
    return rmsnorm(pre.reshape([T * n, D]), this.w(`self_attn.${which}_norm.weight`), this.config.rmsNormEps).reshape([T, n, D])
  }

  /** Backward of headNorm: d (T, n·D) after the norm → d before it; the norm weight's gradient goes to `grads`. */
  private headNormBackward (t: BlockTape, which: 'q' | 'k', d: Tensor, grads: GradSink): Tensor {
    if (!this.config.qkNorm) return d
    const pre = t.qkPre?.[which]
    if (pre === undefined) throw new Error('backward: q/k norm tape missing')
    const D = this.config.headDim
    const rows = pre.numel / D
    const n = rmsnormBackward(pre.reshape([rows, D]), this.w(`self_attn.${which}_norm.weight`), d.reshape([rows, D]), this.config.rmsNormEps)
    grads(`${this.prefix}self_attn.${which}_norm.weight`, n.dw)
    return n.dx.reshape(pre.shape)
  }

  /** dy (T, C) → dx (T, C); parameter gradients go to `grads` under their in-memory names. */
  backward (t: BlockTape, dy: Tensor, grads: GradSink): Tensor {
    const c = this.config
    const T = t.x.shape[0]
    const H = c.numHeads
    const Hkv = c.numKvHeads
    const D = c.headDim
    const p = this.prefix
    // MLP / MoE branch: y = x2 + f(rms(x2))
    let dxn2: Tensor
    if (this.moe !== undefined) {
      if (t.moe === undefined) throw new Error('backward: MoE tape missing')
      dxn2 = this.moe.backward(t.moe, dy, grads)
    } else {
      const m = t.mlp
      if (m === undefined) throw new Error('backward: MLP tape missing')
      const down = linearBackward(m.act, this.w('mlp.down_proj.weight'), dy, c.mlpBias)
      grads(p + 'mlp.down_proj.weight', down.dw)
      if (down.db !== undefined) grads(p + 'mlp.down_proj.bias', down.db)
      const { dGate, dUp } = swigluBackward(m.gate, m.up, down.dx)
      const g = linearBackward(t.xn2, this.w('mlp.gate_proj.weight'), dGate, c.mlpBias)
      const u = linearBackward(t.xn2, this.w('mlp.up_proj.weight'), dUp, c.mlpBias)
      grads(p + 'mlp.gate_proj.weight', g.dw)
      grads(p + 'mlp.up_proj.weight', u.dw)
      if (g.db !== undefined) grads(p + 'mlp.gate_proj.bias', g.db)
      if (u.db !== undefined) grads(p + 'mlp.up_proj.bias', u.db)
      dxn2 = add(g.dx, u.dx)
    }
    const n2 = rmsnormBackward(t.x2, this.w('post_attention_layernorm.weight'), dxn2, c.rmsNormEps)
    grads(p + 'post_attention_layernorm.weight', n2.dw)
    const dx2 = add(dy, n2.dx) // (T, C)

    // Attention branch: x2 = x + o(attn(...))
    const o = linearBackward(t.att.reshape([T, H * D]), this.w('self_attn.o_proj.weight'), dx2, c.oBias)
    grads(p + 'self_attn.o_proj.weight', o.dw)
    if (o.db !== undefined) grads(p + 'self_attn.o_proj.bias', o.db)
    const ag = attentionBackward(t.q, t.k, t.v, t.att, t.lse, o.dx.reshape([T, H, D]), { qOffset: 0, kvLen: T })
    // RoPE is a rotation: its backward is the inverse rotation.
    const dq = this.headNormBackward(t, 'q', rope(ag.dq, t.positions, c.ropeTheta, true, this.invFreq).reshape([T, H * D]), grads)
    const dk = this.headNormBackward(t, 'k', rope(ag.dk, t.positions, c.ropeTheta, true, this.invFreq).reshape([T, Hkv * D]), grads)
    const dv = ag.dv.reshape([T, Hkv * D])
    const lq = linearBackward(t.xn1, this.w('self_attn.q_proj.weight'), dq, c.qkvBias)
    const lk = linearBackward(t.xn1, this.w('self_attn.k_proj.weight'), dk, c.qkvBias)
    const lv = linearBackward(t.xn1, this.w('self_attn.v_proj.weight'), dv, c.qkvBias)
    grads(p + 'self_attn.q_proj.weight', lq.dw)
    grads(p + 'self_attn.k_proj.weight', lk.dw)
    grads(p + 'self_attn.v_proj.weight', lv.dw)
    if (c.qkvBias) {
      if (lq.db === undefined || lk.db === undefined || lv.db === undefined) throw new Error('linearBackward returned no bias gradient')
      grads(p + 'self_attn.q_proj.bias', lq.db)
      grads(p + 'self_attn.k_proj.bias', lk.db)
      grads(p + 'self_attn.v_proj.bias', lv.db)
    }
    const dxn1 = add(add(lq.dx, lk.dx), lv.dx)
    const n1 = rmsnormBackward(t.x, this.w('input_layernorm.weight'), dxn1, c.rmsNormEps)
    grads(p + 'input_layernorm.weight', n1.dw)
    return add(dx2, n1.dx)
  }
}
