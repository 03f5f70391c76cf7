/**
 * The one comparison helper (CONTRIBUTING.md STYLE 3): |actual − ref| ≤ atol + rtol·|ref| elementwise.
 * Non-finite reference values are skipped (their positions must be non-finite in actual too
 * only when `matchNonFinite` is set); the error lists the first mismatching indices.
 */
export interface CloseOptions {
  atol?: number
  rtol?: number
  /** Label for the failure message. */
  what?: string
  /** Require actual to be non-finite exactly where ref is. @default false */
  matchNonFinite?: boolean
}

export function assertClose (actual: ArrayLike<number>, ref: ArrayLike<number>, opts: CloseOptions = {}): void {
  const atol = opts.atol ?? 1e-5
  const rtol = opts.rtol ?? 1e-5
  const what = opts.what ?? 'tensor'
  if (actual.length !== ref.length) throw new Error(`${what}: length ${actual.length} != reference ${ref.length}`)
  const bad: string[] = []
  let nbad = 0
  let worst = 0
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]
    const a = actual[i]
    if (!Number.isFinite(r)) {
      if (opts.matchNonFinite === true && Number.isFinite(a)) { nbad++; if (bad.length < 5) bad.push(`[${i}] ${a} vs ${r}`) }
      continue
    }
    const err = Math.abs(a - r)
    if (!(err <= atol + rtol * Math.abs(r))) {
      nbad++
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err)
      if (bad.length < 5) bad.push(`[${i}] ${a} vs ${r}`)
    }
  }
  if (nbad > 0) throw new Error(`${what}: ${nbad}/${ref.length} elements differ (atol ${atol}, rtol ${rtol}, worst |err| ${worst}); first: ${bad.join(', ')}`)
}

/** Relative L2 error ‖a − r‖ / ‖r‖ (how the fixtures' gradients are judged). */
export function relL2 (actual: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0
  let den = 0
  for (let i = 0; i < ref.length; i++) {
    num += (actual[i] - ref[i]) ** 2
    den += ref[i] ** 2
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30)
}
