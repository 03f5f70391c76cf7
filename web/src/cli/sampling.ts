/** What both `generate`s (local and --bootstrap) share: the sampling flags, and how new tokens reach stdout. */
import { int, num, type Flags } from './args.ts'

/** --temperature, --top-k, --top-p and --seed (defaults: command-table.ts). */
export function samplingFlags (f: Flags): { temperature: number, topK: number, topP: number, seed: number } {
  return { temperature: num(f, 'temperature'), topK: int(f, 'top-k'), topP: num(f, 'top-p'), seed: int(f, 'seed') }
}

/** Writes each new token to stdout: as text through `decode`, or (without one) as comma-separated ids. */
export function tokenPrinter (decode: ((id: number) => string) | undefined): (id: number) => void {
  let first = true
  return id => {
    if (decode !== undefined) process.stdout.write(decode(id))
    else { process.stdout.write(first ? String(id) : `,${id}`); first = false }
  }
}
