/**
 * The relay's `/models` listing as the page reads it: which models it serves and each one's files.
 * The page loads a relay model with its file list (model/source.ts `files`) so that it never asks
 * for an optional file the folder lacks — a 404 the browser would log as a console error.
 */

/** One listed model: its path under `/models/` and, from relays that say so, its folder's files. */
interface ListedModel { name: string, files?: readonly string[] }

export interface ModelListing {
  /** The folder `/models/default` stands for. */
  default?: string
  models: ListedModel[]
}

/** Reads the listing of the relay at `relayUrl` (ends with '/'); throws on HTTP or JSON errors. */
export async function fetchModelListing (relayUrl: string): Promise<ModelListing> {
  const res = await fetch(new URL('models', relayUrl))
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  return parseModelListing(await res.json())
}

/** The listing's well-formed parts (a malformed entry is dropped, a malformed `files` ignored). */
export function parseModelListing (json: unknown): ModelListing {
  const o = (json ?? {}) as { default?: unknown, models?: unknown }
  const models: ListedModel[] = []
  for (const m of Array.isArray(o.models) ? o.models as unknown[] : []) {
    const { name, files } = (m ?? {}) as { name?: unknown, files?: unknown }
    if (typeof name !== 'string') continue
    const listed = Array.isArray(files) && files.every(f => typeof f === 'string') ? files as string[] : undefined
    models.push(listed === undefined ? { name } : { name, files: listed })
  }
  return { default: typeof o.default === 'string' ? o.default : undefined, models }
}

/**
 * The files the listing gives for the model at `modelUrl`, or undefined when it gives none: a
 * model on another server, one the listing does not name, or a relay that predates `files`.
 */
export function listedFiles (listing: ModelListing, relayUrl: string, modelUrl: string): readonly string[] | undefined {
  const prefix = new URL('models/', relayUrl).toString()
  if (!modelUrl.startsWith(prefix)) return undefined
  const parts = modelUrl.slice(prefix.length).replace(/\/+$/, '').split('/')
  // `/models/default/…` stands for the default folder's files (relay/models.ts).
  if (parts.length > 0 && parts[0] === 'default' && listing.default !== undefined) parts[0] = listing.default
  const name = parts.join('/')
  return listing.models.find(m => m.name === name)?.files
}
