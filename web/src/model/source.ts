import { nodeBuiltin } from '../util/node-builtin.ts'
import { WeightsSourceError } from './errors.ts'

/**
 * Where model files come from: a directory (Node), Blobs/Files (browser: a directory picker or
 * drag-and-drop), or an HTTP(S) base URL read with range requests. Weights are read by byte
 * range so a peer fetches only the tensors of the blocks it serves.
 */
export interface ModelSource {
  /** For messages: the directory, URL or 'files'. */
  readonly label: string
  /**
   * The one model file this source stands for, when it is a single file (a `.gguf`): given by
   * sourceFrom for a path or URL ending in .gguf, or by blobSource for one picked .gguf File.
   * Absent for a safetensors directory.
   */
  readonly file?: string
  /**
   * Byte length of the `file`'s GGUF header (tensor data start), when the source knows it (a
   * shard-backed source does): the header reader then reads exactly that much first, instead of
   * a fixed first read that could pull tensor bytes the source would have to fetch.
   */
  readonly headerBytes?: number
  /** Byte size of a file, or undefined if it does not exist. */
  size: (file: string) => Promise<number | undefined>
  /** Bytes [offset, offset + length) of a file. */
  read: (file: string, offset: number, length: number) => Promise<Uint8Array>
}

async function readText (src: ModelSource, file: string): Promise<string | undefined> {
  const n = await src.size(file)
  if (n === undefined) return undefined
  return new TextDecoder().decode(await src.read(file, 0, n))
}

export async function readJson (src: ModelSource, file: string): Promise<unknown> {
  const t = await readText(src, file)
  if (t === undefined) return undefined
  try {
    return JSON.parse(t)
  } catch (e) {
    throw new WeightsSourceError(`${src.label}/${file}: not valid JSON (${(e as Error).message})`)
  }
}

function checkName (file: string): void {
  if (file.includes('..') || file.startsWith('/') || file.includes('\\')) throw new WeightsSourceError(`refusing file name '${file}'`)
}

/** A directory on disk (Node only: node:fs is loaded at the call, out of the page bundle). */
export function directorySource (dir: string): ModelSource {
  return {
    label: dir,
    async size (file) {
      checkName(file)
      const fs = await nodeBuiltin('node:fs/promises')
      try {
        const st = await fs.stat(`${dir}/${file}`)
        return st.isFile() ? st.size : undefined
      } catch {
        return undefined
      }
    },
    async read (file, offset, length) {
      checkName(file)
      const fs = await nodeBuiltin('node:fs/promises')
      const fh = await fs.open(`${dir}/${file}`, 'r')
      try {
        const out = new Uint8Array(length)
        let got = 0
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got)
          if (bytesRead === 0) throw new WeightsSourceError(`${dir}/${file}: read ${got} of ${length} bytes at offset ${offset} (file truncated?)`)
          got += bytesRead
        }
        return out
      } finally {
        await fh.close()
      }
    }
  }
}

/** Files the user picked (browser `File`s, or any Blobs), keyed by file name. */
export function blobSource (files: ReadonlyMap<string, Blob> | readonly File[]): ModelSource {
  const map = new Map<string, Blob>()
  if (Array.isArray(files)) {
    for (const f of files as readonly File[]) map.set(f.name, f)
  } else {
    for (const [k, v] of files as ReadonlyMap<string, Blob>) map.set(k, v)
  }
  return {
    label: 'files',
    async size (file) { return map.get(file)?.size },
    async read (file, offset, length) {
      const b = map.get(file)
      if (b === undefined) throw new WeightsSourceError(`file '${file}' was not given`)
      if (offset + length > b.size) throw new WeightsSourceError(`${file}: bytes [${offset}, ${offset + length}) past its end (${b.size})`)
      return new Uint8Array(await b.slice(offset, offset + length).arrayBuffer())
    }
  }
}

/** Each HTTP request gives up after this long (a stalled server must not hang a peer). */
const HTTP_TIMEOUT_MS = 60_000

