/**
 * The model side of the contribution check (contribution-check.ts): losses of θ_global and of
 * θ_global with one part replaced by θ_global − Δ_c, on a window of training text drawn from a
 * seed of (run seed, round, part start) — a window no contributor chose.
 *
 * It evaluates on its **own copy of the model** (same config, its weights overwritten from
 * θ_global every call): a part owner checks while its worker may be in the middle of an inner
 * step, and swapping weights in the training model under it would corrupt that step. The price is
 * a second copy of the parameters (activations are freed per window); a run can turn the check off.
 */
import type { CausalLM } from '../../model/model.ts'
import type { TextDataset, Window } from '../../model/data.ts'
import { evaluateLoss } from '../../model/train.ts'
import type { LossProbe } from './contribution-check.ts'
import { TrainArgumentError } from './errors.ts'
import { slotView, type Fragment, type ParamLayout } from './flat.ts'

export interface ModelLossProbeOptions {
  /** The evaluation copy of the run's model (never the training one). */
  model: CausalLM
  /** Training text the windows come from. */
  data: TextDataset
  layout: ParamLayout
  /** The run's fragments: round r reduces fragment r mod F (worker.ts's schedule). */
  fragments: readonly Fragment[]
  /** θ_global now (the owner's replica). */
  global: () => Float32Array
  seqLen: number
  /** Windows per check. @default 2 */
  windows?: number
  /** Mixed into the window seed (the run's seed): runs draw different windows. @default 0 */
  seed?: number
}

export class ModelLossProbe implements LossProbe {
  private readonly windows: number
  constructor (private readonly o: ModelLossProbeOptions) {
    this.windows = o.windows ?? 2
    if (!(Number.isInteger(this.windows) && this.windows >= 1)) throw new TrainArgumentError(`windows must be a positive integer, got ${this.windows}`)
  }

  /** The round's window for the part starting at `start`: a pure function of (seed, round, start). */
  windowsFor (round: number, start: number): Window[] {
    const seed = ((this.o.seed ?? 0) * 2_654_435_761 + round * 40_503 + start * 97 + 1) >>> 0
    const it = this.o.data.windows(this.o.seqLen, seed)
    return Array.from({ length: this.windows }, () => it.next().value as Window)
  }

  async losses (round: number, n: number, start: number, deltas: readonly Float32Array[]): Promise<{ before: number, after: number[] }> {
    const frag = this.o.fragments[round % this.o.fragments.length]
    if (frag.end - frag.start !== n) throw new TrainArgumentError(`round ${round} reduces fragment ${frag.index} of ${frag.end - frag.start} elements, not ${n}`)
    const g = this.o.global()
    const lo = frag.start + start
    const len = deltas[0]?.length ?? 0
    const hi = lo + len
    if (hi > frag.end) throw new TrainArgumentError(`part [${start}, ${start + len}) runs past fragment ${frag.index}`)
    const wins = this.windowsFor(round, start)
    const theta = g.slice()
    this.write(theta, 0, theta.length)
    const before = await evaluateLoss(this.o.model, wins)
    const after: number[] = []
    for (const d of deltas) {
      for (let i = 0; i < len; i++) theta[lo + i] = g[lo + i] - d[i]
      this.write(theta, lo, hi)
      after.push(await evaluateLoss(this.o.model, wins))
      theta.set(g.subarray(lo, hi), lo)
    }
    this.write(theta, lo, hi) // leave the copy at θ_global
    return { before, after }
  }

  /** Frees the evaluation model's tensors. */
  dispose (): void {
    this.o.model.dispose()
  }

  /** Writes every parameter overlapping [lo, hi) of the flat vector into the evaluation model. */
  private write (flat: Float32Array, lo: number, hi: number): void {
    for (const s of this.o.layout.slots) {
      if (s.offset >= hi || s.offset + s.size <= lo) continue
      const t = this.o.model.params.get(s.name)
      if (t === undefined) throw new TrainArgumentError(`evaluation model has no parameter ${s.name}`)
      this.o.model.backend.write(t, slotView(flat, s).slice())
    }
  }
}
