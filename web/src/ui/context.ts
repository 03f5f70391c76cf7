/**
 * The page context: the one object every panel gets the GPU, the swarm and the page's settings
 * from — promises for what arrives later, events for what changes — instead of polling `window`
 * globals. It also owns this tab's signed entry in the swarm doc (so that panels merge their
 * fields into one entry with one lifetime), the page log and the short notices.
 *
 * Events (`addEventListener`): 'gpu' (probe finished), 'device' (the CPU fallback was chosen),
 * 'model' (reading the page model's config started, succeeded or failed: `modelStatus`),
 * 'swarm' (joined, or joining failed), 'self' (own entry written), 'log' (a log line),
 * 'notice' (a short message for people; detail: Notice).
 *
 * Query parameters read here: `relay=URL` (the relay to join and load models from; default the
 * origin that served the page), `model=URL`, `device=cpu`, `compute=main` (served blocks on the
 * page's thread instead of a worker), `swarm=NAME`, `entry-ttl=SECONDS`
 * (lifetime of this tab's swarm entry; tests shorten it to see closed tabs leave the map),
 * `max-gpu-memory=SIZE`.
 */
import type { Backend } from '../gpu/backend.ts'
import { cpu } from '../gpu/cpu-backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import type { ModelConfig } from '../model/config.ts'
import { parseByteSize } from '../model/memory-plan.ts'
import { loadConfig } from '../model/model.ts'
import { sourceFrom, type ModelSource } from '../model/source.ts'
import { PEER_ENTRY_TTL_MS } from '../net/crdt/entries.ts'
import { joinSwarm, type Swarm } from '../net/index.ts'
import { call, handle } from '../net/stream/index.ts'
import { RUN_CODECS, type RunCodec } from '../swarm/train/run-board.ts'
import { NoComputeDeviceError, NotJoinedError, PageParamError } from './errors.ts'
import { fetchModelListing, listedFiles, type ModelListing } from './model-listing.ts'

/** Shortest entry lifetime `?entry-ttl=` may ask for, ms: refreshes every half of it must get out. */
const MIN_ENTRY_TTL_MS = 2_000
/** Largest `?hedge-floor=`, ms: beyond the infer timeout a hedge would never fire. */
const MAX_HEDGE_FLOOR_MS = 60_000
/**
 * Lifetime of a page's swarm entry, ms (refreshed at half of it). Shorter than the 10 min Node
 * peers use: tabs close without notice, and the map lists a peer only while its entry lives — a
 * closed tab leaves it within 2 min, for one signed CRDT update a minute per tab.
 */
export const PAGE_ENTRY_TTL_MS = 2 * 60_000
/** Lines kept in the page log (older ones drop off). */
const LOG_LINES = 400

export interface PageParams {
  /** Base URL of the relay (ends with '/'). */
  relayUrl: string
  /** The relay's /bootstrap URL. */
  bootstrapUrl: string
  /** Whether `?relay=` named it (else it is the page's own origin). */
  relayGiven: boolean
  /** Model location (no trailing slash) and its short name. */
  modelUrl: string
  modelId: string
  /** 'cpu': compute on the CPU twins from the start. */
  device: 'auto' | 'cpu'
  /** Where served blocks run: a Web Worker (default), or the page's main thread (`?compute=main`). */
  compute: 'worker' | 'main'
  swarm?: string
  /** Lifetime of this tab's entry in the swarm doc, ms. */
  entryTtlMs: number
  /** GPU-memory budget asked for in the URL, bytes. */
  maxGpuMemory?: number
  /**
   * Least wait before the chat client hedges a slow hop on a spare, ms (`?hedge-floor=`): tests
   * about failover on a closed tab raise it so a loaded machine's slow step is not hedged too.
   */
  hedgeFloorMs?: number
  /** How a run this page declares sends pseudo-gradients (`?train-codec=q8|topk|sparseloco`, default q8). */
  trainCodec: RunCodec
}

