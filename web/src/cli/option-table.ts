/**
 * What a `webswarm` command declares about its options — type, default and help, once — and what
 * is done with that table: node:util parseArgs parses against it (filling the defaults in), an
 * option the command does not take is refused by name, and `--help` prints it.
 */
import { parseArgs } from 'node:util'
import { UsageError, type Flags } from './args.ts'

/** One option of one command. */
interface OptionSpec {
  type: 'string' | 'boolean'
  /** The value's placeholder in help (`N`, `DIR`); string options only. */
  arg?: string
  /** Repeatable: the flags hold every value given, as a list. */
  multiple?: boolean
  /** A default the parser fills in when the option is absent (the command reads it like a given value). */
  default?: string | number
  /** A default that depends on other options or the model: printed by --help, applied by the command. */
  derivedDefault?: string
  /** Other spellings taken for this option (the relay's, older ones); not printed by --help. */
  aliases?: readonly string[]
  help: string
}

export type OptionTable = Readonly<Record<string, OptionSpec>>

/** A default that depends on other options or the model (see OptionSpec.derivedDefault). */
interface Derived { derivedDefault: string }

export function derived (text: string): Derived {
  return { derivedDefault: text }
}

/** An option with a value: `arg` its placeholder in help, `dflt` a fixed default or a {@link derived} one. */
export function value (arg: string, help: string, dflt?: string | number | Derived): OptionSpec {
  return { type: 'string', arg, help, ...(dflt === undefined ? {} : typeof dflt === 'object' ? dflt : { default: dflt }) }
}

/** A repeatable option with a value: the flags hold every one given, as a list. */
export function repeatable (arg: string, help: string, dflt?: Derived): OptionSpec {
  return { type: 'string', arg, help, multiple: true, ...dflt }
}

/** `spec`, also taken under the names `aliases` (see OptionSpec.aliases). */
export function alsoAs (spec: OptionSpec, ...aliases: string[]): OptionSpec {
  return { ...spec, aliases }
}

/** An option without a value (absent: false). */
export function flag (help: string): OptionSpec {
  return { type: 'boolean', help }
}

/** One command as `bin.ts` dispatches it: `key` is its name, or `name --bootstrap` for the swarm form of one. */
export interface CommandSpec {
  key: string
  /** What follows `webswarm KEY` in the overview: the required options and the main choices. */
  synopsis: string
  /** What it does, a few lines (printed under the synopsis). */
  about: string
  options: OptionTable
  /** Runs the command (its modules are imported here, so start-up loads only the tables). */
  run: (f: Flags) => Promise<number>
}

/** A parsed command line: the command to run and its flags, defaults filled in; or a request for help. */
export type CommandLine =
  | { kind: 'run', command: CommandSpec, flags: Flags }
  | { kind: 'help', command?: CommandSpec, status: number }
  | { kind: 'version' }

const HELP_FLAGS = { help: { type: 'boolean' } } as const

/**
 * `argv` against `commands`: the command is the first argument that is not an option (its swarm
 * form, `NAME --bootstrap`, when --bootstrap is given and the command has one); its table decides
 * which options it takes.
 */
