/**
 * Fetches a file by manifest root from several providers in parallel: find providers, get and
 * verify the manifest, then keep every provider busy with chunk requests (bounded per provider and
 * in all), verify each chunk's sha256, and re-queue a chunk whenever its provider fails, lacks it,
 * or disappears (a dropped provider's in-flight requests are cancelled and re-requested from the
 * others). Chunks already in the store are skipped, so a fetch resumes where an earlier one stopped.
 */
import type { PeerId } from '@libp2p/interface'
import { SHARD_PROTOCOL } from '../protocols.ts'
import { call, CancelledError, ErrorCode, RemoteError } from '../stream/index.ts'
import type { StreamNode } from '../stream/rpc.ts'
import {
  DEFAULT_CHUNK_IDLE_MS, DEFAULT_CHUNK_TIMEOUT_MS, DEFAULT_LOOKUP_TIMEOUT_MS, DEFAULT_LOOKUPS, DEFAULT_MANIFEST_TIMEOUT_MS, DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_PROVIDERS, DEFAULT_PER_PROVIDER, DEFAULT_PROVIDER_FAILURES, HASH_BYTES, MAX_MANIFEST_CHUNKS
} from './constants.ts'
import { ChunkHashMismatchError, ManifestError, NoProvidersError, ShardFetchError } from './errors.ts'
import { chunkCount, chunkHash, chunkLength, manifestRoot, sha256, toHex, type ShardManifest } from './manifest.ts'
import type { ProviderDirectory } from './providers.ts'
import type { ShardStore } from './store.ts'

export interface FetchShardOptions {
  directory: ProviderDirectory
  store: ShardStore
  signal?: AbortSignal
  /** Concurrent requests per provider. @default 2 */
  perProvider?: number
  /** Concurrent requests in all. @default 8 */
  maxInFlight?: number
  /** One chunk request, dial included (ms). @default 15,000 */
  chunkTimeoutMs?: number
  /** A chunk request with no byte for this long fails (ms). @default 5,000 */
  chunkIdleMs?: number
  /** One manifest request (ms). @default 15,000 */
  manifestTimeoutMs?: number
  /** One provider lookup (ms). @default 15,000 */
  lookupTimeoutMs?: number
  /** Failures before a provider is dropped. @default 2 */
  providerFailures?: number
  /** Providers used at most. @default 16 */
  maxProviders?: number
  /** Lookups per fetch (the first plus re-lookups when all providers are gone). @default 3 */
  lookups?: number
  /** Called after each stored chunk. */
  onProgress?: (done: number, total: number) => void
  /** Where provider faults are reported (one line each). @default console.warn */
  log?: (line: string) => void
}

export interface FetchShardResult {
  manifest: ShardManifest
  /** Chunks fetched in this call, per provider (peer id string → count). */
  fetchedFrom: Map<string, number>
  /** Chunks that were already in the store. */
  alreadyHad: number
}

interface Provider {
  id: PeerId
  key: string
  inFlight: number
  failures: number
  dropped: boolean
  /** Aborts this provider's in-flight requests when it is dropped. */
  cancel: AbortController
}

