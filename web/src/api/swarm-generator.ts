/**
 * The API's Generator on the swarm: this process is an inference client (embedding, LM head and
 * sampling on its own device; the blocks on the swarm's servers through the client's routing,
 * failover and hedging). Each request opens its own session; many run at once and the servers
 * batch their steps (swarm/server/batched-span.ts). A request whose client disconnects closes its
 * session at the next token, freeing the servers' KV cache at once.
 */
import type { Backend } from '../gpu/backend.ts'
import { Sampler } from '../model/sampler.ts'
import type { ModelSource } from '../model/source.ts'
import { loadTokenizer } from '../model/tokenizer.ts'
import { CacheFullError, NoRouteError, ServerBusyError } from '../swarm/errors.ts'
import { InferenceClient, type InferenceClientOptions } from '../swarm/client/client.ts'
import type { ClientEnds } from '../swarm/client/generate.ts'
import type { InferenceSession } from '../swarm/client/session.ts'
import { loadClientEnds } from '../swarm/model-backend.ts'
import type { SwarmDirectory } from '../swarm/records.ts'
import type { RpcTransport } from '../swarm/transport/index.ts'
import { turn } from '../util/next-turn.ts'
import { BatchedHead, withBatchedHead } from './batched-head.ts'
import { CachedDirectory } from './cached-directory.ts'
import { InvalidParamError, SwarmUnavailableError } from './errors.ts'
import type { ApiModel, GenerateParams, GenerateResult, Generator } from './generator.ts'
import { LogitPenalties } from './penalties.ts'

/**
 * Generations one API process runs at once per model; more wait their turn (FIFO). Every request
 * of this process reaches a server over one libp2p connection, which carries at most 32 `infer`
 * streams each way (net/protocols.ts INFER), and on a loaded 2-core machine 24–32 sessions'
 * steps made stream opens time out and the client ban its only server (BENCHMARKS.md); 16 leave
 * room for OPENs, CLOSEs and INFOs.
 */
const MAX_CONCURRENT_GENERATIONS = 16

/** One served model: its info, the client over its servers, and its ends on this device. */
export interface SwarmModel {
  info: ApiModel
  client: InferenceClient
  ends: ClientEnds
  /** The head shared by concurrent generations (batched-head.ts), when `ends` goes through one. */
  head?: BatchedHead
}

/** "1, 2, 5-7" */
export function formatBlocks (blocks: readonly number[]): string {
  const out: string[] = []
  for (let i = 0; i < blocks.length;) {
    let j = i
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j] + 1) j++
    out.push(j === i ? String(blocks[i]) : `${blocks[i]}-${blocks[j]}`)
    i = j + 1
  }
  return out.join(', ')
}

export class SwarmGenerator implements Generator {
  private readonly byId = new Map<string, SwarmModel>()
  private readonly maxConcurrent: number
  private running = 0
  private readonly waiting: Array<() => void> = []

  /** @param maxConcurrent generations at once (see MAX_CONCURRENT_GENERATIONS). @default MAX_CONCURRENT_GENERATIONS */
  constructor (models: readonly SwarmModel[], maxConcurrent = MAX_CONCURRENT_GENERATIONS) {
    for (const m of models) this.byId.set(m.info.id, m)
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new RangeError(`maxConcurrent must be an integer ≥ 1, got ${maxConcurrent}`)
    this.maxConcurrent = maxConcurrent
  }

  /** Generations waiting for a slot. */
  get queued (): number {
    return this.waiting.length
  }

  /** Waits for a slot; false when `signal` aborted first. */
  private async acquire (signal: AbortSignal): Promise<boolean> {
    if (this.running < this.maxConcurrent) {
      this.running++
      return true
    }
    return await new Promise<boolean>(resolve => {
      const go = (): void => { signal.removeEventListener('abort', gone); resolve(true) }
      const gone = (): void => {
        const i = this.waiting.indexOf(go)
        if (i >= 0) this.waiting.splice(i, 1)
        resolve(false)
      }
      this.waiting.push(go)
      signal.addEventListener('abort', gone, { once: true })
    })
  }

  private release (): void {
    const next = this.waiting.shift()
    // The slot passes straight to the next in line.
    if (next !== undefined) next()
    else this.running--
  }

  models (): readonly ApiModel[] {
    return [...this.byId.values()].map(m => m.info)
  }

  async generate (model: string, prompt: readonly number[], params: GenerateParams, onToken: (id: number) => void | Promise<void>, signal: AbortSignal): Promise<GenerateResult> {
    const m = this.byId.get(model)
    if (m === undefined) throw new InvalidParamError(`model '${model}' is not served here`, 'model')
    if (prompt.length === 0) throw new InvalidParamError('the prompt is empty', 'prompt')
    const sampler = new Sampler({ temperature: params.temperature, topK: params.topK, topP: params.topP, seed: params.seed ?? randomSeed() })
    const stop = new Set(params.stopTokens)
    if (!await this.acquire(signal)) return { tokens: [], finish: 'aborted' }
    try {
      return await this.run(m, prompt, params, sampler, stop, onToken, signal)
    } finally {
      this.release()
    }
  }

