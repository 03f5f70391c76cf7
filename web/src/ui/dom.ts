/** The DOM helpers every panel shares: element building, short ids, numbers for people. */

type Child = Node | string

/** `el('button', { id: 'x', type: 'button' }, 'Go')`: attributes as given; children appended in order. */
export function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, v)
  e.append(...children)
  return e
}

/** A peer id as people can compare it at a glance: head…tail. */
export function short (id: string): string {
  return id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-4)}` : id
}

/** "3 s", "4 min 05 s", "2 h 03 min". */
export function formatUptime (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, '0')} min`
}

/** A definition list of label → value, each value cell tagged `data-key` for tests. */
export function facts (id: string, rows: ReadonlyArray<readonly [string, string]>): HTMLDListElement {
  const dl = el('dl', { id, class: 'facts' })
  for (const [k, v] of rows) dl.append(el('dt', {}, k), el('dd', { 'data-key': k }, v))
  return dl
}

/** A collapsed section: `<details><summary>` around `content`. */
export function disclosure (id: string, summary: string, ...content: Child[]): HTMLDetailsElement {
  return el('details', { id, class: 'disclosure' }, el('summary', {}, summary), ...content)
}

/** Coalesces bursts of change events into one call `ms` later. */
export function coalesce (fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined
  return () => {
    if (timer !== undefined) return
    timer = setTimeout(() => { timer = undefined; fn() }, ms)
  }
}