/** Reads the page's query parameters; throws PageParamError naming a malformed one. */
export function readPageParams (href: string): PageParams {
  const url = new URL(href)
  const q = url.searchParams
  const relayText = q.get('relay')
  let relay: URL
  try {
    relay = new URL(relayText ?? './', href)
  } catch {
    throw new PageParamError(`?relay=${relayText ?? ''} is not a URL (want e.g. https://relay.example.org/)`)
  }
  if (relay.protocol !== 'http:' && relay.protocol !== 'https:') throw new PageParamError(`?relay= must be an http(s) URL, got ${relay.protocol}`)
  if (!relay.pathname.endsWith('/')) relay.pathname += '/'
  relay.search = ''
  relay.hash = ''
  const relayUrl = relay.toString()
  const modelUrl = new URL(q.get('model') ?? 'models/default', q.get('model') !== null ? href : relayUrl).toString().replace(/\/+$/, '')
  const ttlText = q.get('entry-ttl')
  let entryTtlMs = PAGE_ENTRY_TTL_MS
  if (ttlText !== null) {
    const s = Number(ttlText)
    if (!Number.isFinite(s) || s * 1000 < MIN_ENTRY_TTL_MS || s * 1000 > PEER_ENTRY_TTL_MS) throw new PageParamError(`?entry-ttl=${ttlText}: want seconds between ${MIN_ENTRY_TTL_MS / 1000} and ${PEER_ENTRY_TTL_MS / 1000}`)
    entryTtlMs = s * 1000
  }
  const mem = q.get('max-gpu-memory')
  const hedgeText = q.get('hedge-floor')
  const hedgeFloorMs = hedgeText === null ? undefined : Number(hedgeText)
  if (hedgeFloorMs !== undefined && !(Number.isInteger(hedgeFloorMs) && hedgeFloorMs >= 1 && hedgeFloorMs <= MAX_HEDGE_FLOOR_MS)) {
    throw new PageParamError(`?hedge-floor=${hedgeText ?? ''}: want whole milliseconds between 1 and ${MAX_HEDGE_FLOOR_MS}`)
  }
  const codecText = q.get('train-codec') ?? 'q8'
  const trainCodec = RUN_CODECS.find(c => c === codecText)
  if (trainCodec === undefined) throw new PageParamError(`?train-codec=${codecText}: want one of ${RUN_CODECS.join(', ')}`)
  return {
    relayUrl,
    bootstrapUrl: new URL('bootstrap', relayUrl).toString(),
    relayGiven: relayText !== null,
    modelUrl,
    modelId: modelUrl.split('/').at(-1) ?? 'model',
    device: q.get('device') === 'cpu' ? 'cpu' : 'auto',
    compute: q.get('compute') === 'main' ? 'main' : 'worker',
    swarm: q.get('swarm') ?? undefined,
    entryTtlMs,
    maxGpuMemory: mem === null ? undefined : parseByteSize(mem),
    hedgeFloorMs,
    trainCodec
  }
}

export type GpuStatus = { state: 'probing' } | { state: 'ready', gpu: GpuBackend } | { state: 'missing', reason: string }
export type SwarmStatus = { state: 'joining' } | { state: 'joined', swarm: Swarm } | { state: 'error', reason: string }
export type ModelStatus = { state: 'reading' } | { state: 'ready', config: ModelConfig } | { state: 'error', reason: string }
export interface Notice { text: string, level: 'info' | 'warn' | 'error' }

declare global {
  interface Window {
    /** The page's swarm membership, for tests and the console. */
    webswarm?: {
      peerId: string
      node: Swarm['node']
      doc: Swarm['doc']
      swarm: Swarm
      /** Framed tensor streams (net/stream) bound to nothing: pass `node` yourself. */
      tensors: { call: typeof call, handle: typeof handle }
    }
    /** The page context, for tests and the console. */
    webswarmPage?: PageContext
  }
}

