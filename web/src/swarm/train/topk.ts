/**
 * Top-k sparse pseudo-gradients with low-bit values (SparseLoCo, Sarfi et al. 2025: 1–3 % top-k
 * per chunk, 2-bit values, error feedback). The format, its encoder, decoder and bad-input check;
 * pure host code, bit-identical on every engine (JS numbers are IEEE f64, scales and values are
 * rounded to f32 with Math.fround). The GPU path selects and codes with shaders/topk_ef.wgsl
 * (twin: gpu/cpu/topk-ef.ts) and packs its codes here (`packTopK`), same layout.
 *
 * ## Byte layout of n elements, chunk C, k kept per chunk, b bits per value
 *   Chunk j holds elements [j·C, min(n, (j + 1)·C)) — length L (C except maybe the last) — and
 *   keeps kc = min(k, L) of them. Chunks follow each other, no padding:
 *     [0, 4)    scale s, f32 LE: the largest |value| kept (0: every value decodes to 0)
 *     indices   'list' mode: kc in-chunk indices, strictly increasing, u8 (C ≤ 256) or u16 LE;
 *               'bitmap' mode: ⌈L/8⌉ bytes, bit i (LSB first) set for kept element i, exactly kc set.
 *               The mode is whichever is smaller for (C, k): a function of the codec, never of data.
 *     values    ⌈kc·b/8⌉ bytes: kc codes of b bits, LSB first, in index order.
 *   A code q decodes to f32(s · LEVEL[q]). Two grids:
 *     signed (contributions): 2^b levels (2q − (2^b − 1)) / (2^b − 1), no zero — the kept values
 *                             are the chunk's largest, so zero would waste a level (b = 2: ±1, ±1/3);
 *     zero (the owners' mean): 2^b − 1 levels (q − M) / M, M = 2^(b−1) − 1, and the all-ones code is
 *                             refused — the mean is sent on the union of the members' supports,
 *                             where some entries cancel to exactly zero.
 * Selection keeps the kc largest |x| (ties: lower index first); codes round to the nearest level.
 */
import { TrainArgumentError } from './errors.ts'

export interface TopKParams {
  /** Elements per chunk (multiple of 8, 8…65,536). */
  chunk: number
  /** Values kept per chunk (1…chunk). */
  k: number
  /** Bits per kept value (2…8). */
  bits: number
  /** The zero grid (owners' means) instead of the signed grid (contributions). */
  zero: boolean
}

export type IndexMode = 'list' | 'bitmap'

/** Why (chunk, k, bits) is not a valid top-k codec, or undefined. */
export function topkParamsProblem (p: { chunk: number, k: number, bits: number }): string | undefined {
  if (!Number.isInteger(p.chunk) || p.chunk < 8 || p.chunk > 65536 || p.chunk % 8 !== 0) return `chunk must be a multiple of 8 in [8, 65536], got ${p.chunk}`
  if (!Number.isInteger(p.k) || p.k < 1 || p.k > p.chunk) return `k must be an integer in [1, chunk = ${p.chunk}], got ${p.k}`
  if (!Number.isInteger(p.bits) || p.bits < 2 || p.bits > 8) return `bits must be an integer in [2, 8], got ${p.bits}`
  return undefined
}

function checkParams (p: TopKParams): void {
  const why = topkParamsProblem(p)
  if (why !== undefined) throw new TrainArgumentError(`top-k codec: ${why}`)
}

/** Bytes per index in list mode. */
const indexWidth = (chunk: number): number => chunk <= 256 ? 1 : 2

/** List or bitmap: whichever takes fewer bytes for a full chunk (ties: list). */
export function indexMode (p: TopKParams): IndexMode {
  return p.k * indexWidth(p.chunk) <= p.chunk / 8 ? 'list' : 'bitmap'
}

function chunkBytes (p: TopKParams, mode: IndexMode, len: number): number {
  const kc = Math.min(p.k, len)
  return 4 + (mode === 'list' ? kc * indexWidth(p.chunk) : Math.ceil(len / 8)) + Math.ceil(kc * p.bits / 8)
}

/** Encoded size of n elements. */
export function topkBytes (n: number, p: TopKParams): number {
  if (n === 0) return 0
  const mode = indexMode(p)
  const full = Math.floor(n / p.chunk)
  const rest = n - full * p.chunk
  return full * chunkBytes(p, mode, p.chunk) + (rest > 0 ? chunkBytes(p, mode, rest) : 0)
}

