/**
 * How a verifier compares two servers' outputs of the same span on the same inputs, and the
 * digests that evidence carries. Honest servers do not agree bit for bit: an f16 KV cache rounds
 * keys and values, GPUs sum in other orders than the CPU twins, a span split over two servers
 * rounds at the split. So rows are compared by their relative L2 distance, which is invariant to
 * the scale of the hidden state (residual streams grow with depth) and averages rounding noise
 * over the row instead of letting one large channel decide. The threshold is calibrated on honest
 * runs (test/swarm/verify-calibration.test.ts; README.md § Verification beside this file).
 */

/**
 * Largest relative L2 distance ‖a − b‖ / max(‖a‖, ‖b‖) of one position's hidden state (C) that
 * honest servers may differ by. Calibrated: the largest honest deviation measured was
 * 6.7e-4 (CPU f32 against an f16 KV cache, tiny-mixtral, 48 positions); WebGPU f32 against the
 * CPU twins ≈ 1e-6; a split over two servers 0; bench:verify, f16 KV over 10,017 positions in
 * contexts up to 112: 2.0e-3 (it grows with the context) but for one position at 1.23e-2 (an MoE
 * expert choice flipping, we think: why verify.ts bans only at a second strike, and never for the
 * same row of a session twice). 0.01 leaves 5×
 * for longer contexts and bigger models, while a lie the verifier must catch moves a row by more (1 % noise or a 1 % scale is at the threshold; zeros, another
 * session's rows or a different model are near 1).
 */
export const VERIFY_TOLERANCE = 0.01

/** Rows of zero norm on both sides compare equal; this floor keeps the ratio finite otherwise. */
const NORM_FLOOR = 1e-12

/** Relative L2 distance of two rows: 0 for equal rows, up to 2 for opposite ones; non-finite input → Infinity. */
export function rowDeviation (a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity
  let d = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i]
    const y = b[i]
    d += (x - y) * (x - y)
    na += x * x
    nb += y * y
  }
  if (!Number.isFinite(d) || !Number.isFinite(na) || !Number.isFinite(nb)) return Infinity
  const n = Math.sqrt(Math.max(na, nb))
  return n < NORM_FLOOR ? 0 : Math.sqrt(d) / n
}

/** The first position whose rows differ by more than `tolerance`, and by how much; undefined when all agree. */
export interface Mismatch {
  /** Offset in rows from the start of the compared range. */
  row: number
  deviation: number
}

/** Compares (T, C) outputs row by row; returns the first row beyond `tolerance`, and the largest deviation seen. */
export function compareRows (a: Float32Array, b: Float32Array, C: number, tolerance: number): { mismatch?: Mismatch, max: number } {
  if (a.length !== b.length || a.length % C !== 0) return { mismatch: { row: 0, deviation: Infinity }, max: Infinity }
  let max = 0
  for (let t = 0; t < a.length / C; t++) {
    const dev = rowDeviation(a.subarray(t * C, (t + 1) * C), b.subarray(t * C, (t + 1) * C))
    if (!(dev <= tolerance)) return { mismatch: { row: t, deviation: dev }, max: Math.max(max, dev) }
    max = Math.max(max, dev)
  }
  return { max }
}

/** How many of the rows of `a` and `b` (C each) differ by more than `tolerance`. */
export function countMismatches (a: Float32Array, b: Float32Array, C: number, tolerance: number): number {
  if (a.length !== b.length || a.length % C !== 0) return Infinity
  let n = 0
  for (let t = 0; t < a.length / C; t++) if (!(rowDeviation(a.subarray(t * C, (t + 1) * C), b.subarray(t * C, (t + 1) * C)) <= tolerance)) n++
  return n
}

/** SHA-256 of a tensor's bytes (little-endian f32, as on the wire), hex. */
export async function digestF32 (x: Float32Array): Promise<string> {
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
  const h = await crypto.subtle.digest('SHA-256', bytes.slice())
  return Array.from(new Uint8Array(h), b => b.toString(16).padStart(2, '0')).join('')
}
