/**
 * An independent, deliberately naive forward pass of the Hugging Face decoder (Llama / Mistral /
 * Qwen2 / Mixtral) in plain JS doubles, written from the HF modeling code's semantics, not from
 * our ops: repeat_kv for GQA, rotate-half RoPE with inv_freq = θ^(−2i/D), RMSNorm, SwiGLU, MoE
 * router softmax → top-k → renormalise. Used to check the model's composition on configs the
 * PyTorch fixtures do not cover (biases, tied heads, MQA, head_dim ≠ C/H, odd sizes).
 */
import type { ModelConfig } from '../../web/src/model/config.ts'
import type { HostWeights } from '../../web/src/model/weights.ts'

type Vec = Float64Array

function w (host: HostWeights, name: string): Float32Array {
  const t = host.get(name)
  if (t === undefined) throw new Error(`reference: missing ${name}`)
  return t.data
}

/** y = W x + b with W (out, in) row-major. */
function lin (W: Float32Array, x: Vec, out: number, b?: Float32Array): Vec {
  const n = x.length
  const y = new Float64Array(out)
  for (let o = 0; o < out; o++) {
    let s = b !== undefined ? b[o] : 0
    for (let i = 0; i < n; i++) s += W[o * n + i] * x[i]
    y[o] = s
  }
  return y
}

function rms (x: Vec, g: Float32Array, eps: number): Vec {
  let ms = 0
  for (const v of x) ms += v * v
  const r = 1 / Math.sqrt(ms / x.length + eps)
  return x.map((v, i) => v * r * g[i])
}

function ropeVec (x: Vec, pos: number, D: number, theta: number, factors?: readonly number[]): Vec {
  const out = new Float64Array(D)
  const half = D / 2
  for (let i = 0; i < half; i++) {
    const f = pos / theta ** (2 * i / D) / (factors?.[i] ?? 1) // Llama 3.1: each frequency divided by its factor
    const c = Math.cos(f)
    const s = Math.sin(f)
    out[i] = x[i] * c - x[i + half] * s
    out[i + half] = x[i + half] * c + x[i] * s
  }
  return out
}

const silu = (v: number): number => v / (1 + Math.exp(-v))

function ffn (host: HostWeights, x: Vec, g: string, u: string, d: string, I: number, C: number, bias: boolean, gOff = 0, dOff = 0): Vec {
  const Wg = w(host, g).subarray(gOff, gOff + I * C)
  const Wu = w(host, u).subarray(gOff, gOff + I * C)
  const Wd = w(host, d).subarray(dOff, dOff + C * I)
  const bg = bias ? w(host, g.replace('weight', 'bias')) : undefined
  const bu = bias ? w(host, u.replace('weight', 'bias')) : undefined
  const bd = bias ? w(host, d.replace('weight', 'bias')) : undefined
  const a = lin(Wg, x, I, bg)
  const b = lin(Wu, x, I, bu)
  const h = a.map((v, i) => silu(v) * b[i])
  return lin(Wd, h, C, bd)
}