  private async run (m: SwarmModel, prompt: readonly number[], params: GenerateParams, sampler: Sampler, stop: ReadonlySet<number>, onToken: (id: number) => void | Promise<void>, signal: AbortSignal): Promise<GenerateResult> {
    const C = m.client.hiddenSize
    let session: InferenceSession
    try {
      session = await m.client.openSession(prompt.length + params.maxTokens)
    } catch (e) {
      throw await this.unavailable(m, e)
    }
    const tokens: number[] = []
    // This request's own counts: its logits row is its own even when the head ran batched.
    const penalties = new LogitPenalties(params)
    try {
      let h: Float32Array
      try {
        h = await session.step(await m.ends.embed(prompt), prompt.length)
      } catch (e) {
        throw await this.unavailable(m, e)
      }
      for (;;) {
        if (signal.aborted) return { tokens, finish: 'aborted' }
        const id = sampler.sample(penalties.apply(await m.ends.logits(h.subarray(h.length - C))))
        if (stop.has(id)) return { tokens, finish: 'stop' }
        tokens.push(id)
        penalties.record(id)
        await onToken(id)
        // Let the token's SSE write reach the socket: with the blocks in this process
        // (swarm/server/in-process.ts) a whole generation is one chain of promises, and Node's HTTP response
        // flushes its corked writes only when the event loop gets a turn.
        await turn()
        if (signal.aborted) return { tokens, finish: 'aborted' }
        if (tokens.length >= params.maxTokens) return { tokens, finish: 'length' }
        try {
          h = await session.step(await m.ends.embed([id]), 1)
        } catch (e) {
          // Failover found no replacement: the same 503 as before the first token (sent mid-stream).
          throw await this.unavailable(m, e)
        }
      }
    } finally {
      await session.close()
    }
  }

  /** The 503 for a failure to open or prefill: which blocks lack servers, or that they are all busy. */
  private async unavailable (m: SwarmModel, e: unknown): Promise<unknown> {
    if (e instanceof CacheFullError || e instanceof ServerBusyError) return new SwarmUnavailableError(`the swarm's servers for ${m.info.id} are full: ${e.message}; retry later`, 'swarm_busy')
    if (!(e instanceof NoRouteError)) return e
    const records = await m.client.records().catch(() => [])
    // Blocks no online server announces at all; servers this client banned (they failed a
    // request moments ago) still count as serving: that is "busy", not "not served".
    const covered = new Set<number>()
    for (const r of records) {
      if (r.state !== 'online') continue
      for (let b = r.start; b < r.end; b++) covered.add(b)
    }
    const missing = Array.from({ length: m.client.numBlocks }, (_, b) => b).filter(b => !covered.has(b))
    if (missing.length === 0) {
      const banned = [...new Set(records.filter(r => m.client.bans.isBanned(r.peer)).map(r => r.peer))]
      const why = banned.length > 0 ? `${banned.length} of its servers failed a request moments ago and are skipped for a while` : 'its servers are full or unreachable'
      return new SwarmUnavailableError(`the swarm cannot run ${m.info.id} right now: ${why} (${e.message}); retry later`, 'swarm_busy')
    }
    return new SwarmUnavailableError(`no server in the swarm serves block${missing.length > 1 ? 's' : ''} ${formatBlocks(missing)} of ${m.info.id} (${m.client.numBlocks} blocks); start one with \`webswarm serve\` or press Serve blocks in a tab`, 'blocks_not_served', missing)
  }
}

function randomSeed (): number {
  const b = new Uint32Array(1)
  crypto.getRandomValues(b)
  return b[0]
}

export interface LoadSwarmModelOptions extends Partial<Pick<InferenceClientOptions, 'timeoutMs' | 'log' | 'push' | 'hedge' | 'inProcess'>> {
  transport: RpcTransport
  directory: SwarmDirectory
  /** The id servers announce. */
  id: string
  source: ModelSource
  /** Where the embedding, head and sampling run. */
  backend: Backend
}

/** Loads a model's config, tokenizer, embedding and head; its blocks stay on the swarm. */
export async function loadSwarmModel (o: LoadSwarmModelOptions): Promise<SwarmModel> {
  const { config, lm, ends: own } = await loadClientEnds(o.source, o.backend)
  // Concurrent generations' logits rows go through the head together (batched-head.ts).
  const head = new BatchedHead(lm.head, o.backend)
  const ends = withBatchedHead(own, head)
  const tokenizer = await loadTokenizer(o.source, config.vocabSize)
  if (tokenizer === undefined) throw new InvalidParamError(`model ${o.id} has no tokenizer (tokenizer.json, GGUF metadata, or a 256-byte vocabulary): the API needs one to read prompts`)
  // Concurrent requests share one records lookup (cached-directory.ts).
  const client = new InferenceClient({ transport: o.transport, directory: new CachedDirectory(o.directory), model: o.id, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, timeoutMs: o.timeoutMs, log: o.log, push: o.push, hedge: o.hedge, inProcess: o.inProcess })
  return {
    info: { id: o.id, contextLength: config.maxPositions, tokenizer, eosTokenIds: config.eosTokenIds, created: Math.floor(Date.now() / 1000) },
    client,
    ends,
    head
  }
}
