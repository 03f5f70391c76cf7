/** AdamW's default hyper-parameters (imports nothing: the CLI's --help prints them at start-up). */

/**
 * The AdamW defaults, in one place. torch.optim.AdamW's moments and epsilon with weight decay
 * 0.01: what `AdamW` resolves missing options to, and the DiLoCo inner optimizer's defaults (a run
 * declaration that omits them means these; β2 0.95 measured no better there, BENCHMARKS.md).
 */
export const ADAMW_DEFAULTS = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 } as const

/**
 * Single-peer pretraining from scratch (`webswarm train`): GPT-style β2 0.95 and weight decay 0.1,
 * the settings the embedded models were trained with (models/README.md, BENCHMARKS.md).
 */
export const ADAMW_PRETRAIN_DEFAULTS = { ...ADAMW_DEFAULTS, beta2: 0.95, weightDecay: 0.1 } as const
