import { adamw } from '../gpu/ops/optim.ts'
import { keep, type Tensor } from '../gpu/tensor.ts'
import { ADAMW_DEFAULTS } from './adamw-defaults.ts'
import { ModelArgumentError } from './errors.ts'
import type { ParamStore } from './model.ts'

/** PyTorch AdamW hyper-parameters (defaults as torch.optim.AdamW, except weight decay). */
export interface AdamWOptions {
  /** @default 1e-3 */
  lr?: number
  /** @default 0.9 */
  beta1?: number
  /** @default 0.999 */
  beta2?: number
  /** @default 1e-8 */
  eps?: number
  /** Decoupled: p ← p − lr·wd·p before the Adam update. @default 0.01 */
  weightDecay?: number
}

export type ResolvedAdamW = Required<AdamWOptions>

function resolveAdamW (o: AdamWOptions = {}): ResolvedAdamW {
  const d = ADAMW_DEFAULTS
  const r = { lr: o.lr ?? d.lr, beta1: o.beta1 ?? d.beta1, beta2: o.beta2 ?? d.beta2, eps: o.eps ?? d.eps, weightDecay: o.weightDecay ?? d.weightDecay }
  if (!(r.lr >= 0) || !(r.beta1 >= 0 && r.beta1 < 1) || !(r.beta2 >= 0 && r.beta2 < 1) || !(r.eps > 0) || !(r.weightDecay >= 0)) {
    throw new ModelArgumentError(`AdamW options out of range: ${JSON.stringify(r)}`)
  }
  return r
}

/**
 * AdamW over a parameter store, updating in place with the `adamw` op (torch semantics:
 * decoupled weight decay on every parameter, bias-corrected moments; `step` counts from 1).
 */
export class AdamW {
  readonly opts: ResolvedAdamW
  /** Steps taken so far. */
  step = 0
  readonly m = new Map<string, Tensor>()
  readonly v = new Map<string, Tensor>()

  constructor (readonly params: ParamStore, opts: AdamWOptions = {}) {
    this.opts = resolveAdamW(opts)
    for (const [name, p] of params) {
      this.m.set(name, keep(p.backend.zeros(p.shape)))
      this.v.set(name, keep(p.backend.zeros(p.shape)))
    }
  }

  /** One update with these gradients (same names as the parameters); `lr` overrides the base rate (schedules). */
  update (grads: ReadonlyMap<string, Tensor>, lr = this.opts.lr): void {
    this.step++
    for (const [name, p] of this.params) {
      const g = grads.get(name)
      if (g === undefined) throw new ModelArgumentError(`AdamW: no gradient for parameter ${name}`)
      const m = this.m.get(name)
      const v = this.v.get(name)
      if (m === undefined || v === undefined) throw new ModelArgumentError(`AdamW: no state for parameter ${name}`)
      adamw(p, g, m, v, { lr, beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps, weightDecay: this.opts.weightDecay, step: this.step })
    }
  }

  dispose (): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose()
    this.m.clear(); this.v.clear()
  }
}
