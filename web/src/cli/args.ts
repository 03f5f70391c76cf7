/** Readers of a `webswarm` command's parsed flags (option-table.ts parses them and fills the defaults in). */
import { WebSwarmError } from '../util/errors.ts'

/** Bad command-line input: printed as one line, exit status 2. */
export class UsageError extends WebSwarmError {
  override name = 'UsageError'
  readonly errorCode = 'cli.usage'
  readonly callerFault = true
}

/** Parsed flags; a flag declared `multiple` (e.g. --bootstrap) is a list. */
export type Flags = Record<string, string | boolean | string[] | undefined>

export function str (f: Flags, name: string): string | undefined {
  const v = f[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw new UsageError(`--${name} needs a value`)
  return v
}

/** Every value of a repeatable flag (one given once may also arrive as a plain string). */
export function strings (f: Flags, name: string): string[] {
  const v = f[name]
  if (v === undefined) return []
  if (typeof v === 'string') return [v]
  if (typeof v === 'boolean') throw new UsageError(`--${name} needs a value`)
  return v
}

export function required (f: Flags, name: string): string {
  const v = str(f, name)
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`)
  return v
}

/**
 * A number option's value: given, or its table's default (option-table.ts fills defaults in); an
 * option with neither is required.
 */
export function num (f: Flags, name: string): number {
  const n = optNum(f, name)
  if (n === undefined) throw new UsageError(`--${name} is required`)
  return n
}

/** A number option's value, or undefined where it has no fixed default and was not given. */
export function optNum (f: Flags, name: string): number | undefined {
  const v = str(f, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name}: '${v}' is not a number`)
  return n
}

/** An integer option's value ≥ `min`: given, or its table's default; an option with neither is required. */
export function int (f: Flags, name: string, min = 0): number {
  const n = optInt(f, name, min)
  if (n === undefined) throw new UsageError(`--${name} is required`)
  return n
}

/** An integer option's value ≥ `min`, or undefined where it has no fixed default and was not given. */
export function optInt (f: Flags, name: string, min = 0): number | undefined {
  const n = optNum(f, name)
  if (n !== undefined && (!Number.isInteger(n) || n < min)) throw new UsageError(`--${name}: '${String(f[name])}' is not an integer ≥ ${min}`)
  return n
}

/** "5,17,3" → [5, 17, 3] */
export function ids (f: Flags, name: string): number[] {
  const v = required(f, name)
  const out = v.split(',').map(s => s.trim()).filter(s => s !== '').map(Number)
  if (out.length === 0 || !out.every(n => Number.isInteger(n) && n >= 0)) throw new UsageError(`--${name}: '${v}' is not a comma-separated list of token ids`)
  return out
}

export type DeviceKind = 'webgpu' | 'cpu'

export function device (f: Flags): DeviceKind {
  const d = str(f, 'device') // default: the command table's
  if (d !== 'webgpu' && d !== 'cpu') throw new UsageError(`--device must be webgpu or cpu, got '${d ?? ''}'`)
  return d
}
