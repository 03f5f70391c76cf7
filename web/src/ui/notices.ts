/**
 * The page's chrome: status pills in the header (device, swarm), short notices under it (one line
 * each, dismissable; errors stay until dismissed, the rest fade after a while), and the detailed
 * log in a collapsible panel at the bottom. Panels never write raw errors into their own body.
 * What the page could not reach (the relay, the model) is one standing notice with a Retry
 * button, kept up to date from the context's state (reachability.ts).
 */
import type { Notice, PageContext } from './context.ts'
import { el } from './dom.ts'
import { unreachableText } from './reachability.ts'

/** Notices shown at once; older ones go (they stay in the log). */
const MAX_NOTICES = 4
/** How long an info notice stays, ms (errors and warnings stay until dismissed). */
const INFO_NOTICE_MS = 8_000

export function mountNotices (box: HTMLElement, logBox: HTMLElement, ctx: PageContext): void {
  const pills = document.querySelector<HTMLElement>('#status-pills')
  const device = el('span', { id: 'status-device', class: 'pill' })
  const swarm = el('span', { id: 'status-swarm', class: 'pill' })
  pills?.replaceChildren(device, swarm)
  const drawPills = (): void => {
    device.textContent = `Compute: ${ctx.deviceLabel}`
    device.dataset.state = ctx.cpuChosen ? 'cpu' : ctx.gpuStatus.state
    const s = ctx.swarmStatus
    swarm.textContent = s.state === 'joined' ? 'Swarm: joined' : s.state === 'joining' ? 'Swarm: joining…' : 'Swarm: relay unreachable'
    swarm.dataset.state = s.state
  }
  for (const ev of ['gpu', 'device', 'swarm']) ctx.addEventListener(ev, drawPills)
  drawPills()

  ctx.addEventListener('notice', ev => {
    const n = (ev as CustomEvent<Notice>).detail
    const close = el('button', { type: 'button', class: 'quiet', 'aria-label': 'Dismiss' }, '×')
    const item = el('div', { class: `notice ${n.level}`, role: n.level === 'error' ? 'alert' : 'status', 'data-level': n.level }, el('span', {}, n.text), close)
    close.addEventListener('click', () => { item.remove() })
    box.append(item)
    // The reachability notice stays until what it names is reached.
    const oldest = (): Element | undefined => [...box.children].find(c => c !== reach)
    while (box.children.length > MAX_NOTICES) oldest()?.remove()
    if (n.level === 'info') setTimeout(() => { item.remove() }, INFO_NOTICE_MS)
  })

  // The reachability notice: one element, redrawn on every change (it stays, its Retry disabled,
  // while a retry is in progress, and goes once everything is reached).
  let reach: HTMLElement | undefined
  const drawReach = (): void => {
    const text = unreachableText(ctx.params, ctx.swarmStatus, ctx.modelStatus)
    const trying = ctx.swarmStatus.state === 'joining' || ctx.modelStatus.state === 'reading'
    if (text === undefined && !(trying && reach !== undefined)) {
      reach?.remove()
      reach = undefined
      return
    }
    if (text === undefined) {
      reach!.querySelector('button')!.disabled = true
      reach!.querySelector('button')!.textContent = 'Retrying…'
      return
    }
    const retry = el('button', { id: 'relay-retry', type: 'button' }, 'Retry')
    retry.addEventListener('click', () => { void ctx.retry() })
    const item = el('div', { id: 'relay-notice', class: 'notice error', role: 'alert', 'data-level': 'error' }, el('span', {}, text), retry)
    if (reach === undefined) box.prepend(item)
    else reach.replaceWith(item)
    reach = item
  }
  for (const ev of ['swarm', 'model']) ctx.addEventListener(ev, drawReach)
  drawReach()

  logBox.textContent = ctx.logLines.join('\n')
  ctx.addEventListener('log', ev => {
    const line = (ev as CustomEvent<string>).detail
    logBox.append(`${logBox.textContent === '' ? '' : '\n'}${line}`)
    // Keep the DOM as short as the context's log.
    if (logBox.childNodes.length > 2 * ctx.logLines.length + 10) logBox.textContent = ctx.logLines.join('\n')
  })
}
