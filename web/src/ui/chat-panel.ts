/**
 * The Chat panel: this tab can serve a span of the model's blocks to the swarm ("serve blocks"
 * status: span, sessions, steps, throughput) and chat through whoever serves them (route, streamed
 * tokens, failovers). The embedding and head run here; blocks run on the serving tabs and Node
 * peers. Also exposes `window.webswarmChat` for tests and the console.
 *
 * Query parameters: `model=URL` (a .gguf file, e.g. the relay's `/models/NAME.gguf`, or a Hugging
 * Face model directory served over HTTP; default `./models/default`), `serve=A:B` (serve these
 * blocks as soon as the swarm is joined), `serve=auto` (the least-served span that fits the GPU
 * memory budget), `max-gpu-memory=SIZE` (the budget; default derived from the adapter, see
 * pageBudgetBytes in model/memory-plan.ts).
 */
import type { Backend } from '../gpu/backend.ts'
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import { loadConfig } from '../model/model.ts'
import type { ModelConfig } from '../model/config.ts'
import { MemoryBudgetError, checkBudget, costliestBlockPlan, formatBytes, pageBudgetBytes, parseByteSize, planPart, readPlanTensors, spanLengthThatFits } from '../model/memory-plan.ts'
import { sourceFrom } from '../model/source.ts'
import { loadTokenizer, type TextTokenizer } from '../model/tokenizer.ts'
import type { Swarm } from '../net/index.ts'
import { InferenceClient } from '../swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../swarm/client/generate.ts'
import type { InferenceSession } from '../swarm/client/session.ts'
import { DhtDirectory } from '../swarm/dht-directory.ts'
import { loadClientEnds, loadSpanBackend } from '../swarm/model-backend.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import { createProgressBar } from './progress-bar.ts'

/** Wait this long for the Swarm panel to join before giving up, ms. */
const JOIN_WAIT_MS = 60_000
/** Status refresh period, ms. */
const STATUS_MS = 500
/** KV-cache positions a serving tab offers. */
const SERVE_CACHE_TOKENS = 2048

export interface ChatApi {
  /** Serve blocks `A:B` (or 'auto'); resolves with the span once announced ONLINE. */
  serve: (span?: string) => Promise<{ start: number, end: number }>
  /** Generate greedily (or with `temperature`) through the swarm; resolves with the new token ids. */
  generate: (prompt: number[] | string, maxNewTokens: number, opts?: { temperature?: number, stopTokens?: number[] }) => Promise<number[]>
  /** The same completion computed in this tab alone (whole model, no swarm): the reference. */
  localGenerate: (prompt: number[], maxNewTokens: number, opts?: { stopTokens?: number[] }) => Promise<number[]>
  /** Model id, config and the tab's role, once loaded. */
  state: () => { model?: string, serving?: { start: number, end: number }, sessions: number, steps: number, failovers: number, route: Array<{ peer: string, start: number, end: number }>, tokens: number }
}

declare global {
  interface Window { webswarmChat?: ChatApi }
}

function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  if (text !== undefined) e.textContent = text
  return e
}

