/**
 * The relay's model files under `/models/`: every `.gguf` file in --models-dir (at
 * `/models/<file>.gguf`, or `/models/<folder>/<file>.gguf` one level down) and Hugging Face
 * safetensors folders (`/models/<folder>/<file>`, `default` standing for --default-model), served
 * with single byte ranges so a peer downloads only the tensors of the blocks it serves; and a
 * listing at `/models` (JSON: name, bytes, format, and the files a reader may ask for).
 *
 * Names are checked segment by segment against a strict pattern after percent-decoding, so no
 * request reaches a path outside --models-dir (no `..`, no separators, no hidden files).
 */
import { createReadStream } from 'node:fs'
import * as fs from 'node:fs/promises'
import type * as http from 'node:http'
import * as path from 'node:path'
import { pipeline } from 'node:stream/promises'

/** URL prefix of model files; `/models` itself is the listing. */
export const MODELS_PREFIX = '/models/'
/** One path segment: a file or folder name (no separators, no leading dot). */
const SEGMENT = /^[\w][\w.-]{0,199}$/
/** Files of a safetensors folder that are served (no checkpoints' optimizer state, no logs). */
const SAFETENSORS_FILE = /^(config\.json|tokenizer\.json|tokenizer_config\.json|generation_config\.json|model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json)$/
const GGUF_FILE = /\.gguf$/i
/** Headers a page on another origin may read from a range answer. */
const EXPOSED_HEADERS = 'content-length, content-range, accept-ranges, etag, last-modified'

type ModelFormat = 'gguf' | 'safetensors'

/** One entry of the `/models` listing. */
interface ModelListing {
  /** Path under /models/: `x.gguf`, `folder/x.gguf`, or a safetensors folder's name. */
  name: string
  /** Bytes of the file, or of a folder's served files together. */
  bytes: number
  format: ModelFormat
  /**
   * The files of the model's directory a reader may ask for (relative to it): a folder's served
   * files, or a top-level `.gguf` alone. A page reads them before loading so that it never probes
   * for an optional file (tokenizer.json, the safetensors index) the folder lacks: each such 404
   * is a console error in the browser.
   */
  files: string[]
}

/** Counts what the model routes send (the relay's /metrics reads it; tests count ranges with it). */
export interface ModelServeStats {
  /** Body bytes sent by GET answers (whole files and ranges). */
  bytesSent: number
  requests: number
}

function decodeSegments (rest: string): string[] | undefined {
  try {
    return rest.split('/').map(s => decodeURIComponent(s))
  } catch {
    return undefined
  }
}

/**
 * The file on disk a `/models/<rest>` request names, or undefined when the name is not one the
 * relay serves. Pure path logic (no disk access).
 */
export function modelFilePath (modelsDir: string, defaultModel: string, rest: string): string | undefined {
  const parts = decodeSegments(rest)
  if (parts === undefined || !parts.every(p => SEGMENT.test(p))) return undefined
  const root = path.resolve(modelsDir)
  if (parts.length === 1) return GGUF_FILE.test(parts[0]) ? path.join(root, parts[0]) : undefined
  if (parts.length !== 2) return undefined
  const folder = parts[0] === 'default' ? defaultModel : parts[0]
  if (!SEGMENT.test(folder)) return undefined
  if (!SAFETENSORS_FILE.test(parts[1]) && !GGUF_FILE.test(parts[1])) return undefined
  return path.join(root, folder, parts[1])
}

/** Every served model under `modelsDir`, sorted by name (a missing folder lists nothing). */
async function listModels (modelsDir: string): Promise<ModelListing[]> {
  const root = path.resolve(modelsDir)
  const out: ModelListing[] = []
  let entries
  try {
    entries = await fs.readdir(root, { withFileTypes: true })
  } catch {
    return out
  }
  for (const e of entries) {
    if (!SEGMENT.test(e.name)) continue
    const full = path.join(root, e.name)
    if (e.isFile() && GGUF_FILE.test(e.name)) {
      out.push({ name: e.name, bytes: (await fs.stat(full)).size, format: 'gguf', files: [e.name] })
    } else if (e.isDirectory()) {
      let stBytes = 0
      let hasConfig = false
      let hasWeights = false
      const ggufs: Array<{ name: string, bytes: number }> = []
      const served: string[] = []
      for (const f of await fs.readdir(full, { withFileTypes: true })) {
        if (!f.isFile() || !SEGMENT.test(f.name)) continue
        const size = (await fs.stat(path.join(full, f.name))).size
        if (GGUF_FILE.test(f.name)) {
          ggufs.push({ name: f.name, bytes: size })
          served.push(f.name)
        } else if (SAFETENSORS_FILE.test(f.name)) {
          served.push(f.name)
          stBytes += size
          if (f.name === 'config.json') hasConfig = true
          if (f.name.endsWith('.safetensors')) hasWeights = true
        }
      }
      served.sort()
      for (const g of ggufs) out.push({ name: `${e.name}/${g.name}`, bytes: g.bytes, format: 'gguf', files: served })
      if (hasConfig && hasWeights) out.push({ name: e.name, bytes: stBytes, format: 'safetensors', files: served })
    }
  }
  return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
}

