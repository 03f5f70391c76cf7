/**
 * The two trainers' optimizer flags and their defaults, in one table that both commands read and
 * `--help` prints. They differ on purpose: `train` pretrains one model from scratch with GPT-style
 * AdamW (ADAMW_PRETRAIN_DEFAULTS: β2 0.95, weight decay 0.1, as the embedded models were
 * trained); `train --bootstrap` is DiLoCo's inner AdamW with torch's defaults (ADAMW_DEFAULTS: β2
 * 0.95 measured no better there, BENCHMARKS.md), which a run declaration that omits them means.
 */
import { ADAMW_DEFAULTS, ADAMW_PRETRAIN_DEFAULTS } from '../model/adamw-defaults.ts'

const adamw = (a: { beta1: number, beta2: number, weightDecay: number }): { beta1: number, beta2: number, 'weight-decay': number } =>
  ({ beta1: a.beta1, beta2: a.beta2, 'weight-decay': a.weightDecay })

/** Flag → default, per trainer (lr: the peak learning rate; clip: the global gradient-norm clip). */
export const TRAINER_DEFAULTS = {
  train: { lr: 3e-3, ...adamw(ADAMW_PRETRAIN_DEFAULTS), clip: 1 },
  'train --bootstrap': { lr: 3e-3, ...adamw(ADAMW_DEFAULTS), clip: 1 }
} as const

/** `--help`'s line of `command`'s defaults: `defaults: --lr 0.003 --beta1 0.9 …`. */
export function defaultsLine (command: keyof typeof TRAINER_DEFAULTS): string {
  return 'defaults: ' + Object.entries(TRAINER_DEFAULTS[command]).map(([k, v]) => `--${k} ${v}`).join(' ')
}
