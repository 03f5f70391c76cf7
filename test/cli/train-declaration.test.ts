/**
 * `webswarm train --bootstrap … --declare`: the flags become the run declaration (swarm-train.ts
 * `runDeclaration`), checked before the peer joins; here the delayed outer update's flags.
 */
import { describe, expect, it } from 'vitest'
import { UsageError } from '../../web/src/cli/args.ts'
import { COMMANDS } from '../../web/src/cli/command-table.ts'
import { parseCommandLine } from '../../web/src/cli/option-table.ts'
import { runDeclaration } from '../../web/src/cli/swarm-train.ts'
import type { RunSpec } from '../../web/src/swarm/train/run-board.ts'

async function declared (...extra: string[]): Promise<RunSpec> {
  const line = parseCommandLine(['train', '--bootstrap', '/ip4/1.2.3.4/tcp/1/ws/p2p/x', '--run', 'r', '--declare', ...extra], COMMANDS)
  if (line.kind !== 'run') throw new Error(`expected a command to run, got ${JSON.stringify(line)}`)
  return await runDeclaration(line.flags, 'r')
}

describe('train --declare: the delayed outer update', () => {
  it('none by default; --delay-outer is d = 1 (true); --delay-outer-syncs N declares N syncs, 1 written as --delay-outer\'s true', async () => {
    expect((await declared()).delayOuter).toBe(false)
    expect((await declared('--delay-outer')).delayOuter).toBe(true)
    expect((await declared('--delay-outer-syncs', '2')).delayOuter).toBe(2)
    expect((await declared('--delay-outer-syncs', '4')).delayOuter).toBe(4)
    expect((await declared('--delay-outer-syncs', '1')).delayOuter).toBe(true)
  })

  it('refuses a count outside 1–4, one that is not an integer, and both flags at once, naming the problem', async () => {
    const refused: Array<[string[], RegExp]> = [
      [['--delay-outer-syncs', '5'], /^run r: run field delayOuter must be true or false, or an integer number of syncs in \[1, 4\], got 5$/],
      [['--delay-outer-syncs', '0'], /^run r: --delay-outer-syncs: '0' is not an integer ≥ 1$/],
      [['--delay-outer-syncs', '1.5'], /^run r: --delay-outer-syncs: '1.5' is not an integer ≥ 1$/],
      [['--delay-outer-syncs', 'x'], /^run r: --delay-outer-syncs: 'x' is not a number$/],
      [['--delay-outer', '--delay-outer-syncs', '2'], /^run r: give --delay-outer \(1 sync\) or --delay-outer-syncs N, not both$/]
    ]
    for (const [argv, message] of refused) {
      const err = await declared(...argv).catch((e: unknown) => e)
      expect(err, argv.join(' ')).toBeInstanceOf(UsageError)
      expect((err as Error).message, argv.join(' ')).toMatch(message)
    }
  })
})