export class PageContext extends EventTarget {
  gpuStatus: GpuStatus = { state: 'probing' }
  swarmStatus: SwarmStatus = { state: 'joining' }
  /** The user chose the CPU twins (no WebGPU, or by choice). */
  cpuChosen: boolean
  readonly logLines: string[] = []
  /** Resolves once the GPU probe is over: the adapter, or undefined without WebGPU. */
  readonly gpu: Promise<GpuBackend | undefined>
  private resolveGpu!: (g: GpuBackend | undefined) => void
  private selfData: Record<string, unknown> = {}
  private selfTimer?: ReturnType<typeof setTimeout>
  private selfWrites: Promise<void> = Promise.resolve()
  private joining?: Promise<void>
  /** The page model's config: being read, read, or unreadable (the relay down, a bad URL). */
  modelStatus: ModelStatus = { state: 'reading' }
  private readingModel?: Promise<void>
  private listing?: Promise<ModelListing>

  constructor (readonly params: PageParams) {
    super()
    this.cpuChosen = params.device === 'cpu'
    this.gpu = new Promise(resolve => { this.resolveGpu = resolve })
  }

  /** Records the GPU probe's outcome (main.ts probes once per page). */
  setGpu (status: Exclude<GpuStatus, { state: 'probing' }>): void {
    this.gpuStatus = status
    this.resolveGpu(status.state === 'ready' ? status.gpu : undefined)
    this.dispatchEvent(new Event('gpu'))
  }

  /** Blocks in the page's model, once its config is read (the map draws it even when nobody serves it). */
  get modelDepth (): number | undefined {
    return this.modelStatus.state === 'ready' ? this.modelStatus.config.numLayers : undefined
  }

  /** The relay's `/models` listing, read once per page (again after a failure). */
  async modelListing (): Promise<ModelListing> {
    this.listing ??= fetchModelListing(this.params.relayUrl)
    return await this.listing.catch(e => { this.listing = undefined; throw e })
  }

  /**
   * The files the relay lists for the model at `url`, or undefined when it lists none (a model
   * on another server, the listing unreadable): then its optional files are probed.
   */
  async modelFiles (url: string): Promise<readonly string[] | undefined> {
    try {
      return listedFiles(await this.modelListing(), this.params.relayUrl, url)
    } catch {
      // Without the listing the model is read as from any static server; reading it reports what fails.
      return undefined
    }
  }

  /** The model at `url`, read with the files the relay lists for it (no probe for a file it lacks). */
  async modelSource (url: string): Promise<ModelSource> {
    return sourceFrom(url, { files: await this.modelFiles(url) })
  }

  /** Reads the page model's config (again after a failure: Retry); the outcome is `modelStatus`. */
  async readModel (): Promise<void> {
    if (this.modelStatus.state === 'ready') return
    this.readingModel ??= (async () => {
      this.modelStatus = { state: 'reading' }
      this.dispatchEvent(new Event('model'))
      try {
        this.modelStatus = { state: 'ready', config: await loadConfig(await this.modelSource(this.params.modelUrl)) }
      } catch (e) {
        this.modelStatus = { state: 'error', reason: (e as Error).message }
        this.log(`reading the model at ${this.params.modelUrl} failed: ${(e as Error).message}`)
      } finally {
        this.readingModel = undefined
      }
      this.dispatchEvent(new Event('model'))
    })()
    await this.readingModel
  }

  /** Tries again whatever of the network failed: joining the swarm, reading the model (the notice's Retry). */
  async retry (): Promise<void> {
    await Promise.all([
      this.swarmStatus.state === 'error' ? this.join() : undefined,
      this.modelStatus.state === 'error' ? this.readModel() : undefined
    ])
  }

  /** Compute on the CPU twins from now on (the explicit fallback without WebGPU). */
  useCpu (): void {
    if (this.cpuChosen) return
    this.cpuChosen = true
    this.log('device: the CPU twins (chosen)')
    this.dispatchEvent(new Event('device'))
  }

  /** Where this tab computes: the GPU once probed, the CPU twins when chosen; else NoComputeDeviceError. */
  async backend (): Promise<Backend> {
    if (!this.cpuChosen) {
      const gpu = await this.gpu
      if (gpu !== undefined && !this.cpuChosen) return gpu
    }
    if (this.cpuChosen) return cpu
    throw new NoComputeDeviceError('this browser has no WebGPU: choose "Use the CPU instead" (slow, but it works) or open the page with ?device=cpu')
  }

