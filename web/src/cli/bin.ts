#!/usr/bin/env -S npx tsx
/**
 * `webswarm` — the Node command line. Start-up stays fast: only node:util, the error classes
 * (cli/failures.ts) and the command tables (cli/command-table.ts: every command's options with
 * their defaults) are loaded here; each command imports what it needs when it runs.
 *
 *   npm run --silent webswarm -- logits   --model DIR --tokens 5,17,3 --out FILE
 *   npm run --silent webswarm -- generate --model DIR (--tokens IDS | --prompt TEXT) --max-new-tokens N [...]
 *   npm run --silent webswarm -- grad     --model DIR --inputs IDS --targets IDS --out DIR2
 *   npm run --silent webswarm -- train    (--config FILE | --model DIR) --data FILE --steps N --out DIR [...]
 *   npm run --silent webswarm -- <command> --help   (its options and their defaults)
 *   npm run --silent webswarm -- --version
 */
import { COMMANDS, OVERVIEW_EPILOGUE } from './command-table.ts'
import { exitStatusOf, isExpectedFailure, networkFailure } from './failures.ts'
import { commandHelp, overview, parseCommandLine } from './option-table.ts'

async function main (argv: string[]): Promise<number> {
  const line = parseCommandLine(argv, COMMANDS)
  if (line.kind === 'version') {
    const { readFile } = await import('node:fs/promises')
    const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`webswarm ${pkg.version}\n`)
    return 0
  }
  if (line.kind === 'help') {
    process.stdout.write(line.command !== undefined ? commandHelp(line.command, COMMANDS) : overview(COMMANDS, OVERVIEW_EPILOGUE))
    return line.status
  }
  // Swarm commands run for long with many peers: a stray rejection on one connection is logged, not fatal.
  if (line.flags.bootstrap !== undefined) (await import('../util/process-guard.ts')).keepRunningOnUnhandledRejections('webswarm')
  return await line.command.run(line.flags)
}

const argv = process.argv.slice(2)
main(argv).then(code => {
  process.exitCode = code
}, (e: unknown) => {
  const err = e as Error
  // One line for expected failures (bad input, no adapter, bad files, a host that does not
  // answer: named with the URLs given for it); a stack only for bugs.
  if (isExpectedFailure(e)) process.stderr.write(`webswarm: ${networkFailure(e, argv.map(a => a.replace(/^--[\w-]+=/, '')).filter(a => /^https?:\/\//i.test(a))) ?? err.message}\n`)
  else process.stderr.write(`webswarm: ${err?.stack ?? String(e)}\n`)
  process.exitCode = exitStatusOf(e)
})
