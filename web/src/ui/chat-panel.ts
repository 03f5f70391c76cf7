/**
 * The Chat panel: a conversation with the swarm. The embedding and head run in this tab, the
 * blocks on the tabs and Node peers that serve them. The conversation is rendered as the API
 * renders it (chat-prompt.ts): the model's own chat template, or for a model without one
 * (byte-llama) a plain User:/Assistant: transcript, and the panel says which. Tokens stream into
 * the reply as they are sampled; Stop ends the reply; sampling settings sit in a small settings area; the route (which peer serves which blocks) and
 * any failover are drawn under the conversation with the measured tokens/s. Failures show as one
 * short notice; the detail goes to the page log.
 *
 * Also exposes `window.webswarmChat` for tests and the console.
 */
import type { Backend } from '../gpu/backend.ts'
import type { ChatMessage } from '../model/chat.ts'
import type { ModelConfig } from '../model/config.ts'
import { loadModel } from '../model/model.ts'
import { loadTokenizer, type TextTokenizer } from '../model/tokenizer.ts'
import { InferenceClient } from '../swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../swarm/client/generate.ts'
import type { InferenceSession } from '../swarm/client/session.ts'
import { loadClientEnds } from '../swarm/model-backend.ts'
import { chatTurnPrompt, cutAtStop } from './chat-prompt.ts'
import type { PageContext } from './context.ts'
import { disclosure, el, short } from './dom.ts'
import { ChatInputError, GenerationStoppedError, PageParamError } from './errors.ts'
import { createProgressBar } from './progress-bar.ts'
import type { Contribution, SwarmPieces } from './serving.ts'
import { blocksText } from './swarm-summary.ts'

/** Sampling defaults of the settings area. */
const DEFAULTS = { temperature: 0.7, topP: 0.9, topK: 40, maxTokens: 64 }
/** Largest reply the settings accept, tokens. */
const MAX_NEW_TOKENS = 2048

interface GenerateOptions {
  temperature?: number
  topP?: number
  topK?: number
  stopTokens?: number[]
  stopStrings?: readonly string[]
  /**
   * Awaited after each token with the count so far: the next step waits for it (the failover e2e
   * pauses a reply there while it closes a serving tab, so the close lands mid-generation however
   * fast the tiny model runs).
   */
  afterToken?: (produced: number) => void | Promise<void>
}

interface ChatApi {
  /** Serve blocks `A:B` (or 'auto'); resolves with the span once announced ONLINE. */
  serve: (span?: string) => Promise<{ start: number, end: number }>
  /** Generate (greedy unless `temperature`) through the swarm; resolves with the new token ids. */
  generate: (prompt: number[] | string, maxNewTokens: number, opts?: GenerateOptions) => Promise<number[]>
  /** The same completion computed in this tab alone (whole model, no swarm): the reference. */
  localGenerate: (prompt: number[], maxNewTokens: number, opts?: { stopTokens?: number[] }) => Promise<number[]>
  /** Ends the reply being generated (the Stop button). */
  stop: () => void
  /** Model id, the tab's role and the last reply's route and counts. */
  state: () => { model?: string, serving?: { start: number, end: number }, sessions: number, steps: number, failovers: number, route: Array<{ peer: string, start: number, end: number }>, tokens: number }
}

declare global {
  interface Window { webswarmChat?: ChatApi }
}

interface Loaded { config: ModelConfig, ends: ClientEnds, tokenizer?: TextTokenizer, be: Backend }

