import { toHfConfig } from './config.ts'
import { CheckpointError } from './errors.ts'
import type { CausalLM, ParamStore } from './model.ts'
import type { AdamW } from './optimizer.ts'
import type { ParamSpec } from './params.ts'
import { decodeSafetensors, encodeSafetensors } from './safetensors.ts'
import type { ModelSource } from './source.ts'
import { toHfTensors } from './weights.ts'

/**
 * A checkpoint is a Hugging Face model directory plus optimizer state:
 *   config.json            the model config (HF keys)
 *   model.safetensors      weights, HF names (experts per expert), F32
 *   optimizer.safetensors  AdamW moments: `exp_avg.<name>`, `exp_avg_sq.<name>` (HF names)
 *   trainer.json           { format, step, adamw, ... } — the caller's metadata
 * so `webswarm generate --model DIR` loads a checkpoint like any HF model.
 */
const CHECKPOINT_FORMAT = 'webswarm-checkpoint-1'

/** Files by name: a directory (Node), OPFS or IndexedDB (browser). */
export interface CheckpointStore {
  readonly label: string
  write: (file: string, bytes: Uint8Array) => Promise<void>
  read: (file: string) => Promise<Uint8Array | undefined>
}

/** The store as a ModelSource, so loadModel reads checkpoints. */
export function storeSource (store: CheckpointStore): ModelSource {
  const cache = new Map<string, Uint8Array | undefined>()
  const get = async (f: string): Promise<Uint8Array | undefined> => {
    if (!cache.has(f)) cache.set(f, await store.read(f))
    return cache.get(f)
  }
  return {
    label: store.label,
    async size (f) { return (await get(f))?.byteLength },
    async read (f, offset, length) {
      const b = await get(f)
      if (b === undefined) throw new CheckpointError(`${store.label}: ${f} not found`)
      if (offset + length > b.byteLength) throw new CheckpointError(`${store.label}/${f}: bytes [${offset}, ${offset + length}) past its end (${b.byteLength})`)
      return b.subarray(offset, offset + length)
    }
  }
}

/** A directory on disk (Node). Files are written to a temporary name and renamed (no torn checkpoints). */
export function directoryStore (dir: string): CheckpointStore {
  return {
    label: dir,
    async write (file, bytes) {
      const fs = await import('node:fs/promises')
      await fs.mkdir(dir, { recursive: true })
      const tmp = `${dir}/.${file}.tmp`
      await fs.writeFile(tmp, bytes)
      await fs.rename(tmp, `${dir}/${file}`)
    },
    async read (file) {
      const fs = await import('node:fs/promises')
      try {
        return new Uint8Array(await fs.readFile(`${dir}/${file}`))
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') return undefined
        throw e
      }
    }
  }
}

/** The browser's origin-private file system, under a directory name. */
export function opfsStore (dirName: string): CheckpointStore {
  const dir = async (): Promise<FileSystemDirectoryHandle> => {
    const root = await navigator.storage.getDirectory()
    return await root.getDirectoryHandle(dirName, { create: true })
  }
  return {
    label: `opfs:${dirName}`,
    async write (file, bytes) {
      const fh = await (await dir()).getFileHandle(file, { create: true })
      const w = await fh.createWritable()
      await w.write(bytes as Uint8Array<ArrayBuffer>)
      await w.close()
    },
    async read (file) {
      try {
        const fh = await (await dir()).getFileHandle(file)
        return new Uint8Array(await (await fh.getFile()).arrayBuffer())
      } catch (e) {
        if ((e as DOMException).name === 'NotFoundError') return undefined
        throw e
      }
    }
  }
}

const IDB_STORE = 'files'

/** IndexedDB (where OPFS is missing): one object store of file name → bytes. */
export function indexedDbStore (dbName: string): CheckpointStore {
  const open = async (): Promise<IDBDatabase> => await new Promise((resolve, reject) => {
    const req = indexedDB.open(dbName, 1)
    req.onupgradeneeded = () => { req.result.createObjectStore(IDB_STORE) }
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(new CheckpointError(`IndexedDB ${dbName}: ${String(req.error)}`))
  })
  const tx = async <T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest): Promise<T> => {
    const db = await open()
    try {
      return await new Promise<T>((resolve, reject) => {
        const req = fn(db.transaction(IDB_STORE, mode).objectStore(IDB_STORE))
        req.onsuccess = () => resolve(req.result as T)
        req.onerror = () => reject(new CheckpointError(`IndexedDB ${dbName}: ${String(req.error)}`))
      })
    } finally {
      db.close()
    }
  }
  return {
    label: `idb:${dbName}`,
    async write (file, bytes) { await tx('readwrite', s => s.put(bytes, file)) },
    async read (file) {
      const v = await tx<Uint8Array | undefined>('readonly', s => s.get(file))
      return v === undefined ? undefined : new Uint8Array(v)
    }
  }
}

