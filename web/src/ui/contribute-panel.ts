/**
 * The Contribute panel: one button. The tab picks its own role (role-choice.ts: blocks of the
 * model that needs them most, experts an MoE model lacks, or a training run that wants members,
 * within the GPU-memory budget, which the user may lower), says which and why, then shows what it
 * does for the swarm — model, blocks, sessions, tokens served, uptime, memory, throughput —
 * and stops cleanly. A background tab is throttled by the browser: the panel warns, and the tab's
 * swarm entry says so (the map marks it).
 */
import type { GpuBackend } from '../gpu/gpu-backend.ts'
import { MemoryBudgetError, formatBytes, parseByteSize } from '../model/memory-plan.ts'
import { NoRoleFitsError } from './errors.ts'
import type { PageContext } from './context.ts'
import { disclosure, el, facts, formatUptime } from './dom.ts'
import { createProgressBar } from './progress-bar.ts'
import type { Role } from './role-choice.ts'
import { Contribution, defaultBudget, type RunJoiner, type SwarmPieces } from './serving.ts'
import { blocksText } from './swarm-summary.ts'

/** Status refresh period, ms (uptime and counters move without events). */
const STATUS_MS = 1000

/** The role in a few words: "byte-mixtral blocks 0–1", "byte-mixtral block 2", "byte-mixtral experts 2,5 (layer 1)", "training run r". */
function roleWords (r: Role): string {
  if (r.kind === 'blocks') return `${r.model} ${blocksText(r.start, r.end)}`
  if (r.kind === 'experts') return `${r.model} experts ${r.experts.join(',')} (layer ${r.layer})`
  return `training run ${r.run}`
}