/** The bytes of elements [start, end) of an encoded vector (start a multiple of the chunk): a view. */
export function sliceTopK (bytes: Uint8Array, start: number, end: number, p: TopKParams): Uint8Array {
  if (start % p.chunk !== 0) throw new TrainArgumentError(`sliceTopK: start ${start} is not a multiple of the chunk ${p.chunk}`)
  const from = (start / p.chunk) * chunkBytes(p, indexMode(p), p.chunk)
  return bytes.subarray(from, from + topkBytes(end - start, p))
}

const levelCache = new Map<string, Float32Array>()

/** f32 level of every code of the grid (codes past the zero grid's last are absent). */
export function levels (bits: number, zero: boolean): Float32Array {
  const key = `${bits}/${zero ? 'z' : 's'}`
  let t = levelCache.get(key)
  if (t === undefined) {
    if (zero) {
      const M = 2 ** (bits - 1) - 1
      t = Float32Array.from({ length: 2 * M + 1 }, (_, q) => (q - M) / M)
    } else {
      const top = 2 ** bits - 1
      t = Float32Array.from({ length: top + 1 }, (_, q) => (2 * q - top) / top)
    }
    levelCache.set(key, t)
  }
  return t
}

/** Nearest code of v / s on the grid (s > 0). */
function codeOf (v: number, s: number, bits: number, zero: boolean): number {
  if (zero) {
    const M = 2 ** (bits - 1) - 1
    return Math.min(2 * M, Math.max(0, Math.round(v / s * M + M)))
  }
  const top = 2 ** bits - 1
  return Math.min(top, Math.max(0, Math.round((v / s + 1) * top / 2)))
}

/**
 * x → encoded bytes; `sent`, when given (length n), receives the decoded values (error feedback
 * needs what was sent, and this saves a decode). Throws TrainArgumentError on a non-finite value.
 */
export function encodeTopK (x: Float32Array, p: TopKParams, sent?: Float32Array): Uint8Array {
  checkParams(p)
  const n = x.length
  if (sent !== undefined && sent.length !== n) throw new TrainArgumentError(`encodeTopK: sent holds ${sent.length} elements, x ${n}`)
  const out = new Uint8Array(topkBytes(n, p))
  const view = new DataView(out.buffer)
  const lv = levels(p.bits, p.zero)
  const abs = new Float32Array(p.chunk)
  const kept = new Int32Array(p.k)
  sent?.fill(0)
  let o = 0
  for (let lo = 0; lo < n; lo += p.chunk) {
    const len = Math.min(p.chunk, n - lo)
    const kc = Math.min(p.k, len)
    for (let i = 0; i < len; i++) {
      const v = x[lo + i]
      if (!Number.isFinite(v)) throw new TrainArgumentError(`encodeTopK: element ${lo + i} is ${v}`)
      abs[i] = Math.abs(v)
    }
    const sel = selectTopK(abs, len, kc, kept)
    let s = 0
    for (const i of sel) s = Math.max(s, abs[i])
    s = Math.fround(s)
    const q = Array.from(sel, i => s > 0 ? codeOf(x[lo + i], s, p.bits, p.zero) : (p.zero ? 2 ** (p.bits - 1) - 1 : 0))
    if (sent !== undefined) sel.forEach((i, j) => { sent[lo + i] = Math.fround(s * lv[q[j]]) })
    o = writeChunk(out, view, o, len, s, sel, q, p)
  }
  return out
}

/** Below this k a chunk's top-k is selected in one pass (selectTopK), else by a sort. */
const SELECT_PASS_MAX_K = 32

/**
 * The kc largest of abs[0, len) (ties: the lower index), as ascending indices in kept[0, kc).
 * Small k — the codecs runs use — in one pass keeping the best kc so far ordered by (|x| desc,
 * index asc): a later element enters only when strictly larger than the last kept (an equal one
 * loses the tie), which evicts the last. Large k: the kc-th largest by a native sort of a copy,
 * then everything above it, then ties at it in index order. Same selection either way (tested);
 * the pass spares a 256-element sort per chunk, most of a sync's encode time.
 */