/** A parsed `Range` header: one satisfiable range, none (whole file), or unsatisfiable. */
export type RangeResult = { kind: 'whole' } | { kind: 'range', start: number, end: number } | { kind: 'unsatisfiable' }

/**
 * `Range: bytes=a-b | a- | -n` against a file of `size` bytes (end inclusive, clamped to the
 * file). Multiple ranges are refused as unsatisfiable: our readers never ask for them, and the
 * alternative, ignoring the header, would send a whole multi-GB file.
 */
export function parseRange (header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'whole' }
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return { kind: 'unsatisfiable' }
  let start: number
  let end = size - 1
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0) return { kind: 'unsatisfiable' }
    start = Math.max(0, size - n)
  } else {
    start = Number(m[1])
    if (m[2] !== '') end = Math.min(Number(m[2]), size - 1)
    if (m[2] !== '' && Number(m[2]) < start) return { kind: 'unsatisfiable' }
  }
  if (start >= size || start > end) return { kind: 'unsatisfiable' }
  return { kind: 'range', start, end }
}

function sendJson (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'access-control-allow-origin': '*' })
  res.end(JSON.stringify(body, null, 2))
}

/** `/models` (listing) and `/models/...` (files); OPTIONS answers a CORS preflight for Range. */
export async function serveModels (opts: { modelsDir: string, defaultModel: string, stats: ModelServeStats }, pathname: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method === 'OPTIONS') {
    res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, HEAD', 'access-control-allow-headers': 'range, if-range', 'access-control-max-age': '86400' })
    res.end()
    return
  }
  if (pathname === '/models' || pathname === MODELS_PREFIX) {
    sendJson(res, 200, { default: opts.defaultModel, models: await listModels(opts.modelsDir) })
    return
  }
  const rest = pathname.slice(MODELS_PREFIX.length)
  const file = modelFilePath(opts.modelsDir, opts.defaultModel, rest)
  if (file === undefined) {
    sendJson(res, 404, { error: `not a model file: /models/${rest}` })
    return
  }
  let st
  try {
    st = await fs.stat(file)
  } catch {
    st = undefined
  }
  if (st === undefined || !st.isFile()) {
    sendJson(res, 404, { error: `no model file /models/${rest}` })
    return
  }
  const size = st.size
  const etag = `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`
  const common: http.OutgoingHttpHeaders = {
    'accept-ranges': 'bytes',
    etag,
    'last-modified': st.mtime.toUTCString(),
    'access-control-allow-origin': '*',
    'access-control-expose-headers': EXPOSED_HEADERS
  }
  // If-Range with another version's validator: the client's ranges belong to an older file.
  const ifRange = req.headers['if-range']
  const range = parseRange(ifRange !== undefined && ifRange !== etag ? undefined : req.headers.range, size)
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { ...common, 'content-range': `bytes */${size}` })
    res.end()
    return
  }
  const start = range.kind === 'range' ? range.start : 0
  const end = range.kind === 'range' ? range.end : size - 1
  const length = size === 0 ? 0 : end - start + 1
  const headers: http.OutgoingHttpHeaders = {
    ...common,
    'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream',
    'content-length': length
  }
  if (range.kind === 'range') headers['content-range'] = `bytes ${start}-${end}/${size}`
  res.writeHead(range.kind === 'range' ? 206 : 200, headers)
  opts.stats.requests++
  if (req.method === 'HEAD' || length === 0) {
    res.end()
    return
  }
  // Streamed: a whole multi-GB GGUF never sits in the relay's memory.
  const stream = createReadStream(file, { start, end })
  stream.on('data', chunk => { opts.stats.bytesSent += chunk.length })
  await pipeline(stream, res)
}