export function mountContributePanel (body: HTMLElement, ctx: PageContext, pieces: () => Promise<SwarmPieces>, trainer?: RunJoiner): Contribution {
  const progress = createProgressBar('serve-progress')
  const contribution = new Contribution(ctx, pieces, progress, trainer)
  const intro = el('p', { id: 'contribute-intro', class: 'hint' })
  const start = el('button', { id: 'contribute-button', type: 'button', class: 'primary big' }, 'Contribute')
  const stop = el('button', { id: 'contribute-stop', type: 'button', hidden: '' }, 'Stop contributing')
  const budget = el('input', { id: 'contribute-budget', size: '8', placeholder: 'e.g. 2GB', 'aria-describedby': 'contribute-budget-hint' })
  const budgetHint = el('span', { id: 'contribute-budget-hint', class: 'hint' }, '')
  const span = el('input', { id: 'serve-span', size: '8', value: 'auto', 'aria-label': 'blocks to serve (A:B or auto)' })
  const budgetLabel = el('label', { for: 'contribute-budget' })
  const advanced = disclosure('contribute-advanced', 'Limits and blocks',
    el('div', { class: 'settings-grid' },
      budgetLabel, el('div', {}, budget, ' ', budgetHint),
      el('label', { for: 'serve-span' }, 'Blocks (A:B, or auto)'), span))
  const status = el('p', { id: 'serve-status', class: 'status-line' }, 'Not contributing.')
  const why = el('p', { id: 'contribute-role', class: 'hint', hidden: '' })
  const warn = el('p', { id: 'background-warning', class: 'warning', hidden: '' }, 'This tab is in the background: the browser slows its timers, so it serves slower. Keep it visible (its own window) for full speed.')
  const factsBox = el('div', { id: 'contribute-facts-box' })
  body.replaceChildren(intro, el('div', { class: 'row' }, start, stop), status, why, progress.element, warn, factsBox, advanced)

  // The budget field starts at what the page would use by itself (the user may lower it).
  // On the CPU twins there is no GPU memory to budget (unless ?max-gpu-memory= asks for one).
  const fillBudget = (gpu: GpuBackend | undefined): void => {
    const b = ctx.cpuChosen || gpu === undefined ? ctx.params.maxGpuMemory : defaultBudget(ctx, gpu)
    budget.value = b === undefined ? '' : formatBytes(b).replace(' ', '')
    budgetHint.textContent = ctx.params.maxGpuMemory !== undefined ? 'from ?max-gpu-memory=' : b === undefined ? 'no limit on the CPU' : 'from this adapter; lower it to leave memory to other apps'
  }
  void ctx.gpu.then(fillBudget)
  ctx.addEventListener('device', () => { fillBudget(undefined) })

  // On the CPU twins the panel speaks of the CPU and of memory, not of a GPU this tab does not use.
  const memoryWord = (): string => ctx.cpuChosen ? 'memory' : 'GPU memory'
  const drawDevice = (): void => {
    intro.textContent = `Lend this tab's ${ctx.cpuChosen ? 'CPU' : 'GPU'} to the swarm. It picks what the swarm needs most — the blocks of a model nobody serves yet, experts of an MoE model, or a training run short of members — and does it for everyone.`
    budgetLabel.textContent = ctx.cpuChosen ? 'Memory budget' : 'GPU memory budget'
  }
  ctx.addEventListener('device', drawDevice)
  drawDevice()

  const render = (): void => {
    contribution.refreshMirror()
    const s = contribution.status()
    document.body.dataset.contribute = s.state
    start.hidden = contribution.active
    stop.hidden = !contribution.active
    warn.hidden = !(contribution.active && document.visibilityState === 'hidden')
    why.hidden = s.role === undefined
    why.dataset.kind = s.role?.kind ?? ''
    why.textContent = s.role === undefined ? '' : `Why this role: ${s.reason ?? '?'}.`
    if (s.role === undefined) {
      status.textContent = contribution.active ? `Choosing and loading (${s.state})…` : 'Not contributing.'
      factsBox.replaceChildren()
      return
    }
    const uptime = s.startedAt === undefined ? '—' : formatUptime(Date.now() - s.startedAt)
    const memory = `${s.plannedBytes === undefined ? '—' : formatBytes(s.plannedBytes)} planned${s.budgetBytes === undefined ? '' : ` of ${formatBytes(s.budgetBytes)} budget`}`
    if (s.role.kind === 'train') {
      status.textContent = s.state === 'online' ? `training run ${s.model} (Training panel below)` : s.state === 'stopped' ? `training run ${s.model} stopped (Stop contributing to choose again)` : `joining training run ${s.model}…`
      factsBox.replaceChildren(facts('contribute-facts', [['run', s.model], ['uptime', uptime], ['device', s.device]]))
      return
    }
    if (s.role.kind === 'experts') {
      status.textContent = s.state === 'online' ? `hosting ${roleWords(s.role)} · ${s.steps} calls · ${s.tokens} rows` : `loading ${roleWords(s.role)}…`
      factsBox.replaceChildren(facts('contribute-facts', [
        ['model', s.model], ['experts', `${s.role.experts.join(', ')} of layer ${s.role.layer}`], ['calls answered', String(s.steps)], ['rows served', String(s.tokens)],
        ['uptime', uptime], [memoryWord(), memory], ['throughput', `${s.throughput.toFixed(1)} rows/s per expert`], ['device', `${s.device} · on the page thread`]
      ]))
      return
    }
    if (s.span === undefined) {
      status.textContent = `loading ${roleWords(s.role)}…`
      factsBox.replaceChildren()
      return
    }
    // Until a step ran, the server's throughput is its starting guess, not a measurement.
    const throughput = s.steps === 0 ? 'not measured yet' : `${s.throughput.toFixed(2)} tokens/s per block`
    // "serving blocks A–B of M" (or "block A"), worded as the map words it: the line the e2e specs read.
    const blocks = blocksText(s.span.start, s.span.end)
    status.textContent = s.state === 'online'
      ? `serving ${blocks} of ${s.model} · ${s.sessions} session${s.sessions === 1 ? '' : 's'} · ${s.steps} step${s.steps === 1 ? '' : 's'}${s.steps === 0 ? '' : ` · ${throughput}`}`
      : `loading ${blocks} of ${s.model}…`
    factsBox.replaceChildren(facts('contribute-facts', [
      ['model', s.model],
      // Under the label 'blocks': the numbers only ("1 of 3", "0–1 of 3").
      ['blocks', `${s.span.end - s.span.start === 1 ? s.span.start : `${s.span.start}–${s.span.end - 1}`} of ${s.numBlocks ?? '?'}`],
      ['sessions now', String(s.sessions)],
      ['tokens served', String(s.tokens)],
      ['uptime', uptime],
      [memoryWord(), memory],
      ['throughput', throughput],
      ['device', `${s.device} · ${s.computeIn === 'worker' ? 'in a Web Worker' : 'on the page thread'}`]
    ]))
  }

  start.addEventListener('click', () => {
    start.disabled = true
    let b: number | undefined
    try {
      b = budget.value.trim() === '' ? undefined : parseByteSize(budget.value.trim())
    } catch (e) {
      ctx.notify(`${budgetLabel.textContent}: ${(e as Error).message}`, 'error')
      start.disabled = false
      return
    }
    const spec = span.value.trim() === '' ? 'auto' : span.value.trim()
    const started = contribution.start(spec, b)
    render()
    started.then(r => { ctx.notify(`Contributing: ${roleWords(r)}.`) }, e => {
      if (e instanceof MemoryBudgetError) {
        ctx.notify(`Not enough ${memoryWord()} for any span: ${e.message}. Raise the budget (Limits and blocks) to at least ${formatBytes(e.plan.totalBytes)} to serve one block.`, 'error')
      } else if (e instanceof NoRoleFitsError && e.smallest !== undefined) {
        const what = e.smallest.what.startsWith('one block') ? `to serve ${e.smallest.what}` : `for ${e.smallest.what}`
        ctx.notify(`Not enough ${memoryWord()} for any span: ${e.message}. Raise the budget (Limits and blocks) to at least ${formatBytes(e.smallest.bytes)} ${what}.`, 'error')
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