/** What is known of a URL source's files beforehand. */
export interface UrlSourceOptions {
  /**
   * Every file name under the base URL (a relay's `/models` listing says so): asking for the size
   * of another one answers undefined without a request. A probe for an optional file the server
   * lacks (tokenizer.json, model.safetensors.index.json) would otherwise be a 404, which a browser
   * logs as a console error. @default undefined: unknown, every file is asked for with HEAD
   */
  files?: readonly string[]
}

/**
 * An HTTP(S) base URL (e.g. `https://huggingface.co/ORG/MODEL/resolve/main`). Sizes come from
 * HEAD (404: no such file); data from `Range: bytes=a-b` (a server that ignores ranges and answers
 * 200 still works, at the cost of downloading the whole file per read).
 */
export function urlSource (base: string, fetchFn: typeof fetch = fetch, opts: UrlSourceOptions = {}): ModelSource {
  const root = base.replace(/\/+$/, '')
  const sizes = new Map<string, number | undefined>()
  const listed = opts.files === undefined ? undefined : new Set(opts.files)
  const url = (file: string): string => { checkName(file); return `${root}/${file}` }
  return {
    label: root,
    async size (file) {
      if (listed !== undefined && !listed.has(file)) return undefined
      if (sizes.has(file)) return sizes.get(file)
      const res = await fetchFn(url(file), { method: 'HEAD', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
      let n: number | undefined
      if (res.status === 404) n = undefined
      else if (!res.ok) throw new WeightsSourceError(`${url(file)}: HTTP ${res.status}`)
      else {
        const len = res.headers.get('content-length')
        if (len === null) throw new WeightsSourceError(`${url(file)}: no Content-Length (needed for range reads)`)
        n = Number(len)
      }
      sizes.set(file, n)
      return n
    },
    async read (file, offset, length) {
      if (length === 0) return new Uint8Array(0)
      const res = await fetchFn(url(file), { headers: { Range: `bytes=${offset}-${offset + length - 1}` }, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
      if (res.status === 206) {
        const buf = new Uint8Array(await res.arrayBuffer())
        if (buf.byteLength !== length) throw new WeightsSourceError(`${url(file)}: range ${offset}+${length} returned ${buf.byteLength} bytes`)
        return buf
      }
      if (res.status === 200) {
        const buf = new Uint8Array(await res.arrayBuffer())
        if (offset + length > buf.byteLength) throw new WeightsSourceError(`${url(file)}: bytes [${offset}, ${offset + length}) past its end (${buf.byteLength})`)
        return buf.slice(offset, offset + length)
      }
      throw new WeightsSourceError(`${url(file)}: HTTP ${res.status} for a range request`)
    }
  }
}

/** True for a file name or path of a GGUF model. */
export function isGgufName (name: string): boolean {
  return /\.gguf$/i.test(name.replace(/[?#].*$/, ''))
}

/** The same source, standing for one of its files (a .gguf). */
export function withFile (source: ModelSource, file: string): ModelSource {
  return { label: source.label, file, headerBytes: source.file === file ? source.headerBytes : undefined, size: source.size, read: source.read }
}

/**
 * A directory path, an http(s) URL, or (browser) a list of Files. A path or URL ending in
 * `.gguf` is a single-file model: the source is its directory, with `file` set. `opts` applies to
 * a URL (the files of its directory, when known).
 */
export function sourceFrom (where: string | readonly File[] | ReadonlyMap<string, Blob>, opts: UrlSourceOptions = {}): ModelSource {
  if (typeof where !== 'string') {
    const src = blobSource(where)
    const names = Array.isArray(where) ? (where as readonly File[]).map(f => f.name) : [...(where as ReadonlyMap<string, Blob>).keys()]
    const ggufs = names.filter(isGgufName)
    return ggufs.length === 1 ? withFile(src, ggufs[0]) : src
  }
  if (isGgufName(where)) {
    const cut = where.replace(/\/+$/, '').lastIndexOf('/')
    const dir = cut < 0 ? '.' : where.slice(0, cut)
    const file = where.slice(cut + 1)
    return withFile(/^https?:\/\//.test(where) ? urlSource(dir, fetch, opts) : directorySource(dir === '' ? '/' : dir), file)
  }
  if (/^https?:\/\//.test(where)) return urlSource(where, fetch, opts)
  return directorySource(where)
}
