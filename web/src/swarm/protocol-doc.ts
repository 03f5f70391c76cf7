/**
 * PROTOCOL.md's message tables, rendered by swarm/wire/schema.ts from the declared schemas
 * (swarm/wire/infer.ts, expert.ts, swarm/train/wire.ts). The document marks each table's place with
 * `<!-- schema:<name> … -->` … `<!-- /schema:<name> -->`; test/swarm/wire-schema.test.ts fails
 * when the document and the schemas disagree, and rewrites the tables when run with
 * UPDATE_PROTOCOL_MD=1.
 */
import { ALLREDUCE_MESSAGES } from './train/wire.ts'
import { EXPERT_MESSAGES } from './wire/expert.ts'
import { INFER_MESSAGES } from './wire/infer.ts'
import { renderTable } from './wire/schema.ts'

/** Each marked table: its name in the markers → its rendering. */
const PROTOCOL_TABLES: Readonly<Record<string, () => string>> = {
  allreduce: () => renderTable(ALLREDUCE_MESSAGES),
  infer: () => renderTable(INFER_MESSAGES),
  expert: () => renderTable(EXPERT_MESSAGES)
}

/** `markdown` with every marked table replaced by its rendering; throws if a marker pair is missing. */
export function fillProtocolDoc (markdown: string): string {
  let out = markdown
  for (const [name, render] of Object.entries(PROTOCOL_TABLES)) {
    const open = new RegExp(`<!-- schema:${name}\\b[^\\n]*-->\\n`)
    const m = open.exec(out)
    const close = `<!-- /schema:${name} -->`
    const end = out.indexOf(close)
    if (m === null || end < m.index) throw new Error(`PROTOCOL.md: no <!-- schema:${name} --> … ${close} markers`)
    const from = m.index + m[0].length
    out = out.slice(0, from) + render() + '\n' + out.slice(end)
  }
  return out
}
