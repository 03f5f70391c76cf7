import { execFile } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { defaultsLine, TRAINER_DEFAULTS } from '../../web/src/cli/trainer-defaults.ts'
import { ADAMW_DEFAULTS, ADAMW_PRETRAIN_DEFAULTS } from '../../web/src/model/adamw-defaults.ts'

describe('the trainers\' defaults: one table, printed by --help', () => {
  it('train pretrains with GPT-style AdamW, train --bootstrap runs DiLoCo\'s inner AdamW with torch\'s', () => {
    expect(TRAINER_DEFAULTS.train).toEqual({ lr: 3e-3, beta1: ADAMW_PRETRAIN_DEFAULTS.beta1, beta2: 0.95, 'weight-decay': 0.1, clip: 1 })
    expect(TRAINER_DEFAULTS['train --bootstrap']).toEqual({ lr: 3e-3, beta1: ADAMW_DEFAULTS.beta1, beta2: 0.999, 'weight-decay': 0.01, clip: 1 })
    expect(defaultsLine('train')).toBe('defaults: --lr 0.003 --beta1 0.9 --beta2 0.95 --weight-decay 0.1 --clip 1')
  })

  it('--help shows both lines', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile('node_modules/.bin/tsx', ['web/src/cli/bin.ts', '--help'], { timeout: 120_000 }, (err, stdout) => { if (err !== null) reject(err); else resolve(stdout) })
    })
    const lines = out.split('\n').map(l => l.trim())
    expect(lines).toContain(defaultsLine('train'))
    expect(lines).toContain(defaultsLine('train --bootstrap'))
  }, 120_000)
})
