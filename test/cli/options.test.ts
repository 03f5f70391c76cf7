/**
 * Per-command option tables (web/src/cli/command-table.ts): each command takes only its own
 * options, with the defaults its table declares, and `--help` prints that table.
 */
import { execFile } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { UsageError } from '../../web/src/cli/args.ts'
import { COMMANDS } from '../../web/src/cli/command-table.ts'
import { commandHelp, overview, parseCommandLine, type CommandLine } from '../../web/src/cli/option-table.ts'
import { TRAINER_DEFAULTS } from '../../web/src/cli/trainer-defaults.ts'

const parse = (...argv: string[]): CommandLine => parseCommandLine(argv, COMMANDS)

function ran (line: CommandLine): Extract<CommandLine, { kind: 'run' }> {
  if (line.kind !== 'run') throw new Error(`expected a command to run, got ${JSON.stringify(line)}`)
  return line
}

describe('webswarm option tables', () => {
  it('fills each command\'s own defaults in: the trainers differ, and take their optimizer row from TRAINER_DEFAULTS', () => {
    const local = ran(parse('train', '--config', 'c.json', '--data', 'brown', '--steps', '3', '--out', 'o'))
    expect(local.command.key).toBe('train')
    expect(local.flags).toMatchObject({ batch: '8', 'seq-len': '64', seed: '0', device: 'webgpu', beta2: String(TRAINER_DEFAULTS.train.beta2), 'weight-decay': '0.1' })
    expect(local.flags['min-lr']).toBeUndefined() // derived from --lr by the command
    const swarm = ran(parse('train', '--bootstrap', '/ip4/1.2.3.4/tcp/1/ws/p2p/x', '--run', 'r'))
    expect(swarm.command.key).toBe('train --bootstrap')
    expect(swarm.flags).toMatchObject({ batch: '1', 'seq-len': '32', seed: '1', codec: 'q8', beta2: String(TRAINER_DEFAULTS['train --bootstrap'].beta2), bootstrap: ['/ip4/1.2.3.4/tcp/1/ws/p2p/x'] })
    expect(ran(parse('api', '--bootstrap=http://relay:8080', '--model', 'm')).flags).toMatchObject({ host: '127.0.0.1', port: '8000', 'rate-limit': '600' })
    // A given value wins over the default; the command comes first or after options.
    expect(ran(parse('--device', 'cpu', 'serve', '--model', 'm', '--bootstrap', 'b', '--cache-tokens', '256')).flags).toMatchObject({ device: 'cpu', 'cache-tokens': '256' })
  })

  it('refuses an option the command does not take, naming both', () => {
    const refused: Array<[string[], RegExp]> = [
      [['train', '--max-gpu-memory', '1GB'], /^train does not take --max-gpu-memory \(webswarm train --help/],
      [['logits', '--bootstrap', 'b', '--model', 'm'], /^logits does not take --bootstrap/],
      [['api', '--bootstrap', 'b', '--resume'], /^api does not take --resume/],
      [['train', '--bootstrap', 'b', '--run', 'r', '--checkpoint-every', '5'], /^train --bootstrap does not take --checkpoint-every/],
      [['generate', '--model', 'm', '--verify', '0.1'], /^generate does not take --verify \(it goes with --bootstrap;/],
      [['serve', '--frobnicate'], /^serve does not take --frobnicate/]
    ]
    for (const [argv, message] of refused) {
      let err: unknown
      try { parse(...argv) } catch (e) { err = e }
      expect(err, argv.join(' ')).toBeInstanceOf(UsageError)
      expect((err as Error).message, argv.join(' ')).toMatch(message)
    }
    expect(() => parse('frobnicate')).toThrow(/unknown command 'frobnicate'/)
    expect(() => parse('train', '--resume=yes')).toThrow(UsageError)
  })

  it('an option has one type wherever it is declared (the command is found before its table is known)', () => {
    const types = new Map<string, string>()
    for (const c of COMMANDS) {
      for (const [name, o] of Object.entries(c.options)) {
        expect(types.get(name) ?? o.type, `--${name} in ${c.key}`).toBe(o.type)
        types.set(name, o.type)
      }
    }
  })

  it('--help prints the command\'s table with its defaults; help without a command prints the overview', () => {
    for (const c of COMMANDS) {
      const text = commandHelp(c)
      for (const [name, o] of Object.entries(c.options)) {
        const row = text.split('\n').find(l => l.trimStart().startsWith(`--${name} `) || l.trim() === `--${name}`)
        expect(row, `${c.key} --${name}`).toBeDefined()
        const dflt = o.default ?? o.derivedDefault
        if (dflt !== undefined) expect(row, `${c.key} --${name}`).toContain(`(default: ${dflt})`)
      }
    }
    expect(parse('train', '--bootstrap', '--help')).toMatchObject({ kind: 'help', status: 0, command: { key: 'train --bootstrap' } })
    expect(parse('help', 'serve')).toMatchObject({ kind: 'help', status: 0, command: { key: 'serve' } })
    expect(parse('--help')).toEqual({ kind: 'help', command: undefined, status: 0 })
    expect(parse()).toEqual({ kind: 'help', command: undefined, status: 2 })
  })

  it('--version; the relay\'s spellings (--ice-server, --api-rate-limit) are taken as the documented ones', () => {
    expect(parse('--version')).toEqual({ kind: 'version' })
    const serve = ran(parse('serve', '--bootstrap', 'b', '--model', 'm', '--ice-server', 'none', '--ice-server=stun:a:1'))
    expect(serve.flags['ice-servers']).toEqual(['none', 'stun:a:1'])
    expect(serve.flags['ice-server']).toBeUndefined()
    const api = ran(parse('api', '--bootstrap', 'b', '--model', 'm', '--api-rate-limit', '5'))
    expect(api.flags['rate-limit']).toBe('5')
    expect(ran(parse('api', '--bootstrap', 'b', '--model', 'm')).flags['rate-limit']).toBe('600')
    // Documented once: the aliases are not in --help.
    const apiHelp = commandHelp(COMMANDS.find(c => c.key === 'api')!)
    expect(apiHelp).toMatch(/--rate-limit N/)
    expect(apiHelp).not.toMatch(/--api-rate-limit/)
  })

  it('--help of a command with a swarm form says how to see that form\'s options; the overview aligns every row', () => {
    const help = (key: string): string => commandHelp(COMMANDS.find(c => c.key === key)!, COMMANDS)
    expect(help('generate')).toMatch(/with --bootstrap, generate runs with the swarm and takes other options \(--verify, .*\):\nwebswarm generate --bootstrap X --help lists them/)
    expect(help('train')).toMatch(/\(--run, .*webswarm train --bootstrap X --help/s)
    expect(help('train --bootstrap')).toMatch(/^usage: webswarm train --bootstrap MULTIADDR\|URL --run ID/)
    expect(help('train --bootstrap')).toMatch(/without --bootstrap, train runs on this machine alone: webswarm train --help/)
    expect(help('logits')).not.toMatch(/--bootstrap/)
    expect(help('generate')).not.toMatch(/printed back/)
    expect(help('generate')).toMatch(/--chat TEXT +one user turn, rendered as the API renders chats/)
    const rows = overview(COMMANDS, '').split('\n').filter(l => /^ {2}\S/.test(l))
    expect(rows).toHaveLength(COMMANDS.length)
    for (const r of rows) expect(r.slice(2, 23).trimEnd().length < 21 && r[23] !== ' ' && r[22] === ' ', r).toBe(true)
    expect(rows.find(r => r.includes('--run ID'))).toMatch(/^ {2}train {16}--bootstrap MULTIADDR\|URL --run ID/)
  })

  it('the command line: `serve --help` exits 0 with its table; a foreign option exits 2 with one line', async () => {
    const run = async (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => await new Promise(resolve => {
      execFile('node_modules/.bin/tsx', ['web/src/cli/bin.ts', ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
      })
    })
    const help = await run(['serve', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: webswarm serve /)
    expect(help.stdout).toMatch(/--cache-tokens N +.*\(default: 4096\)/)
    const bad = await run(['api', '--bootstrap', 'b', '--model', 'm', '--cache-tokens', '5'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('webswarm: api does not take --cache-tokens (webswarm api --help lists its options)\n')
  }, 120_000)
})