export function parseCommandLine (argv: string[], commands: readonly CommandSpec[]): CommandLine {
  const name = firstPositional(argv, commands)
  // Asked anywhere, even where an option's value would go (`train --bootstrap --help`).
  const helpAsked = argv.includes('--help') || argv.includes('-h')
  if (name === undefined && argv.includes('--version')) return { kind: 'version' }
  if (name === undefined || name === 'help') {
    const about = name === 'help' ? commandNamed(positionals(argv, commands)[1], argv, commands) : undefined
    return { kind: 'help', command: about, status: name === undefined && !helpAsked ? 2 : 0 }
  }
  const command = commandNamed(name, argv, commands)
  if (command === undefined) throw new UsageError(`unknown command '${name}' (try --help)`)
  if (helpAsked) return { kind: 'help', command, status: 0 }
  argv = canonicalNames(argv, command.options)
  const options = parserOptions(command.options)
  for (const t of lenientTokens(argv, options)) {
    if (t.kind === 'option' && !(t.name in options)) throw new UsageError(notTaken(command, t.rawName, commands))
  }
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  const extra = parsed.positionals.slice(1)
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`)
  return { kind: 'run', command, flags: parsed.values as Flags }
}

/** `argv` with every alias of an option (OptionSpec.aliases) written as the option's own name. */
function canonicalNames (argv: string[], table: OptionTable): string[] {
  const canonical = new Map<string, string>()
  const options: Record<string, { type: 'string' | 'boolean' }> = {}
  for (const [name, o] of Object.entries(table)) {
    options[name] = { type: o.type }
    for (const a of o.aliases ?? []) { canonical.set(a, name); options[a] = { type: o.type } }
  }
  if (canonical.size === 0) return argv
  const out = [...argv]
  for (const t of lenientTokens(argv, options)) {
    const name = t.kind === 'option' ? canonical.get(t.name) : undefined
    if (t.kind === 'option' && name !== undefined) out[t.index] = t.inlineValue === true ? `--${name}=${t.value ?? ''}` : `--${name}`
  }
  return out
}

/** The option table as parseArgs takes it: defaults as strings (they are parsed like given values). */
function parserOptions (table: OptionTable): Record<string, { type: 'string' | 'boolean', multiple?: boolean, default?: string }> {
  const out: Record<string, { type: 'string' | 'boolean', multiple?: boolean, default?: string }> = {}
  for (const [name, o] of Object.entries(table)) {
    out[name] = { type: o.type, ...(o.multiple === true ? { multiple: true } : {}), ...(o.default === undefined ? {} : { default: String(o.default) }) }
  }
  return out
}

type Token = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number]

/** Tokens of argv as `options` read it, unknown options included (they are refused by name afterwards). */
function lenientTokens (argv: string[], options: Record<string, { type: 'string' | 'boolean' }>): Token[] {
  return parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true }).tokens
}

/** Every option any command takes: to tell option values from the positionals before the command is known. */
function allOptions (commands: readonly CommandSpec[]): Record<string, { type: 'string' | 'boolean' }> {
  const out: Record<string, { type: 'string' | 'boolean' }> = { ...HELP_FLAGS }
  for (const c of commands) {
    for (const [name, o] of Object.entries(c.options)) for (const n of [name, ...(o.aliases ?? [])]) out[n] = { type: o.type }
  }
  return out
}

function positionals (argv: string[], commands: readonly CommandSpec[]): string[] {
  return lenientTokens(argv, allOptions(commands)).flatMap(t => t.kind === 'positional' ? [t.value] : [])
}

function firstPositional (argv: string[], commands: readonly CommandSpec[]): string | undefined {
  return positionals(argv, commands)[0]
}

function commandNamed (name: string | undefined, argv: string[], commands: readonly CommandSpec[]): CommandSpec | undefined {
  if (name === undefined) return undefined
  const swarm = argv.some(a => a === '--bootstrap' || a.startsWith('--bootstrap=')) ? commands.find(c => c.key === `${name} --bootstrap`) : undefined
  return swarm ?? commands.find(c => c.key === name)
}

/** "train does not take --port": with where the option does belong when that helps (the swarm form of the same command). */
function notTaken (command: CommandSpec, rawName: string, commands: readonly CommandSpec[]): string {
  const name = rawName.replace(/^-+/, '')
  const swarmForm = commands.find(c => c.key === `${command.key} --bootstrap` && name in c.options)
  const hint = swarmForm !== undefined ? `it goes with --bootstrap; ` : ''
  return `${command.key} does not take ${rawName} (${hint}webswarm ${command.key} --help lists its options)`
}

/** The command as typed: `generate` for both `generate` and its swarm form `generate --bootstrap`. */
function commandName (c: CommandSpec): string {
  return c.key.replace(/ --bootstrap$/, '')
}

/**
 * `webswarm KEY --help`: synopsis, what it does, and every option with its default; and where the
 * command has a form with(out) --bootstrap, how to see that one's options (they differ).
 */
export function commandHelp (c: CommandSpec, commands: readonly CommandSpec[] = []): string {
  const name = commandName(c)
  const swarm = c.key.endsWith(' --bootstrap')
  const other = commands.find(o => o !== c && commandName(o) === name)
  const seeAlso = other === undefined
    ? ''
    : swarm
      ? `\nwithout --bootstrap, ${name} runs on this machine alone: webswarm ${name} --help lists those options\n`
      : `\nwith --bootstrap, ${name} runs with the swarm and takes other options (${swarmOnly(c, other)}):\nwebswarm ${name} --bootstrap X --help lists them\n`
  const rows = Object.entries(c.options).map(([name, o]) => {
    const flag = `--${name}${o.arg !== undefined ? ` ${o.arg}` : ''}`
    const dflt = o.default !== undefined ? ` (default: ${o.default})` : o.derivedDefault !== undefined ? ` (default: ${o.derivedDefault})` : ''
    return `  ${flag.padEnd(FLAG_COLUMN)} ${o.help}${dflt}`
  })
  return `usage: webswarm ${name} ${c.synopsis}\n${indent(c.about, '  ')}\n\noptions:\n${rows.join('\n')}\n${seeAlso}`
}

/** A few options the swarm form takes that the local one does not, for the pointer to its --help. */
function swarmOnly (local: CommandSpec, swarm: CommandSpec): string {
  const only = Object.keys(swarm.options).filter(o => !(o in local.options) && o !== 'bootstrap' && o !== 'ice-servers')
  return only.slice(0, 3).map(o => `--${o}`).join(', ') + (only.length > 3 ? ', …' : '')
}

/** Widths of the flag column in a command's --help and of the command column in the overview. */
const FLAG_COLUMN = 28
const KEY_COLUMN = 20

/** `webswarm --help`: every command's synopsis and what it does. */
export function overview (commands: readonly CommandSpec[], epilogue: string): string {
  const entries = commands.map(c => `  ${commandName(c).padEnd(KEY_COLUMN)} ${c.synopsis}\n${indent(c.about, ' '.repeat(KEY_COLUMN + 3))}`)
  return `usage: webswarm <command> [options]   (webswarm <command> --help: its options and their defaults)\n\ncommands:\n${entries.join('\n')}\n\n${epilogue}`
}

function indent (text: string, by: string): string {
  return text.split('\n').map(l => by + l).join('\n')
}
