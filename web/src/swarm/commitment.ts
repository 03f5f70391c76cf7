/**
 * Compact commitments to a span's outputs (PROTOCOL.md, `infer` STEP_COMMIT / COMMITMENT): per
 * row, the k channels of largest magnitude — their indices (u16) and values, quantized to i16
 * against the row's largest magnitude (one f32 scale per row). A verifier that already holds the
 * route server's full rows compares them at the committed channels instead of fetching the
 * second opinion's full rows: 4k + 4 bytes per position instead of 4C (C = 4096, k = 32: 132
 * bytes instead of 16 KiB).
 *
 * Tolerance. The relative L2 distance at the committed channels, ‖a[idx] − v‖ / ‖v‖, is held to
 * the full-row tolerance (VERIFY_TOLERANCE) plus the quantization's worst case: each value is off
 * by at most scale / 2 = max|v| / 65,534, so ‖error‖ ≤ √k · max|v| / 65,534 ≤ √k / 65,534 · ‖v‖.
 * Honest deviations at the top-k channels are no larger than over the whole row in the
 * calibration runs (test/swarm/verify-commitment.test.ts measures both, f32 against an f16 KV
 * cache on tiny-mixtral). What it gives up: a lie confined to channels outside the second
 * opinion's top k is not seen by this check (README.md § Threat model beside client/verify.ts).
 */
import { MAX_STEP_TOKENS } from './constants.ts'
import { rowDeviation } from './client/verify-compare.ts'

/** Most channels a commitment may name per row. */
export const MAX_COMMIT_K = 64
/** Bytes of one row's commitment: its scale (f32) and k channels (u16 index, i16 value), little-endian. */
export const commitRowBytes = (k: number): number => 4 + 4 * k
/** Most bytes of a commitment (MAX_STEP_TOKENS rows at MAX_COMMIT_K). */
export const MAX_COMMIT_BYTES = MAX_STEP_TOKENS * commitRowBytes(MAX_COMMIT_K)
const Q = 32767

/** Rows (T, C) committed to: per row, [scale f32][k × (index u16, value i16 × scale)], little-endian. */
export interface Commitment { k: number, rows: number, bytes: Uint8Array }

/** The commitment to `rows` (T, C): the k largest-magnitude channels of each row. */
export function commit (rows: Float32Array, C: number, k: number): Commitment {
  const T = rows.length / C
  const kk = Math.min(k, C)
  const bytes = new Uint8Array(T * commitRowBytes(kk))
  const v = new DataView(bytes.buffer)
  const order = Array.from({ length: C }, (_, i) => i)
  for (let t = 0; t < T; t++) {
    const row = rows.subarray(t * C, (t + 1) * C)
    // Ties broken by index so that equal rows commit to equal bytes.
    const top = order.slice().sort((a, b) => Math.abs(row[b]) - Math.abs(row[a]) || a - b).slice(0, kk)
    const max = top.length === 0 ? 0 : Math.abs(row[top[0]])
    const scale = Number.isFinite(max) && max > 0 ? max / Q : 0
    const at = t * commitRowBytes(kk)
    v.setFloat32(at, scale, true)
    for (let j = 0; j < kk; j++) {
      const i = top[j]
      v.setUint16(at + 4 + 4 * j, i, true)
      v.setInt16(at + 6 + 4 * j, scale === 0 ? 0 : Math.max(-Q, Math.min(Q, Math.round(row[i] / scale))), true)
    }
  }
  return { k: kk, rows: T, bytes }
}

/** Tolerance of a k-channel comparison: the full-row one plus the quantization's worst case. */
export function commitTolerance (tolerance: number, k: number): number {
  return tolerance + Math.sqrt(k) / (2 * Q)
}

/**
 * Compares full rows `a` (T, C) with a commitment to the same positions; the first row beyond
 * `tolerance` (commitTolerance), and the largest deviation. A commitment of the wrong size, or
 * naming a channel ≥ C or the same channel twice, or a non-finite scale, mismatches (Infinity).
 */
export function compareCommitment (a: Float32Array, C: number, c: Commitment, tolerance: number): { mismatch?: { row: number, deviation: number }, max: number } {
  const T = a.length / C
  const bad = (row: number): { mismatch: { row: number, deviation: number }, max: number } => ({ mismatch: { row, deviation: Infinity }, max: Infinity })
  if (!Number.isInteger(T) || c.rows !== T || c.bytes.length !== T * commitRowBytes(c.k) || c.k > C) return bad(0)
  const v = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength)
  const mine = new Float32Array(c.k)
  const theirs = new Float32Array(c.k)
  const seen = new Uint8Array(C)
  let max = 0
  for (let t = 0; t < T; t++) {
    const at = t * commitRowBytes(c.k)
    const scale = v.getFloat32(at, true)
    if (!(Number.isFinite(scale) && scale >= 0)) return bad(t)
    seen.fill(0)
    for (let j = 0; j < c.k; j++) {
      const i = v.getUint16(at + 4 + 4 * j, true)
      if (i >= C || seen[i] !== 0) return bad(t)
      seen[i] = 1
      mine[j] = a[t * C + i]
      theirs[j] = v.getInt16(at + 6 + 4 * j, true) * scale
    }
    const dev = rowDeviation(mine, theirs)
    if (!(dev <= tolerance)) return { mismatch: { row: t, deviation: dev }, max: Math.max(max, dev) }
    max = Math.max(max, dev)
  }
  return { max }
}
