import { scaleInPlace } from '../gpu/ops/elementwise.ts'
import { crossEntropy, crossEntropyBackward } from '../gpu/ops/loss.ts'
import { clipGradNorm } from '../gpu/ops/optim.ts'
import { keep, tidy, type Tensor } from '../gpu/tensor.ts'
import { ModelArgumentError } from './errors.ts'
import { gradAccumulator, type CausalLM, type ParamStore } from './model.ts'
import { AdamW, type AdamWOptions } from './optimizer.ts'
import { learningRate, type ScheduleOptions } from './schedule.ts'
import { intTensor } from './tensors.ts'

/**
 * Forward with tapes, mean cross-entropy, backward through head, blocks and embedding.
 * Gradients are added into `grads` (scaled by `scale`, e.g. 1/accumulation steps); returns the
 * loss as a (1) tensor (unscaled) — read it when convenient.
 */
export function accumulateGradients (model: CausalLM, inputs: ArrayLike<number>, targets: ArrayLike<number>, grads: ParamStore, scale = 1): Tensor {
  if (inputs.length !== targets.length) throw new ModelArgumentError(`inputs (${inputs.length}) and targets (${targets.length}) differ in length`)
  if (inputs.length === 0) throw new ModelArgumentError('no tokens to train on')
  if (model.span.range.start !== 0 || model.span.range.end !== model.config.numLayers) throw new ModelArgumentError('accumulateGradients needs the whole model')
  for (const t of Array.from(targets)) {
    if (t !== -100 && (!Number.isInteger(t) || t < 0 || t >= model.config.vocabSize)) throw new ModelArgumentError(`target id ${t} is outside the vocabulary [0, ${model.config.vocabSize})`)
  }
  const sink = gradAccumulator(grads)
  return tidy(() => {
    const tgt = intTensor(model.backend, targets)
    const h0 = model.embedding.forward(inputs)
    const { out, tapes } = model.span.forwardTape(h0)
    const { logits, hn } = model.head.forwardTape(out)
    const loss = crossEntropy(logits, tgt)
    const dLogits = crossEntropyBackward(logits, tgt)
    if (scale !== 1) scaleInPlace(dLogits, scale)
    const dOut = model.head.backward(out, hn, dLogits, sink)
    const dh0 = model.span.backward(tapes, dOut, sink)
    model.embedding.backward(inputs, dh0, sink)
    return loss
  })
}

/** Loss and gradients of one sequence (what `webswarm grad` writes). */
export async function lossAndGradients (model: CausalLM, inputs: ArrayLike<number>, targets: ArrayLike<number>): Promise<{ loss: number, grads: ParamStore }> {
  const grads: ParamStore = new Map()
  const lossT = accumulateGradients(model, inputs, targets, grads)
  const loss = (await lossT.readF32())[0]
  lossT.dispose()
  return { loss, grads }
}

/** Mean loss over sequences, no gradients. */
export async function evaluateLoss (model: CausalLM, batches: ReadonlyArray<{ inputs: ArrayLike<number>, targets: ArrayLike<number> }>): Promise<number> {
  let sum = 0
  for (const b of batches) {
    const l = tidy(() => crossEntropy(model.logits(b.inputs), intTensor(model.backend, b.targets)))
    sum += (await l.readF32())[0]
    l.dispose()
  }
  return sum / Math.max(batches.length, 1)
}

export interface TrainStepOptions {
  /** Clip the global gradient L2 norm to this (0 = no clipping). @default 1 */
  maxGradNorm?: number
}

export interface StepResult {
  step: number
  /** Mean loss over the micro-batches of this step. */
  loss: number
  /** Global gradient norm before clipping. */
  gradNorm: number
  lr: number
  tokens: number
}

/**
 * Single-peer training: gradient accumulation over micro-batches (one sequence each), global
 * norm clipping, AdamW with a warm-up + cosine schedule.
 */
export class Trainer {
  readonly optimizer: AdamW
  private readonly grads: ParamStore = new Map()

  constructor (readonly model: CausalLM, readonly schedule: ScheduleOptions, adam: Omit<AdamWOptions, 'lr'> = {}, readonly opts: TrainStepOptions = {}) {
    this.optimizer = new AdamW(model.params, { ...adam, lr: schedule.lr })
  }

  get step (): number { return this.optimizer.step }

  /**
   * One optimizer step over these sequences (accumulated). `lr` overrides the schedule for this
   * step — for a caller whose schedule follows another clock (a DiLoCo worker follows its run's
   * steps, not its own optimizer's, so a late joiner decays with everyone else).
   */
  async trainStep (batch: ReadonlyArray<{ inputs: ArrayLike<number>, targets: ArrayLike<number> }>, lr?: number): Promise<StepResult> {
    if (batch.length === 0) throw new ModelArgumentError('trainStep: empty batch')
    if (lr !== undefined && !(lr >= 0 && Number.isFinite(lr))) throw new ModelArgumentError(`trainStep: lr must be finite and ≥ 0, got ${lr}`)
    for (const g of this.grads.values()) g.dispose()
    this.grads.clear()
    const losses: Tensor[] = []
    let tokens = 0
    for (const s of batch) {
      losses.push(keep(accumulateGradients(this.model, s.inputs, s.targets, this.grads, 1 / batch.length)))
      tokens += s.inputs.length
    }
    const maxNorm = this.opts.maxGradNorm ?? 1
    const names = [...this.model.params.keys()]
    const list = names.map(n => {
      const g = this.grads.get(n)
      if (g === undefined) throw new ModelArgumentError(`no gradient reached parameter ${n}`)
      return g
    })
    const gradNorm = await clipGradNorm(list, maxNorm > 0 ? maxNorm : Infinity)
    const stepLr = lr ?? learningRate(this.schedule, this.optimizer.step + 1)
    this.optimizer.update(this.grads, stepLr)
    let loss = 0
    for (const l of losses) { loss += (await l.readF32())[0]; l.dispose() }
    return { step: this.optimizer.step, loss: loss / batch.length, gradNorm, lr: stepLr, tokens }
  }

  dispose (): void {
    for (const g of this.grads.values()) g.dispose()
    this.grads.clear()
    this.optimizer.dispose()
  }
}