export function mountChatPanel (body: HTMLElement, ctx: PageContext, pieces: () => Promise<SwarmPieces>, contribution: Contribution): void {
  const { modelUrl, modelId } = ctx.params
  const mode = el('p', { id: 'chat-mode', class: 'hint' }, `Model ${modelId}`)
  const deviceNote = el('p', { id: 'chat-device', class: 'hint', hidden: '' })
  const conversation = el('div', { id: 'chat-conversation', role: 'log', 'aria-live': 'polite', 'aria-label': 'conversation' })
  const empty = el('p', { class: 'hint empty' }, 'Ask something: the answer is computed by the peers that serve the model\'s blocks.')
  conversation.append(empty)
  const input = el('textarea', { id: 'chat-input', rows: '2', placeholder: 'Message the swarm…', 'aria-label': 'message' })
  const send = el('button', { id: 'chat-send', type: 'submit', class: 'primary', disabled: '', 'aria-describedby': 'chat-blocked' }, 'Send')
  const blocked = el('p', { id: 'chat-blocked', class: 'hint', role: 'status' })
  const stopBtn = el('button', { id: 'chat-stop', type: 'button', disabled: '' }, 'Stop')
  const clear = el('button', { id: 'chat-clear', type: 'button', class: 'quiet' }, 'New chat')
  const form = el('form', { id: 'chat-form', class: 'composer' }, input, el('div', { class: 'composer-buttons' }, send, stopBtn, clear))
  const num = (id: string, label: string, value: number, attrs: Record<string, string>): HTMLInputElement => {
    const i = el('input', { id, type: 'number', value: String(value), ...attrs })
    settingsGrid.append(el('label', { for: id }, label), i)
    return i
  }
  const settingsGrid = el('div', { class: 'settings-grid' })
  const temperature = num('chat-temperature', 'Temperature (0 = greedy)', DEFAULTS.temperature, { min: '0', max: '2', step: '0.1' })
  const topP = num('chat-top-p', 'Top-p', DEFAULTS.topP, { min: '0.05', max: '1', step: '0.05' })
  const topK = num('chat-top-k', 'Top-k (0 = all)', DEFAULTS.topK, { min: '0', max: '1000', step: '1' })
  const maxNew = num('chat-max', 'Max new tokens', DEFAULTS.maxTokens, { min: '1', max: String(MAX_NEW_TOKENS), step: '1' })
  const settings = disclosure('chat-settings', 'Sampling settings', settingsGrid)
  // No aria-label: a plain div may not carry one (axe aria-prohibited-attr), and its text starts with "route:".
  const route = el('div', { id: 'chat-route', class: 'route' })
  const stats = el('p', { id: 'chat-stats', class: 'hint' })
  const progress = createProgressBar('model-progress')
  body.replaceChildren(mode, deviceNote, progress.element, conversation, form, blocked, settings, route, stats)

  const describeMode = (tokenizer: TextTokenizer | undefined): void => {
    mode.textContent = tokenizer?.chatTemplate !== undefined
      ? `${modelId} · replies use the model's chat template`
      : `${modelId} has no chat template (a base model): the conversation is sent as a plain User:/Assistant: transcript, a convention the model was not trained on`
    mode.dataset.template = String(tokenizer?.chatTemplate !== undefined)
  }
  // Say how replies are made before the first message (config and tokenizer only, no weights).
  let described = false
  const onModel = (): void => {
    const m = ctx.modelStatus
    if (m.state !== 'ready' || described) return
    described = true
    void ctx.modelSource(modelUrl).then(async source => await loadTokenizer(source, m.config.vocabSize)).then(describeMode)
      .catch(e => { described = false; ctx.log(`chat: reading the tokenizer failed: ${(e as Error).message}`) })
  }
  ctx.addEventListener('model', onModel)
  onModel()

  /** The reply being generated (Stop aborts it). */
  let controller: AbortController | undefined
  /** Why Send cannot work now (the model unreadable, the relay down), or undefined when it can. */
  const sendBlocker = (): string | undefined => {
    const m = ctx.modelStatus
    if (ctx.swarmStatus.state === 'error') return `Send waits for the relay at ${ctx.params.relayUrl}, which could not be reached: see the notice at the top.`
    if (m.state === 'error') return `Send waits for the model ${modelId}, which could not be read: see the notice at the top.`
    if (m.state === 'reading') return `Reading the model ${modelId}…`
    return undefined
  }
  /** Send is enabled when nothing blocks it and no reply is being generated. */
  const drawSend = (): void => {
    const why = sendBlocker()
    send.disabled = why !== undefined || controller !== undefined
    blocked.textContent = why ?? ''
    blocked.hidden = why === undefined
  }
  for (const ev of ['model', 'swarm']) ctx.addEventListener(ev, drawSend)

  // Without WebGPU the chat computes on the CPU by itself (ctx.chatBackend): say so before the
  // first message, calmly — it is a working set-up, not a failure.
  const drawDevice = (): void => {
    deviceNote.hidden = !(ctx.gpuStatus.state === 'missing' && !ctx.cpuChosen)
    deviceNote.textContent = 'No WebGPU in this browser: the chat computes its embedding and head on the CPU, which is quick for them.'
  }
  ctx.addEventListener('gpu', drawDevice)
  ctx.addEventListener('device', drawDevice)
  drawDevice()

  const messages: ChatMessage[] = []
  let loaded: Promise<Loaded> | undefined
  const load = async (): Promise<Loaded> => {
    loaded ??= (async () => {
      const be = await ctx.chatBackend()
      const source = await ctx.modelSource(modelUrl)
      const { config, ends } = await loadClientEnds(source, be, { onProgress: progress.start(`${modelId}: embedding + head`) })
      const tokenizer = await loadTokenizer(source, config.vocabSize)
      describeMode(tokenizer)
      return { config, ends, tokenizer, be }
    })()
    return await loaded.catch(e => { loaded = undefined; throw e })
  }

  drawSend()
  let session: InferenceSession | undefined
  let produced = 0
  let failovers = 0
  /** Whether this tab's swarm entry says it chats (until New chat). */
  let chatting = false

  const bubble = (role: string, text: string): HTMLElement => {
    empty.remove()
    const b = el('div', { class: `msg ${role}`, 'data-role': role }, el('span', { class: 'who' }, role === 'user' ? 'You' : 'Swarm'), el('div', { class: 'text' }, text))
    conversation.append(b)
    conversation.scrollTop = conversation.scrollHeight
    return b.querySelector<HTMLElement>('.text')!
  }

  const drawRoute = (s: InferenceSession): void => {
    const hops = s.route.map(h => el('span', { class: 'hop', title: h.peer, 'data-peer': h.peer }, `${short(h.peer)} · ${blocksText(h.start, h.end)}`))
    const parts: Array<Node | string> = ['route: ']
    hops.forEach((h, i) => { if (i > 0) parts.push(' → '); parts.push(h) })
    if (s.failovers.length > 0) {
      parts.push(el('span', { class: 'failover' }, ` · failed over: ${s.failovers.map(f => `${short(f.peer)} → ${f.replacement.map(x => short(x.peer)).join(', ')} (${f.ms.toFixed(0)} ms)`).join('; ')}`))
    }
    route.replaceChildren(...parts)
  }

  /**
   * Generates through the swarm from prompt ids, passing the reply's text so far (cut before any
   * of `opts.stopStrings`, which end it) to `onText` after each token.
   * Throws GenerationStoppedError when Stop was pressed (the tokens so far stay in `tokens`).
   */
  const run = async (ids: number[], n: number, opts: GenerateOptions, onText: (shown: string) => void, tokens: number[]): Promise<void> => {
    // Demand: contributing tabs serve the models people chat with first (role-choice.ts).
    if (!chatting) {
      chatting = true
      // The patch stays in selfData, and the entry's periodic refresh publishes it again.
      void ctx.publishSelf({ chatting: modelId }).catch(() => {})
    }
    const { config, ends, tokenizer } = await load()
    const { transport, directory } = await pieces()
    const client = new InferenceClient({ transport, directory, model: modelId, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, hedgeFloorMs: ctx.params.hedgeFloorMs, log: l => { ctx.log(l) } })
    const decode = tokenizer?.decoder()
    const ctl = controller = new AbortController()
    stopBtn.disabled = false
    drawSend()
    produced = 0
    session = undefined
    document.body.dataset.chat = 'running'
    const t0 = performance.now()
    let tFirst: number | undefined
    const stops = opts.stopStrings ?? []
    let text = ''
    /** The reply reached a stop string: it is complete (not stopped by the user). */
    let complete = false
    try {
      const r = await swarmGenerate(client, ends, ids, {
        maxNewTokens: n,
        temperature: opts.temperature ?? 0,
        topP: opts.topP,
        topK: opts.topK,
        seed: Date.now() % 2 ** 31,
        stopTokens: opts.stopTokens,
        onSession: s => { session = s; drawRoute(s) },
        onToken: async id => {
          // Stop lands here: throwing ends the loop, and swarmGenerate closes the session.
          if (ctl.signal.aborted) throw new GenerationStoppedError('stopped by the user')
          tokens.push(id)
          produced++
          tFirst ??= performance.now()
          text += decode !== undefined ? decode(id) : `${id} `
          const cut = cutAtStop(text, stops)
          onText(cut.shown)
          const secs = (performance.now() - tFirst) / 1000
          stats.textContent = `${produced} tokens · ${produced > 1 && secs > 0 ? `${((produced - 1) / secs).toFixed(2)} tokens/s` : 'first token'} · prompt ${ids.length} tokens in ${((tFirst - t0) / 1000).toFixed(1)} s`
          // Throwing ends the loop (and closes the session), as Stop does; `complete` tells them apart.
          if (cut.stopped) { complete = true; throw new GenerationStoppedError('the reply reached the next turn') }
          await opts.afterToken?.(produced)
        }
      })
      failovers += r.session.failovers.length
      drawRoute(r.session)
      document.body.dataset.chat = 'done'
    } catch (e) {
      // Assigned in onSession (a callback), which the compiler's narrowing cannot see.
      const open = session as InferenceSession | undefined
      if (open !== undefined) { failovers += open.failovers.length; drawRoute(open) }
      // Set in onToken (a callback), which the compiler's narrowing cannot see.
      if (complete as boolean) { document.body.dataset.chat = 'done'; return }
      document.body.dataset.chat = e instanceof GenerationStoppedError ? 'stopped' : 'error'
      throw e
    } finally {
      controller = undefined
      stopBtn.disabled = true
      drawSend()
    }
  }

  const explain = (e: unknown): void => {
    if (e instanceof GenerationStoppedError) return
    ctx.notify(`Chat failed: ${(e as Error).message}`, 'error')
  }

  form.addEventListener('submit', ev => {
    ev.preventDefault()
    const text = input.value.trim()
    if (text === '' || controller !== undefined || sendBlocker() !== undefined) return
    input.value = ''
    bubble('user', text)
    const out = bubble('assistant', '')
    out.parentElement!.dataset.state = 'streaming'
    const tokens: number[] = []
    void (async () => {
      const { tokenizer, config } = await load()
      if (tokenizer === undefined) throw new ChatInputError(`${modelId} has no tokenizer the page can read (tokenizer.json or GGUF metadata): it cannot turn text into tokens`)
      const turn: ChatMessage = { role: 'user', content: text }
      const prompt = chatTurnPrompt({ id: modelId, tokenizer, eosTokenIds: config.eosTokenIds, contextLength: config.maxPositions }, [...messages, turn])
      // The whole conversation is the prompt: it must leave the model's context room for a reply.
      const room = config.maxPositions - prompt.ids.length
      if (room < 1) throw new ChatInputError(`the conversation is ${prompt.ids.length} tokens, and ${modelId} reads at most ${config.maxPositions}: press New chat`)
      const reply = { role: 'assistant', content: '' }
      messages.push(turn)
      const n = Math.min(room, MAX_NEW_TOKENS, Math.max(1, Math.round(Number(maxNew.value) || DEFAULTS.maxTokens)))
      try {
        await run(prompt.ids, n, { temperature: Number(temperature.value), topP: Number(topP.value), topK: Math.round(Number(topK.value)), stopTokens: prompt.stopTokens, stopStrings: prompt.stopStrings }, t => { out.textContent = t; reply.content = t }, tokens)
      } finally {
        messages.push(reply)
      }
    })().then(() => { out.parentElement!.dataset.state = 'done' }, e => {
      out.parentElement!.dataset.state = e instanceof GenerationStoppedError ? 'stopped' : 'error'
      if (e instanceof GenerationStoppedError) out.append(el('span', { class: 'hint' }, ' (stopped)'))
      explain(e)
    })
  })
  input.addEventListener('keydown', ev => {
    // Enter sends, Shift+Enter starts a new line (as chat apps do).
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit() }
  })
  const stop = (): void => { controller?.abort() }
  stopBtn.addEventListener('click', stop)
  clear.addEventListener('click', () => {
    stop()
    if (chatting) {
      chatting = false
      // The patch stays in selfData, and the entry's periodic refresh publishes it again.
      void ctx.publishSelf({ chatting: undefined }).catch(() => {})
    }
    messages.length = 0
    conversation.replaceChildren(empty)
    route.replaceChildren()
    stats.textContent = ''
  })

  const generate = async (p: number[] | string, n: number, opts: GenerateOptions = {}): Promise<number[]> => {
    const { tokenizer } = await load()
    const ids = typeof p === 'string' ? (tokenizer?.encode(p) ?? []) : p
    if (ids.length === 0) throw new ChatInputError('empty prompt (or no tokenizer for text: give token ids)')
    bubble('user', typeof p === 'string' ? p : `token ids ${p.join(',')}`)
    const out = bubble('assistant', '')
    const tokens: number[] = []
    await run(ids, n, opts, t => { if (typeof p === 'string') out.textContent = t }, tokens)
    if (typeof p !== 'string') out.textContent = tokens.join(' ')
    return tokens
  }

  const localGenerate = async (p: number[], n: number, opts: { stopTokens?: number[] } = {}): Promise<number[]> => {
    const be = await ctx.backend()
    const { generate: generateLocal } = await import('../model/generate.ts')
    const model = await loadModel(await ctx.modelSource(modelUrl), be)
    try {
      return await generateLocal(model, p, { maxNewTokens: n, stopTokens: opts.stopTokens })
    } finally {
      model.dispose()
    }
  }

  window.webswarmChat = {
    serve: async (spec = 'auto') => {
      const r = await contribution.start(spec)
      if (r.kind !== 'blocks') throw new PageParamError(`serve: this tab chose ${r.kind === 'train' ? `training run ${r.run}` : `experts of ${r.model}`}, not blocks`)
      return contribution.status().span ?? { start: r.start, end: r.end }
    },
    generate,
    localGenerate,
    stop,
    state: () => {
      const c = contribution.status()
      return { model: modelId, serving: c.span, sessions: c.sessions, steps: c.steps, failovers, route: session?.route ?? [], tokens: produced }
    }
  }
}