async function waitForSwarm (): Promise<Swarm> {
  const t0 = Date.now()
  while (window.webswarm === undefined) {
    if (Date.now() - t0 > JOIN_WAIT_MS) throw new Error('the Swarm panel did not join the swarm')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return window.webswarm.swarm
}

function short (id: string): string {
  return id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-4)}` : id
}

export function mountChatPanel (body: HTMLElement, backend: () => Promise<Backend>): void {
  const params = new URLSearchParams(location.search)
  const modelUrl = new URL(params.get('model') ?? './models/default', location.href).toString().replace(/\/+$/, '')
  const modelId = modelUrl.split('/').at(-1) ?? 'model'
  body.replaceChildren()

  const serveRow = el('div', { class: 'row' })
  const spanInput = el('input', { id: 'serve-span', placeholder: 'A:B or auto', size: '8', value: 'auto' })
  const serveBtn = el('button', { id: 'serve-button' }, 'Serve blocks')
  const serveStatus = el('span', { id: 'serve-status' }, 'not serving')
  serveRow.append(el('span', {}, `Model ${modelId}: `), spanInput, serveBtn, serveStatus)

  const chatRow = el('div', { class: 'row' })
  const prompt = el('input', { id: 'chat-input', placeholder: 'prompt (text, or token ids 5,17,3)', size: '40' })
  const maxNew = el('input', { id: 'chat-max', value: '16', size: '4' })
  const send = el('button', { id: 'chat-send' }, 'Send')
  chatRow.append(prompt, el('span', {}, ' new tokens '), maxNew, send)
  const route = el('div', { id: 'chat-route' }, '')
  // Wrap long token streams and log lines inside the panel.
  const output = el('pre', { id: 'chat-output', style: 'white-space: pre-wrap; overflow-wrap: anywhere' }, '')
  const log = el('pre', { id: 'chat-log', style: 'white-space: pre-wrap; overflow-wrap: anywhere; max-height: 12em; overflow-y: auto' }, '')
  const progress = createProgressBar('model-progress')
  body.append(serveRow, progress.element, chatRow, route, output, log)
  const say = (line: string): void => { log.textContent = `${line}\n${log.textContent ?? ''}`.slice(0, 4000) }

  let loaded: Promise<{ config: ModelConfig, ends: ClientEnds, tokenizer?: TextTokenizer, be: Backend }> | undefined
  const load = async (): Promise<{ config: ModelConfig, ends: ClientEnds, tokenizer?: TextTokenizer, be: Backend }> => {
    loaded ??= (async () => {
      const be = await backend()
      const source = sourceFrom(modelUrl)
      const { config, ends } = await loadClientEnds(source, be, { onProgress: progress.start(`${modelId}: embedding + head`) })
      return { config, ends, tokenizer: await loadTokenizer(source, config.vocabSize), be }
    })()
    return await loaded
  }
  let transport: Libp2pTransport | undefined
  let directory: DhtDirectory | undefined
  let swarmForMirror: Swarm | undefined
  const net = async (): Promise<{ transport: Libp2pTransport, directory: DhtDirectory, config: ModelConfig }> => {
    const swarm = await waitForSwarm()
    swarmForMirror = swarm
    const config = await loadConfig(sourceFrom(modelUrl))
    transport ??= new Libp2pTransport(swarm.node)
    directory ??= new DhtDirectory(swarm.dht, swarm.peerId, { numBlocks: config.numLayers, numExperts: config.numExperts })
    return { transport, directory, config }
  }

  /** This tab's GPU-memory budget: ?max-gpu-memory=, else derived from the adapter (none on the CPU twins). */
  const budgetOf = (be: Backend): number | undefined => {
    const q = params.get('max-gpu-memory')
    if (q !== null) return parseByteSize(q)
    if (be.kind !== 'webgpu') return undefined
    return pageBudgetBytes((be as GpuBackend).info.limits, (navigator as Navigator & { deviceMemory?: number }).deviceMemory)
  }
  /**
   * How many blocks this tab may serve: a given span must fit the budget with its KV cache
   * (refused with the numbers otherwise); an automatic one is as long as fits anywhere.
   */
  const blocksToServe = async (be: Backend, config: ModelConfig, span: { start: number, end: number } | undefined): Promise<number> => {
    const wanted = Math.max(1, Math.ceil(config.numLayers / 2))
    const budget = budgetOf(be)
    if (budget === undefined) return wanted
    const tensors = await readPlanTensors(sourceFrom(modelUrl))
    const plan = { sessions: 1, context: SERVE_CACHE_TOKENS }
    if (span !== undefined) {
      checkBudget(planPart(config, tensors, { blocks: span, embedding: false, head: false }, plan), budget)
      return wanted
    }
    const n = spanLengthThatFits(config, tensors, budget, plan)
    if (n === 0) throw new MemoryBudgetError(costliestBlockPlan(config, tensors, plan), budget)
    say(`GPU memory budget ${formatBytes(budget)}: up to ${n} of ${config.numLayers} blocks`)
    return Math.min(wanted, n)
  }

  let role: ServerRole | undefined
  let failovers = 0
  let session: InferenceSession | undefined
  let produced = 0
  const serve = async (spec = 'auto'): Promise<{ start: number, end: number }> => {
    if (role?.currentSpan !== undefined) return role.currentSpan
    const { transport, directory, config } = await net()
    const be = await backend()
    const m = /^(\d+):(\d+)$/.exec(spec)
    const span = m === null ? undefined : { start: Number(m[1]), end: Number(m[2]) }
    const numServed = await blocksToServe(be, config, span)
    role = new ServerRole({
      transport,
      directory,
      model: modelId,
      numBlocks: config.numLayers,
      span,
      numServed,
      loadSpan: async (s, e) => await loadSpanBackend(sourceFrom(modelUrl), be, modelId, s, e, {}, { onProgress: progress.start(`${modelId}: blocks ${s}:${e}`) }),
      cacheBudgetBytes: SERVE_CACHE_TOKENS * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
      rebalanceMs: m === null ? 60_000 : 0,
      log: say,
      // The Swarm panel and other tabs read who serves what from the CRDT (the DHT is for routing).
      onAnnounce: r => { void swarmForMirror?.updateSelf({ serving: { model: r.model, start: r.start, end: r.end, state: r.state, throughput: Math.round(r.throughput * 10) / 10 } }).catch(() => {}) }
    })
    await role.start()
    document.body.dataset.serving = `${role.currentSpan!.start}:${role.currentSpan!.end}`
    return role.currentSpan!
  }

  const generate = async (p: number[] | string, n: number, opts: { temperature?: number, stopTokens?: number[] } = {}): Promise<number[]> => {
    produced = 0
    session = undefined
    const { config, ends, tokenizer } = await load()
    const { transport, directory } = await net()
    const ids = typeof p === 'string' ? (tokenizer?.encode(p) ?? []) : p
    if (ids.length === 0) throw new Error('empty prompt (or no tokenizer for text: give token ids)')
    const client = new InferenceClient({ transport, directory, model: modelId, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, log: say })
    const decode = tokenizer?.decoder()
    output.textContent = ''
    document.body.dataset.chat = 'running'
    const r = await swarmGenerate(client, ends, ids, {
      maxNewTokens: n,
      temperature: opts.temperature ?? 0,
      stopTokens: opts.stopTokens,
      onSession: s => { session = s; route.textContent = `route: ${s.route.map(x => `${short(x.peer)} [${x.start}, ${x.end})`).join(' → ')}` },
      onToken: id => { produced++; output.textContent += decode !== undefined && typeof p === 'string' ? decode(id) : `${id} ` }
    })
    failovers += r.session.failovers.length
    if (r.session.failovers.length > 0) route.textContent += ` · failed over: ${r.session.failovers.map(f => `${short(f.peer)} → ${f.replacement.map(x => short(x.peer)).join(', ')} (${f.ms.toFixed(0)} ms)`).join('; ')} → now ${r.session.route.map(x => short(x.peer)).join(' → ')}`
    document.body.dataset.chat = 'done'
    return r.tokens
  }

  serveBtn.addEventListener('click', () => {
    serveBtn.disabled = true
    serve(spanInput.value.trim() === '' ? 'auto' : spanInput.value.trim()).catch(e => { say(`serve failed: ${(e as Error).message}`); serveBtn.disabled = false })
  })
  send.addEventListener('click', () => {
    const text = prompt.value.trim()
    const ids = /^\d+(,\d+)*$/.test(text) ? text.split(',').map(Number) : text
    send.disabled = true
    generate(ids, Number(maxNew.value) || 16).catch(e => say(`chat failed: ${(e as Error).message}`)).finally(() => { send.disabled = false })
  })

  setInterval(() => {
    const s = role?.server
    const span = role?.currentSpan
    serveStatus.textContent = span === undefined || s === undefined
      ? (role !== undefined ? `loading… (${role.state})` : 'not serving')
      : `serving blocks [${span.start}, ${span.end}) · ${s.sessions.size} sessions · ${s.stats.steps} steps · ${s.throughput.toFixed(1)} tokens/s per block`
  }, STATUS_MS)

  const localGenerate = async (p: number[], n: number, opts: { stopTokens?: number[] } = {}): Promise<number[]> => {
    const be = await backend()
    const { loadModel } = await import('../model/model.ts')
    const { generate: generateLocal } = await import('../model/generate.ts')
    const model = await loadModel(modelUrl, be)
    try {
      return await generateLocal(model, p, { maxNewTokens: n, stopTokens: opts.stopTokens })
    } finally {
      model.dispose()
    }
  }

  window.webswarmChat = {
    serve,
    generate,
    localGenerate,
    state: () => ({ model: modelId, serving: role?.currentSpan, sessions: role?.server?.sessions.size ?? 0, steps: role?.server?.stats.steps ?? 0, failovers, route: session?.route ?? [], tokens: produced })
  }
  const auto = params.get('serve')
  if (auto !== null) serve(auto).catch(e => say(`serve failed: ${(e as Error).message}`))
}