/** Logits (T, V) for `ids` at positions 0..T-1. */
export function referenceLogits (c: ModelConfig, host: HostWeights, ids: readonly number[]): Float64Array[] {
  const C = c.hiddenSize
  const H = c.numHeads
  const Hkv = c.numKvHeads
  const D = c.headDim
  const T = ids.length
  const emb = w(host, 'model.embed_tokens.weight')
  let xs: Vec[] = ids.map(id => Float64Array.from(emb.subarray(id * C, (id + 1) * C)))
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`
    const opt = (n: string): Float32Array | undefined => host.get(p + n)?.data
    const qs: Vec[] = []; const ks: Vec[] = []; const vs: Vec[] = []
    const xn = xs.map(x => rms(x, w(host, p + 'input_layernorm.weight'), c.rmsNormEps))
    xn.forEach((x, t) => {
      qs.push(lin(w(host, p + 'self_attn.q_proj.weight'), x, H * D, opt('self_attn.q_proj.bias')))
      ks.push(lin(w(host, p + 'self_attn.k_proj.weight'), x, Hkv * D, opt('self_attn.k_proj.bias')))
      vs.push(lin(w(host, p + 'self_attn.v_proj.weight'), x, Hkv * D, opt('self_attn.v_proj.bias')))
      // Qwen3: each head of q and k RMS-normalised (weights (D)) before RoPE.
      const headNorm = (v: Vec, n: number, which: string): void => {
        if (!c.qkNorm) return
        for (let h = 0; h < n; h++) v.set(rms(v.subarray(h * D, (h + 1) * D), w(host, `${p}self_attn.${which}_norm.weight`), c.rmsNormEps), h * D)
      }
      headNorm(qs[t], H, 'q')
      headNorm(ks[t], Hkv, 'k')
      for (let h = 0; h < H; h++) qs[t].set(ropeVec(qs[t].subarray(h * D, (h + 1) * D), t, D, c.ropeTheta, c.ropeFreqFactors), h * D)
      for (let h = 0; h < Hkv; h++) ks[t].set(ropeVec(ks[t].subarray(h * D, (h + 1) * D), t, D, c.ropeTheta, c.ropeFreqFactors), h * D)
    })
    const rep = H / Hkv // repeat_kv: query head h reads kv head floor(h / rep)
    xs = xs.map((x, t) => {
      const att = new Float64Array(H * D)
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / rep)
        const s = new Float64Array(t + 1)
        for (let j = 0; j <= t; j++) {
          let d = 0
          for (let i = 0; i < D; i++) d += qs[t][h * D + i] * ks[j][kh * D + i]
          s[j] = d / Math.sqrt(D)
        }
        const m = Math.max(...s)
        const e = s.map(v => Math.exp(v - m))
        const z = e.reduce((a, b) => a + b, 0)
        for (let j = 0; j <= t; j++) for (let i = 0; i < D; i++) att[h * D + i] += e[j] / z * vs[j][kh * D + i]
      }
      const o = lin(w(host, p + 'self_attn.o_proj.weight'), att, C, opt('self_attn.o_proj.bias'))
      return x.map((v, i) => v + o[i])
    })
    xs = xs.map(x => {
      const xn2 = rms(x, w(host, p + 'post_attention_layernorm.weight'), c.rmsNormEps)
      let y: Vec
      if (c.numExperts > 0) {
        const m = p + 'block_sparse_moe.'
        const logits = lin(w(host, m + 'gate.weight'), xn2, c.numExperts)
        const mx = Math.max(...logits)
        const pr = logits.map(v => Math.exp(v - mx))
        const z = pr.reduce((a, b) => a + b, 0)
        const probs = Array.from(pr, v => v / z)
        const order = probs.map((v, i) => [v, i]).sort((a, b) => (b[0] - a[0]) || (a[1] - b[1])).slice(0, c.expertsPerToken)
        const sum = order.reduce((a, b) => a + b[0], 0)
        y = new Float64Array(C)
        const I = c.intermediateSize
        for (const [pw, e] of order) {
          const ye = ffn(host, xn2, m + 'experts.*.w1.weight', m + 'experts.*.w3.weight', m + 'experts.*.w2.weight', I, C, false, e * I * C, e * C * I)
          for (let i = 0; i < C; i++) y[i] += pw / sum * ye[i]
        }
      } else {
        y = ffn(host, xn2, p + 'mlp.gate_proj.weight', p + 'mlp.up_proj.weight', p + 'mlp.down_proj.weight', c.intermediateSize, C, c.mlpBias)
      }
      return x.map((v, i) => v + y[i])
    })
  }
  const head = c.tieWordEmbeddings ? emb : w(host, 'lm_head.weight')
  return xs.map(x => lin(head, rms(x, w(host, 'model.norm.weight'), c.rmsNormEps), c.vocabSize))
}
