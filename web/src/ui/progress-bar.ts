/**
 * A download progress bar for model weights: a <progress> element and a line with bytes, rate
 * and ETA (util/progress.ts), shown only while a load runs. Several loads in a row (the client's
 * ends, then a span to serve) reuse one bar.
 */
import { ProgressMeter, formatProgress } from '../util/progress.ts'

export interface ProgressBar {
  readonly element: HTMLElement
  /** Starts a load named `label`; returns its onProgress callback. */
  start: (label: string) => (p: { bytesLoaded: number, bytesTotal: number }) => void
}

export function createProgressBar (id: string): ProgressBar {
  const element = document.createElement('div')
  element.id = id
  element.className = 'load-progress'
  element.hidden = true
  const bar = document.createElement('progress')
  bar.max = 1
  bar.value = 0
  const text = document.createElement('span')
  element.append(bar, text)
  return {
    element,
    start (label) {
      const meter = new ProgressMeter()
      element.hidden = false
      element.dataset.state = 'loading'
      return p => {
        const s = meter.update(p.bytesLoaded, p.bytesTotal)
        bar.value = s.fraction
        text.textContent = ` ${formatProgress(label, s)}`
        // Tests read how far it got. A finished bar goes: "done in 0:00" above the chat was noise.
        element.dataset.bytes = String(p.bytesLoaded)
        if (s.done) {
          element.dataset.state = 'done'
          element.hidden = true
        }
      }
    }
  }
}
