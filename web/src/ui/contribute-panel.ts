/**
 * The Contribute panel: one button. The tab picks its own role (the least-served span of the
 * page's model that fits the GPU-memory budget, which the user may lower), then shows what it does
 * for the swarm — model, blocks, sessions, tokens served, uptime, GPU memory, throughput — and
 * stops cleanly. A background tab is throttled by the browser: the panel warns, and the tab's
 * swarm entry says so (the map marks it).
 */
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import { MemoryBudgetError, formatBytes, parseByteSize } from '../model/memory-plan.ts'
import type { PageContext } from './context.ts'
import { disclosure, el, facts, formatUptime } from './dom.ts'
import { createProgressBar } from './progress-bar.ts'
import { Contribution, defaultBudget, type SwarmPieces } from './serving.ts'

/** Status refresh period, ms (uptime and counters move without events). */
const STATUS_MS = 1000

export function mountContributePanel (body: HTMLElement, ctx: PageContext, pieces: () => Promise<SwarmPieces>): Contribution {
  const progress = createProgressBar('serve-progress')
  const contribution = new Contribution(ctx, pieces, progress)
  const intro = el('p', { class: 'hint' }, 'Lend this tab\'s GPU to the swarm. It picks the part of the model the swarm needs most and serves it to everyone who chats.')
  const start = el('button', { id: 'contribute-button', type: 'button', class: 'primary big' }, 'Contribute')
  const stop = el('button', { id: 'contribute-stop', type: 'button', hidden: '' }, 'Stop contributing')
  const budget = el('input', { id: 'contribute-budget', size: '8', placeholder: 'e.g. 2GB', 'aria-describedby': 'contribute-budget-hint' })
  const budgetHint = el('span', { id: 'contribute-budget-hint', class: 'hint' }, '')
  const span = el('input', { id: 'serve-span', size: '8', value: 'auto', 'aria-label': 'blocks to serve (A:B or auto)' })
  const advanced = disclosure('contribute-advanced', 'Limits and blocks',
    el('div', { class: 'settings-grid' },
      el('label', { for: 'contribute-budget' }, 'GPU memory budget'), el('div', {}, budget, ' ', budgetHint),
      el('label', { for: 'serve-span' }, 'Blocks (A:B, or auto)'), span))
  const status = el('p', { id: 'serve-status', class: 'status-line' }, 'Not contributing.')
  const warn = el('p', { id: 'background-warning', class: 'warning', hidden: '' }, 'This tab is in the background: the browser slows its timers, so it serves slower. Keep it visible (its own window) for full speed.')
  const factsBox = el('div', { id: 'contribute-facts-box' })
  body.replaceChildren(intro, el('div', { class: 'row' }, start, stop), status, progress.element, warn, factsBox, advanced)

  // The budget field starts at what the page would use by itself (the user may lower it).
  // On the CPU twins there is no GPU memory to budget (unless ?max-gpu-memory= asks for one).
  const fillBudget = (gpu: GpuBackend | undefined): void => {
    const b = ctx.cpuChosen || gpu === undefined ? ctx.params.maxGpuMemory : defaultBudget(ctx, gpu)
    budget.value = b === undefined ? '' : formatBytes(b).replace(' ', '')
    budgetHint.textContent = ctx.params.maxGpuMemory !== undefined ? 'from ?max-gpu-memory=' : b === undefined ? 'no limit on the CPU' : 'from this adapter; lower it to leave memory to other apps'
  }
  void ctx.gpu.then(fillBudget)
  ctx.addEventListener('device', () => { fillBudget(undefined) })

  const render = (): void => {
    contribution.refreshMirror()
    const s = contribution.status()
    document.body.dataset.contribute = s.state
    start.hidden = contribution.active
    stop.hidden = !contribution.active
    warn.hidden = !(contribution.active && document.visibilityState === 'hidden')
    if (s.span === undefined) {
      status.textContent = contribution.active ? `Choosing and loading blocks (${s.state})…` : 'Not contributing.'
      factsBox.replaceChildren()
      return
    }
    // "serving blocks [A, B)": the line the e2e specs and the console read.
    status.textContent = s.state === 'online'
      ? `serving blocks [${s.span.start}, ${s.span.end}) · ${s.sessions} sessions · ${s.steps} steps · ${s.throughput.toFixed(1)} tokens/s per block`
      : `loading blocks [${s.span.start}, ${s.span.end})…`
    factsBox.replaceChildren(facts('contribute-facts', [
      ['model', s.model],
      ['blocks', `${s.span.start}–${s.span.end - 1} of ${s.numBlocks ?? '?'}`],
      ['sessions now', String(s.sessions)],
      ['tokens served', String(s.tokens)],
      ['uptime', s.startedAt === undefined ? '—' : formatUptime(Date.now() - s.startedAt)],
      ['GPU memory', `${s.plannedBytes === undefined ? '—' : formatBytes(s.plannedBytes)} planned${s.budgetBytes === undefined ? '' : ` of ${formatBytes(s.budgetBytes)} budget`}`],
      ['throughput', `${s.throughput.toFixed(2)} tokens/s per block`],
      ['device', `${s.device} · ${s.computeIn === 'worker' ? 'in a Web Worker' : 'on the page thread'}`]
    ]))
  }

  start.addEventListener('click', () => {
    start.disabled = true
    let b: number | undefined
    try {
      b = budget.value.trim() === '' ? undefined : parseByteSize(budget.value.trim())
    } catch (e) {
      ctx.notify(`GPU memory budget: ${(e as Error).message}`, 'error')
      start.disabled = false
      return
    }
    const spec = span.value.trim() === '' ? 'auto' : span.value.trim()
    const started = contribution.start(spec, b)
    render()
    started.then(s => { ctx.notify(`Contributing: serving ${ctx.params.modelId} blocks ${s.start}–${s.end - 1}.`) }, e => {
      if (e instanceof MemoryBudgetError) {
        ctx.notify(`Not enough GPU memory for any span: ${e.message}. Raise the budget (Limits and blocks) to at least ${formatBytes(e.plan.totalBytes)} to serve one block.`, 'error')
      } else ctx.notify(`Could not contribute: ${(e as Error).message}`, 'error')
    }).finally(() => { start.disabled = false; render() })
  })
  stop.addEventListener('click', () => {
    stop.disabled = true
    contribution.stop().then(() => { ctx.notify('Stopped contributing.') }, e => { ctx.notify(`Stopping failed: ${(e as Error).message}`, 'error') })
      .finally(() => { stop.disabled = false; render() })
  })
  document.addEventListener('visibilitychange', () => {
    const background = document.visibilityState === 'hidden'
    // The patch stays in selfData, and the entry's periodic refresh publishes it again.
    void ctx.publishSelf({ background }).catch(() => {})
    if (background && contribution.active) ctx.log('tab hidden: the browser throttles background timers, serving slows down')
    render()
  })
  // Closing the tab: announce OFFLINE if there is time (else the records expire).
  window.addEventListener('pagehide', () => { void contribution.stop().catch(() => {}) })
  setInterval(render, STATUS_MS)
  render()
  return contribution
}