async function readStore (store: ParamStore, specs: readonly ParamSpec[]): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>()
  for (const s of specs) {
    const t = store.get(s.name)
    if (t === undefined) throw new CheckpointError(`no tensor for ${s.name}`)
    out.set(s.name, await t.readF32())
  }
  return out
}

/** Writes weights (+ optimizer state and metadata when given) in the checkpoint layout. */
export async function saveCheckpoint (store: CheckpointStore, model: CausalLM, optimizer?: AdamW, meta: Record<string, unknown> = {}): Promise<void> {
  const specs = model.paramSpecs()
  await store.write('config.json', new TextEncoder().encode(JSON.stringify(toHfConfig(model.config), null, 2) + '\n'))
  const weights = toHfTensors(specs, await readStore(model.params, specs))
  await store.write('model.safetensors', encodeSafetensors(weights, { format: 'pt' }))
  if (optimizer !== undefined) {
    const m = toHfTensors(specs, await readStore(optimizer.m, specs)).map(t => ({ ...t, name: `exp_avg.${t.name}` }))
    const v = toHfTensors(specs, await readStore(optimizer.v, specs)).map(t => ({ ...t, name: `exp_avg_sq.${t.name}` }))
    await store.write('optimizer.safetensors', encodeSafetensors([...m, ...v], { step: String(optimizer.step) }))
  }
  const trainer = { format: CHECKPOINT_FORMAT, step: optimizer?.step ?? 0, adamw: optimizer?.opts, ...meta }
  await store.write('trainer.json', new TextEncoder().encode(JSON.stringify(trainer, null, 2) + '\n'))
}

/** Reads trainer.json (undefined for a plain HF model directory). */
export async function readTrainerMeta (store: CheckpointStore): Promise<Record<string, unknown> | undefined> {
  const b = await store.read('trainer.json')
  if (b === undefined) return undefined
  const meta = JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>
  if (meta.format !== CHECKPOINT_FORMAT) throw new CheckpointError(`${store.label}/trainer.json: format ${JSON.stringify(meta.format)}, expected ${CHECKPOINT_FORMAT}`)
  return meta
}

/** Restores AdamW moments and step count saved by saveCheckpoint into an optimizer of the same model. */
export async function loadOptimizerState (store: CheckpointStore, optimizer: AdamW, specs: readonly ParamSpec[]): Promise<void> {
  const b = await store.read('optimizer.safetensors')
  if (b === undefined) throw new CheckpointError(`${store.label}: optimizer.safetensors not found`)
  const { tensors, metadata } = decodeSafetensors(b, `${store.label}/optimizer.safetensors`)
  const step = Number(metadata.step)
  if (!Number.isInteger(step) || step < 0) throw new CheckpointError(`${store.label}/optimizer.safetensors: bad step ${metadata.step}`)
  for (const [prefix, dst] of [['exp_avg.', optimizer.m], ['exp_avg_sq.', optimizer.v]] as const) {
    for (const s of specs) {
      const data = new Float32Array(s.shape.reduce((a, c) => a * c, 1))
      const each = s.hfShape.reduce((a, c) => a * c, 1)
      s.hfNames.forEach((n, p) => {
        const t = tensors.get(prefix + n)
        if (t === undefined) throw new CheckpointError(`${store.label}/optimizer.safetensors: missing tensor '${prefix + n}'`)
        if (t.data.length !== each) throw new CheckpointError(`${store.label}/optimizer.safetensors: tensor '${prefix + n}' has ${t.data.length} elements, expected ${each}`)
        data.set(t.data, p * each)
      })
      const target = dst.get(s.name)
      if (target === undefined) throw new CheckpointError(`optimizer has no state for ${s.name}`)
      target.backend.write(target, data)
    }
  }
  optimizer.step = step
}