  /**
   * Where the chat's embedding and head run: as backend(), but without WebGPU the CPU twins
   * without asking — they are small (a review measured byte-llama's chat at 139 tokens/s on the
   * CPU, 94 on SwiftShader), so the chat needs no choice from the user; serving blocks still asks.
   */
  async chatBackend (): Promise<Backend> {
    if (!this.cpuChosen && await this.gpu !== undefined) return await this.backend()
    return cpu
  }

  /** 'GPU', 'CPU', or 'none' yet: for status lines. */
  get deviceLabel (): string {
    if (this.cpuChosen) return 'CPU'
    if (this.gpuStatus.state === 'ready') return this.gpuStatus.gpu.info.software ? 'GPU (software)' : 'GPU'
    return this.gpuStatus.state === 'probing' ? 'probing…' : 'none'
  }

  /** The joined swarm: now, after the join in progress, or NotJoinedError when joining failed. */
  async swarm (): Promise<Swarm> {
    for (;;) {
      const s = this.swarmStatus
      if (s.state === 'joined') return s.swarm
      if (s.state === 'error') throw new NotJoinedError(`not in the swarm: ${s.reason}`)
      await new Promise(resolve => { this.addEventListener('swarm', resolve, { once: true }) })
    }
  }

  /** Joins the relay's swarm (again after a failure: the Retry button). */
  async join (): Promise<void> {
    if (this.swarmStatus.state === 'joined') return
    this.joining ??= (async () => {
      this.swarmStatus = { state: 'joining' }
      this.dispatchEvent(new Event('swarm'))
      try {
        const s = await joinSwarm({ bootstrapUrl: this.params.bootstrapUrl, swarm: this.params.swarm, log: l => { this.log(l) } })
        window.webswarm = { peerId: s.peerId, node: s.node, doc: s.doc, swarm: s, tensors: { call, handle } }
        this.swarmStatus = { state: 'joined', swarm: s }
        await this.publishSelf({ agent: navigator.userAgent.includes('Headless') ? 'headless' : 'browser', joinedAt: Date.now(), background: document.visibilityState === 'hidden' })
      } catch (e) {
        this.swarmStatus = { state: 'error', reason: (e as Error).message }
        this.log(`join failed: ${(e as Error).message}`)
      } finally {
        this.joining = undefined
      }
      this.dispatchEvent(new Event('swarm'))
    })()
    await this.joining
  }

  /**
   * Merges `patch` into this tab's signed swarm entry, written with the page's entry lifetime and
   * rewritten every half of it. (Swarm.updateSelf would refresh with the default 10 min lifetime
   * and undo a short `?entry-ttl=`.)
   */
  async publishSelf (patch: Record<string, unknown>): Promise<void> {
    this.selfData = { ...this.selfData, ...patch }
    const s = this.swarmStatus
    if (s.state !== 'joined') return // written when joined (join() publishes the merged data)
    clearTimeout(this.selfTimer)
    this.selfTimer = setTimeout(() => { void this.publishSelf({}).catch(e => { this.log(`refreshing own entry failed: ${(e as Error).message}`) }) }, this.params.entryTtlMs / 2)
    // One write at a time: two signings in flight could land out of seq order, and peers refuse
    // an entry whose seq does not advance. Each write takes the data merged so far.
    const write = this.selfWrites.then(async () => { await s.swarm.doc.setSelf(this.selfData, this.params.entryTtlMs) })
    // The chain only orders the writes: this write's failure reaches its caller (awaited below).
    this.selfWrites = write.catch(() => {})
    await write
    this.dispatchEvent(new Event('self'))
  }

  /** A line in the collapsible page log (and the console). */
  log (line: string): void {
    const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`
    this.logLines.push(stamped)
    if (this.logLines.length > LOG_LINES) this.logLines.splice(0, this.logLines.length - LOG_LINES)
    console.info(line)
    this.dispatchEvent(new CustomEvent('log', { detail: stamped }))
  }

  /** A short message for people (errors in one line; details go to the log). */
  notify (text: string, level: Notice['level'] = 'info'): void {
    this.log(`${level}: ${text}`)
    this.dispatchEvent(new CustomEvent<Notice>('notice', { detail: { text, level } }))
  }
}