function selectTopK (abs: Float32Array, len: number, kc: number, kept: Int32Array): Int32Array {
  if (kc <= SELECT_PASS_MAX_K) {
    let c = 0
    for (let i = 0; i < len; i++) {
      const v = abs[i]
      if (c === kc && !(v > abs[kept[c - 1]])) continue
      let j = c === kc ? c - 1 : c++
      while (j > 0 && v > abs[kept[j - 1]]) { kept[j] = kept[j - 1]; j-- }
      kept[j] = i
    }
    return kept.subarray(0, kc).sort()
  }
  const t = abs.slice(0, len).sort()[len - kc]
  let c = 0
  for (let i = 0; i < len; i++) if (abs[i] > t) kept[c++] = i
  for (let i = 0; i < len && c < kc; i++) if (abs[i] === t) kept[c++] = i
  return kept.subarray(0, kc).sort()
}

/**
 * Wire bytes from per-element codes (q + 1 kept, 0 dropped) and per-chunk scales, as the GPU
 * kernel leaves them (gpu/cpu/topk-ef.ts): the layout above, signed grid. Throws TrainArgumentError
 * when a chunk does not keep exactly kc elements or a code is off the grid (a kernel bug must not
 * reach the wire).
 */
export function packTopK (codes: Uint32Array, scales: Float32Array, p: TopKParams): Uint8Array {
  checkParams(p)
  if (p.zero) throw new TrainArgumentError('packTopK: contributions use the signed grid (zero: false)')
  const n = codes.length
  const chunks = Math.ceil(n / p.chunk)
  if (scales.length !== chunks) throw new TrainArgumentError(`packTopK: ${scales.length} scales for ${chunks} chunks of ${p.chunk}`)
  const out = new Uint8Array(topkBytes(n, p))
  const view = new DataView(out.buffer)
  const top = 2 ** p.bits - 1
  let o = 0
  for (let j = 0, lo = 0; lo < n; j++, lo += p.chunk) {
    const len = Math.min(p.chunk, n - lo)
    const kc = Math.min(p.k, len)
    const s = scales[j]
    if (!(s >= 0) || !Number.isFinite(s)) throw new TrainArgumentError(`packTopK: chunk ${j} has scale ${s}`)
    const sel: number[] = []
    const q: number[] = []
    for (let i = 0; i < len; i++) {
      if (codes[lo + i] === 0) continue
      if (codes[lo + i] > top + 1) throw new TrainArgumentError(`packTopK: element ${lo + i} has code ${codes[lo + i] - 1}, past the ${p.bits}-bit grid`)
      if (sel.length === kc) throw new TrainArgumentError(`packTopK: chunk ${j} keeps more than ${kc} elements`)
      sel.push(i)
      q.push(codes[lo + i] - 1)
    }
    if (sel.length !== kc) throw new TrainArgumentError(`packTopK: chunk ${j} keeps ${sel.length} elements, expected ${kc}`)
    o = writeChunk(out, view, o, len, s, sel, q, p)
  }
  return out
}

/**
 * Writes one chunk of `len` elements at byte `o` (the layout above): its scale, the kept indices
 * `sel` (ascending; a list or a bitmap, whichever the params pick) and their codes `q`, packed
 * (`view`: over `out`). Returns the next chunk's offset.
 */
function writeChunk (out: Uint8Array, view: DataView, o: number, len: number, s: number, sel: ArrayLike<number>, q: readonly number[], p: TopKParams): number {
  const width = indexWidth(p.chunk)
  view.setFloat32(o, s, true); o += 4
  if (indexMode(p) === 'list') {
    for (let j = 0; j < sel.length; j++) { if (width === 1) out[o++] = sel[j]; else { view.setUint16(o, sel[j], true); o += 2 } }
  } else {
    for (let j = 0; j < sel.length; j++) out[o + (sel[j] >> 3)] |= 1 << (sel[j] & 7)
    o += Math.ceil(len / 8)
  }
  for (let j = 0; j < q.length; j++) writeBits(out, o, j * p.bits, q[j], p.bits)
  return o + Math.ceil(sel.length * p.bits / 8)
}

function writeBits (out: Uint8Array, base: number, bit: number, v: number, bits: number): void {
  for (let b = 0; b < bits; b++, bit++) if ((v >> b) & 1) out[base + (bit >> 3)] |= 1 << (bit & 7)
}

