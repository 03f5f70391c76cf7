/**
 * The page's chrome: status pills in the header (device, swarm), short notices under it (one line
 * each, dismissable; errors stay until dismissed, the rest fade after a while), and the detailed
 * log in a collapsible panel at the bottom. Panels never write raw errors into their own body.
 */
import type { Notice, PageContext } from './context.ts'
import { el } from './dom.ts'

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
    while (box.children.length > MAX_NOTICES) box.firstElementChild!.remove()
    if (n.level === 'info') setTimeout(() => { item.remove() }, INFO_NOTICE_MS)
  })

  logBox.textContent = ctx.logLines.join('\n')
  ctx.addEventListener('log', ev => {
    const line = (ev as CustomEvent<string>).detail
    logBox.append(`${logBox.textContent === '' ? '' : '\n'}${line}`)
    // Keep the DOM as short as the context's log.
    if (logBox.childNodes.length > 2 * ctx.logLines.length + 10) logBox.textContent = ctx.logLines.join('\n')
  })
}