/** Downloads (or resumes) the file named `root` into `options.store`. */
export async function fetchShard (node: StreamNode, root: string, options: FetchShardOptions): Promise<FetchShardResult> {
  const o = {
    perProvider: options.perProvider ?? DEFAULT_PER_PROVIDER,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    chunkTimeoutMs: options.chunkTimeoutMs ?? DEFAULT_CHUNK_TIMEOUT_MS,
    chunkIdleMs: options.chunkIdleMs ?? DEFAULT_CHUNK_IDLE_MS,
    manifestTimeoutMs: options.manifestTimeoutMs ?? DEFAULT_MANIFEST_TIMEOUT_MS,
    lookupTimeoutMs: options.lookupTimeoutMs ?? DEFAULT_LOOKUP_TIMEOUT_MS,
    providerFailures: options.providerFailures ?? DEFAULT_PROVIDER_FAILURES,
    maxProviders: options.maxProviders ?? DEFAULT_MAX_PROVIDERS,
    lookups: options.lookups ?? DEFAULT_LOOKUPS,
    log: options.log ?? ((line: string) => { console.warn(line) })
  }
  const { store, directory, signal } = options
  const providers = new Map<string, Provider>()
  let lookupsDone = 0

  const lookup = async (): Promise<void> => {
    lookupsDone++
    const found = await directory.findProviders(root, { signal: anySignal(signal, o.lookupTimeoutMs), limit: o.maxProviders })
    for (const id of found) {
      const key = id.toString()
      if (!providers.has(key) && providers.size < o.maxProviders) {
        providers.set(key, { id, key, inFlight: 0, failures: 0, dropped: false, cancel: new AbortController() })
      }
    }
  }
  const live = (): Provider[] => [...providers.values()].filter(p => !p.dropped)
  const drop = (p: Provider, why: string): void => {
    if (p.dropped) return
    p.dropped = true
    o.log(`webswarm/shard: dropping provider ${p.key} for ${root.slice(0, 12)}…: ${why}`)
    p.cancel.abort(new CancelledError(`provider ${p.key} dropped`))
  }

  // ---- manifest
  let manifest = store.getManifest(root)
  if (manifest === undefined) {
    while (manifest === undefined) {
      if (live().length === 0) {
        if (lookupsDone >= o.lookups) throw new NoProvidersError(`no provider of ${root} answered with its manifest (${lookupsDone} lookups)`)
        await lookup()
        if (live().length === 0) continue
      }
      for (const p of live()) {
        try {
          manifest = await fetchManifest(node, p.id, root, o.manifestTimeoutMs, signal)
          break
        } catch (err) {
          if (signal?.aborted === true) throw err
          drop(p, `manifest: ${describe(err)}`)
        }
      }
    }
    store.putManifest(root, manifest)
  }
  const m = manifest

  // ---- chunks
  const total = chunkCount(m)
  const queue: number[] = []
  let alreadyHad = 0
  for (let i = 0; i < total; i++) {
    if (store.hasChunk(chunkHash(m, i))) alreadyHad++
    else queue.push(i)
  }
  let done = alreadyHad
  const fetchedFrom = new Map<string, number>()
  const lacking = new Map<number, Set<string>>() // chunk → providers that answered NOT_FOUND
  let inFlight = 0
  let lookingUp = false

  await new Promise<void>((resolve, reject) => {
    let finished = false
    const finish = (err?: Error): void => {
      if (finished) return
      finished = true
      signal?.removeEventListener('abort', onAbort)
      if (err !== undefined) { for (const p of providers.values()) p.cancel.abort(err); reject(err) } else resolve()
    }
    const onAbort = (): void => { finish(new CancelledError(`fetch of ${root} cancelled: ${String(signal?.reason)}`)) }
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted === true) { onAbort(); return }

    const canServe = (p: Provider, i: number): boolean => lacking.get(i)?.has(p.key) !== true

    const pump = (): void => {
      if (finished) return
      if (queue.length === 0 && inFlight === 0) { finish(); return }
      // Least-loaded providers first, so work spreads over everyone.
      for (const p of live().sort((a, b) => a.inFlight - b.inFlight)) {
        while (p.inFlight < o.perProvider && inFlight < o.maxInFlight) {
          const k = queue.findIndex(i => canServe(p, i))
          if (k < 0) break
          start(p, queue.splice(k, 1)[0])
        }
      }
      if (inFlight > 0 || queue.length === 0 || lookingUp) return
      // Nothing running and chunks left: every live provider lacks them or none is left.
      if (lookupsDone >= o.lookups) {
        finish(new ShardFetchError(`${queue.length} of ${total} chunks of ${root} unavailable: ${live().length} providers left after ${lookupsDone} lookups`))
        return
      }
      lookingUp = true
      lacking.clear() // new lookup: give every provider another chance at every chunk
      lookup().then(() => { lookingUp = false; pump() }, (err: Error) => { lookingUp = false; finish(signal?.aborted === true ? err : new NoProvidersError(`provider lookup for ${root} failed: ${err.message}`)) })
    }

    const start = (p: Provider, i: number): void => {
      p.inFlight++
      inFlight++
      fetchChunk(node, p, m, i, o.chunkTimeoutMs, o.chunkIdleMs, signal).then((bytes) => {
        store.putChunk(chunkHash(m, i), bytes)
        fetchedFrom.set(p.key, (fetchedFrom.get(p.key) ?? 0) + 1)
        p.failures = 0
        done++
        options.onProgress?.(done, total)
      }, (err: unknown) => {
        queue.unshift(i) // re-request from someone else first
        if (finished || signal?.aborted === true) return
        if (err instanceof RemoteError && err.code === ErrorCode.NOT_FOUND) {
          const s = lacking.get(i) ?? new Set<string>()
          s.add(p.key)
          lacking.set(i, s)
        } else if (err instanceof ChunkHashMismatchError) {
          drop(p, err.message)
        } else if (!p.dropped && ++p.failures >= o.providerFailures) {
          drop(p, `${p.failures} failures, last ${describe(err)}`)
        }
      }).finally(() => {
        p.inFlight--
        inFlight--
        pump()
      })
    }
    pump()
  })
  return { manifest: m, fetchedFrom, alreadyHad }
}