function readBits (bytes: Uint8Array, base: number, bit: number, bits: number): number {
  let v = 0
  for (let b = 0; b < bits; b++, bit++) v |= ((bytes[base + (bit >> 3)] >> (bit & 7)) & 1) << b
  return v
}

/**
 * Why `bytes` is not a valid encoding of n elements, or undefined: wrong size, a non-finite or
 * negative scale, indices out of order or past the chunk, a bitmap with another count than kc,
 * a code outside the zero grid. Decoding trusts what this accepts (indices address memory).
 */
export function checkTopK (bytes: Uint8Array, n: number, p: TopKParams): string | undefined {
  checkParams(p)
  const want = topkBytes(n, p)
  if (bytes.byteLength !== want) return `wrong size: ${bytes.byteLength} bytes, ${n} elements in top-${p.k} chunks of ${p.chunk} at ${p.bits} bits are ${want}`
  const mode = indexMode(p)
  const width = indexWidth(p.chunk)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const maxCode = p.zero ? 2 ** p.bits - 2 : 2 ** p.bits - 1
  let o = 0
  for (let lo = 0, j = 0; lo < n; lo += p.chunk, j++) {
    const len = Math.min(p.chunk, n - lo)
    const kc = Math.min(p.k, len)
    const s = view.getFloat32(o, true); o += 4
    if (!Number.isFinite(s)) return `chunk ${j} has a non-finite scale (${s})`
    if (s < 0 || Object.is(s, -0)) return `chunk ${j} has a negative scale (${s})`
    if (mode === 'list') {
      let prev = -1
      for (let c = 0; c < kc; c++) {
        const i = width === 1 ? bytes[o] : view.getUint16(o, true)
        o += width
        if (i <= prev || i >= len) return `chunk ${j}: index ${i} after ${prev} is out of order or past the chunk's ${len} elements`
        prev = i
      }
    } else {
      let count = 0
      for (let i = 0; i < len; i++) count += (bytes[o + (i >> 3)] >> (i & 7)) & 1
      const tail = len % 8 === 0 ? 0 : bytes[o + (len >> 3)] >> (len & 7)
      if (tail !== 0) return `chunk ${j}: bitmap marks elements past the chunk's ${len}`
      if (count !== kc) return `chunk ${j}: bitmap marks ${count} elements, expected ${kc}`
      o += Math.ceil(len / 8)
    }
    if (maxCode < 2 ** p.bits - 1) {
      for (let c = 0; c < kc; c++) if (readBits(bytes, o, c * p.bits, p.bits) > maxCode) return `chunk ${j}: value code ${readBits(bytes, o, c * p.bits, p.bits)} is outside the ${maxCode + 1}-level grid`
    }
    o += Math.ceil(kc * p.bits / 8)
  }
  return undefined
}

/**
 * Decodes n elements into out[offset, offset + n) (untouched elements become 0). The bytes must
 * have passed checkTopK (a bad index would write outside its chunk).
 */
export function decodeTopKInto (bytes: Uint8Array, n: number, p: TopKParams, out: Float32Array, offset = 0): void {
  if (out.length < offset + n) throw new TrainArgumentError(`decodeTopKInto: out holds ${out.length} elements, fewer than ${offset} + ${n}`)
  const mode = indexMode(p)
  const width = indexWidth(p.chunk)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const lv = levels(p.bits, p.zero)
  const idx = new Int32Array(p.k)
  out.fill(0, offset, offset + n)
  let o = 0
  for (let lo = 0; lo < n; lo += p.chunk) {
    const len = Math.min(p.chunk, n - lo)
    const kc = Math.min(p.k, len)
    const s = view.getFloat32(o, true); o += 4
    if (mode === 'list') {
      for (let c = 0; c < kc; c++) { idx[c] = width === 1 ? bytes[o] : view.getUint16(o, true); o += width }
    } else {
      let c = 0
      for (let i = 0; i < len; i++) if ((bytes[o + (i >> 3)] >> (i & 7)) & 1) idx[c++] = i
      o += Math.ceil(len / 8)
    }
    for (let c = 0; c < kc; c++) out[offset + lo + idx[c]] = Math.fround(s * lv[readBits(bytes, o, c * p.bits, p.bits)])
    o += Math.ceil(kc * p.bits / 8)
  }
}
