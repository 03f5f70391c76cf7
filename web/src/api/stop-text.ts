/**
 * Stop strings over streamed text: text is released only when no stop string could still begin
 * in it, so a client never receives the start of a stop sequence that a later token completes.
 */
export class StopText {
  private text = ''
  private sent = 0
  /** True once a stop string matched: the text ends before it. */
  stopped = false

  constructor (private readonly stops: readonly string[]) {}

  /** Adds decoded text; returns what may be sent now ('' when held back or stopped). */
  push (piece: string): string {
    if (this.stopped) return ''
    this.text += piece
    const longest = this.stops.reduce((a, s) => Math.max(a, s.length), 0)
    // A match can only end in the new text; start early enough to catch one straddling it.
    const from = Math.max(0, this.text.length - piece.length - longest + 1)
    let at = -1
    for (const s of this.stops) {
      const i = this.text.indexOf(s, from)
      if (i >= 0 && (at < 0 || i < at)) at = i
    }
    if (at >= 0) {
      this.stopped = true
      const out = this.text.slice(this.sent, Math.max(this.sent, at))
      this.text = this.text.slice(0, at)
      this.sent = this.text.length
      return out
    }
    const safe = this.text.length - this.held()
    if (safe <= this.sent) return ''
    const out = this.text.slice(this.sent, safe)
    this.sent = safe
    return out
  }

  /** The rest of the text (at the end of the generation: nothing can complete a stop string any more). */
  flush (): string {
    const out = this.text.slice(this.sent)
    this.sent = this.text.length
    return out
  }

  /** The whole output so far, stop string excluded. */
  get all (): string {
    return this.text
  }

  /** Length of the longest tail of the text that is a proper prefix of a stop string. */
  private held (): number {
    let hold = 0
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) { hold = k; break }
      }
    }
    return hold
  }
}