async function fetchManifest (node: StreamNode, peer: PeerId, root: string, timeoutMs: number, signal?: AbortSignal): Promise<ShardManifest> {
  const res = await call(node, peer, SHARD_PROTOCOL, { meta: { op: 'manifest', root }, tensors: [] }, {
    signal, timeoutMs, maxMessageBytes: MAX_MANIFEST_CHUNKS * HASH_BYTES, maxTensors: 1, maxMetaBytes: 256
  })
  const size = res.meta?.size
  const chunkBytes = res.meta?.chunkBytes
  const t = res.tensors[0]
  if (typeof size !== 'number' || typeof chunkBytes !== 'number' || res.tensors.length !== 1 || t.name !== 'hashes' || t.dtype !== 'u8') {
    throw new ManifestError(`manifest response from ${peer.toString()} is not { size, chunkBytes } + u8 hashes`)
  }
  const manifest: ShardManifest = { size, chunkBytes, hashes: t.data }
  const got = await manifestRoot(manifest) // checks the fields too
  if (got !== root) throw new ManifestError(`manifest from ${peer.toString()} hashes to ${got}, not ${root}`)
  return manifest
}

async function fetchChunk (node: StreamNode, p: Provider, m: ShardManifest, i: number, timeoutMs: number, idleTimeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
  const hash = chunkHash(m, i)
  const res = await call(node, p.id, SHARD_PROTOCOL, { meta: { op: 'chunk', hash }, tensors: [] }, {
    signal: signal === undefined ? p.cancel.signal : AbortSignal.any([signal, p.cancel.signal]),
    timeoutMs,
    idleTimeoutMs,
    maxMessageBytes: chunkLength(m, i),
    maxTensors: 1,
    maxMetaBytes: 0,
    log: () => {} // a provider's bad frames surface as this call's error; the fetcher logs the drop
  })
  const t = res.tensors[0]
  if (res.tensors.length !== 1 || t.dtype !== 'u8' || t.data.byteLength !== chunkLength(m, i)) {
    throw new ChunkHashMismatchError(`chunk ${i} from ${p.key}: ${t?.data.byteLength ?? 0} bytes, expected ${chunkLength(m, i)}`)
  }
  const got = toHex(await sha256(t.data))
  if (got !== hash) throw new ChunkHashMismatchError(`chunk ${i} from ${p.key} hashes to ${got.slice(0, 12)}…, expected ${hash.slice(0, 12)}…`)
  return t.data
}

function anySignal (signal: AbortSignal | undefined, ms: number): AbortSignal {
  const t = AbortSignal.timeout(ms)
  return signal === undefined ? t : AbortSignal.any([signal, t])
}

/** `Name: message` of a thrown value; WebRTC can reject with things that are not Errors (e.g. an RTCErrorEvent). */
function describe (err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  const e = err as { type?: unknown, error?: unknown } | null
  if (typeof e === 'object' && e !== null && typeof e.type === 'string') return `${e.type} event${e.error instanceof Error ? ` (${e.error.name}: ${e.error.message})` : ''}`
  return String(err)
}
