/**
 * Download/load progress as people read it — bytes, rate, ETA — for the CLI's stderr line and
 * the page's progress bar. The clock is injected so the arithmetic is tested without waiting.
 *
 *   const p = new ProgressMeter()                        // performance.now by default
 *   loadModel(src, be, { onProgress: x => { console.error(formatProgress('model', p.update(x.bytesLoaded, x.bytesTotal))) } })
 */

/** Rate is measured over the samples of this window, ms (smooth, yet follows a changing link). */
const RATE_WINDOW_MS = 5_000

export interface ProgressStats {
  bytesLoaded: number
  bytesTotal: number
  /** 0…1 (1 for an empty total). */
  fraction: number
  /** Seconds since the first update. */
  elapsedS: number
  /** Bytes per second over the recent window; undefined until two samples are apart in time. */
  rate?: number
  /** Seconds left at that rate; undefined without a rate, 0 when done. */
  etaS?: number
  done: boolean
}

/** Turns (loaded, total) samples into rate and ETA. */
export class ProgressMeter {
  private readonly samples: Array<{ t: number, bytes: number }> = []
  private t0?: number

  /**
   * @param clock milliseconds, monotonic (default performance.now)
   * @param windowMs the rate window (default RATE_WINDOW_MS)
   */
  constructor (private readonly clock: () => number = () => performance.now(), private readonly windowMs = RATE_WINDOW_MS) {}

  update (bytesLoaded: number, bytesTotal: number): ProgressStats {
    const t = this.clock()
    this.t0 ??= t
    this.samples.push({ t, bytes: bytesLoaded })
    // Keep one sample older than the window, so the rate spans the whole window.
    while (this.samples.length > 2 && t - this.samples[1].t >= this.windowMs) this.samples.shift()
    const first = this.samples[0]
    const dt = (t - first.t) / 1000
    const rate = dt > 0 ? Math.max(0, bytesLoaded - first.bytes) / dt : undefined
    const done = bytesLoaded >= bytesTotal
    const left = Math.max(0, bytesTotal - bytesLoaded)
    return {
      bytesLoaded,
      bytesTotal,
      fraction: bytesTotal > 0 ? Math.min(1, bytesLoaded / bytesTotal) : 1,
      elapsedS: (t - this.t0) / 1000,
      rate,
      etaS: done ? 0 : rate !== undefined && rate > 0 ? left / rate : undefined,
      done
    }
  }
}

/** Decimal bytes, 3 significant digits: 1.42 GB, 38.2 MB. */
export function formatSize (n: number): string {
  for (const [scale, unit] of [[1e12, 'TB'], [1e9, 'GB'], [1e6, 'MB'], [1e3, 'kB']] as const) {
    if (n >= scale) {
      const v = n / scale
      return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`
    }
  }
  return `${Math.round(n)} B`
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function formatDuration (s: number): string {
  const t = Math.max(0, Math.round(s))
  const h = Math.floor(t / 3600)
  const m = Math.floor((t % 3600) / 60)
  const sec = String(t % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`
}

/** "model  412 MB / 808 MB  51%  38.2 MB/s  ETA 0:10" (or "… done in 0:21" at the end). */
export function formatProgress (label: string, s: ProgressStats): string {
  const parts = [label, `${formatSize(s.bytesLoaded)} / ${formatSize(s.bytesTotal)}`, `${Math.floor(s.fraction * 100)}%`]
  if (s.rate !== undefined) parts.push(`${formatSize(s.rate)}/s`)
  if (s.done) parts.push(`done in ${formatDuration(s.elapsedS)}`)
  else if (s.etaS !== undefined) parts.push(`ETA ${formatDuration(s.etaS)}`)
  return parts.join('  ')
}
