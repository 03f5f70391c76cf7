/**
 * Pseudo-gradient codecs of the all-reduce, chosen per run (RunSpec.compression): what a member
 * sends (its Δ, encoded), how a part's owner reduces the members' parts into the part's mean, and
 * what the owner sends back (the mean, encoded). Two:
 *
 *   q8    (the baseline) int8 blocks with an f32 scale, 1.06 bytes per element both ways
 *         (web/src/gpu/cpu/quant.ts; the owner's fused one-pass reduction, reduce.ts / q8fast.ts).
 *   topk  k largest of every chunk of C, b-bit values (topk.ts). The owner decodes each member's
 *         part, applies the same bad-input rules, sums in the round's member order in f64 and
 *         divides, then encodes the mean on the union of the supports: k·m values per chunk for
 *         m accepted members (capped at C), on the zero grid with `resultBits`. Sending the union
 *         rather than re-sparsifying to k keeps the mean's support exact (the owner has no error
 *         feedback of its own: an owner changes with the membership); it costs about what an
 *         all-gather of the members' parts would (m·k indices and values per chunk) — see
 *         BENCHMARKS.md § Training for the measured bytes. With `mean: 'senders'` each element
 *         of the mean is divided by the number of accepted members that sent it (a nonzero
 *         decoded value), not by all of them: an element only one member's top-k kept moves
 *         θ_global by that member's value, not by 1/m of it (divideInto below).
 *
 * Every member decodes the same RESULT bytes, so replicas stay bit-identical whatever the codec.
 */
import { q8Bytes, quantizeQ8 } from '../../gpu/cpu/quant.ts'
import { DEFAULT_Q8_BLOCK } from './constants.ts'
import { TrainArgumentError } from './errors.ts'
import { sliceQ8 } from './plan.ts'
import { dequantizeQ8Into, normQ8 } from './q8fast.ts'
import { checkContribution, normCap, reducePartInto, type Contribution, type ReduceReport } from './reduce.ts'
import { checkTopK, decodeTopKInto, encodeTopK, sliceTopK, topkBytes, topkParamsProblem, type TopKParams } from './topk.ts'

/** A run's compression as declared (RunSpec.compression). */
export type CompressionSpec =
  | { kind: 'q8', block: number }
  | {
    kind: 'topk', chunk: number, k: number, bits: number, resultBits: number
    /**
     * β of the members' error feedback e ← β·e + Δ (compress.ts): 1 (or absent) is classic error
     * feedback; < 1 is SparseLoCo's error-feedback momentum, declared with outer momentum 0.
     * Local to each member: the bytes on the wire do not depend on it.
     */
    efDecay?: number
    /**
     * What an element of the mean divides by: the accepted members ('members', or absent) or
     * those of them that sent that element ('senders'; divideInto). The bytes on the wire keep
     * their layout; the declaration names the rule for every member, as it does the codec.
     */
    mean?: SparseMean
  }

/** Divisor of the top-k mean per element (CompressionSpec). */
export type SparseMean = 'members' | 'senders'

export interface PartCodec {
  readonly kind: CompressionSpec['kind']
  /** The declaration it was made from (worker.ts picks the GPU kernel for top-k from it). */
  readonly spec: CompressionSpec
  /** Names the codec and its parameters; REDUCE carries it and an owner refuses another. */
  readonly id: string
  /** Parts start at multiples of this (a part's encoding is a slice of the whole vector's). */
  readonly align: number
  /** Encoded size of n elements of a member's contribution. */
  bytes: (n: number) => number
  /** x → bytes and what they decode to (error feedback keeps the difference). Throws on non-finite x. */
  encode: (x: Float32Array) => { bytes: Uint8Array, sent: Float32Array }
  /** Elements [start, end) of an encoded contribution (start a multiple of `align`): a view. */
  slice: (bytes: Uint8Array, start: number, end: number) => Uint8Array
  /** A checked contribution of n elements → out[0, n). */
  decodeInto: (bytes: Uint8Array, n: number, out: Float32Array) => void
  /** L2 norm of what a contribution decodes to (f64 sum). */
  norm: (bytes: Uint8Array, n: number) => number
  /** Why a received contribution of n elements is malformed, or undefined. */
  check: (bytes: Uint8Array, n: number) => string | undefined
  /**
   * The owner's reduction of one part (members in the round's order): the mean's encoding (a view
   * valid until the next call) and who was accepted, refused, clipped. `whole`: the vector's length.
   */
  reduce: (contribs: readonly Contribution[], n: number, whole?: number) => { bytes: Uint8Array, report: ReduceReport }
  /** Size of an owner's RESULT payload for a part of n elements that accepted `accepted` members. */
  resultBytes: (n: number, accepted: number) => number
  /** Why a RESULT payload is malformed, or undefined (its indices would address memory). */
  checkResult: (bytes: Uint8Array, n: number, accepted: number) => string | undefined
  /** A checked RESULT payload → out[offset, offset + n). */
  decodeResultInto: (bytes: Uint8Array, n: number, accepted: number, out: Float32Array, offset: number) => void
}

/** The codec of a declared compression. Throws TrainArgumentError on bad parameters. */
export function codecOf (c: CompressionSpec): PartCodec {
  return c.kind === 'q8' ? q8Codec(c.block) : topkCodec(c)
}

/** The q8 baseline: contributions and results are q8 of the same block. */
export function q8Codec (block = DEFAULT_Q8_BLOCK): PartCodec {
  let scratch = new Uint8Array(0)
  return {
    kind: 'q8',
    spec: { kind: 'q8', block },
    id: `q8/${block}`,
    align: block,
    bytes: n => q8Bytes(n, block),
    encode: (x) => {
      const bytes = quantizeQ8(x, block)
      const sent = new Float32Array(x.length)
      dequantizeQ8Into(bytes, x.length, block, sent)
      return { bytes, sent }
    },
    slice: (bytes, start, end) => sliceQ8(bytes, start, end, block),
    decodeInto: (bytes, n, out) => { dequantizeQ8Into(bytes, n, block, out) },
    norm: (bytes, n) => normQ8(bytes, n, block),
    check: (bytes, n) => checkContribution(bytes, n, block),
    reduce: (contribs, n, whole) => {
      const size = q8Bytes(n, block)
      if (scratch.byteLength < size) scratch = new Uint8Array(size)
      const out = scratch.subarray(0, size)
      return { bytes: out, report: reducePartInto(contribs, n, block, out, undefined, whole) }
    },
    resultBytes: n => q8Bytes(n, block),
    // Size only, as before codecs: the owner quantized the mean, and q8 bytes address no memory.
    checkResult: (bytes, n) => bytes.byteLength === q8Bytes(n, block) ? undefined : `wrong size: ${bytes.byteLength} bytes for q8 of ${n}`,
    decodeResultInto: (bytes, n, _accepted, out, offset) => { dequantizeQ8Into(bytes, n, block, out, offset) }
  }
}

/**
 * Top-k with b-bit values (topk.ts); the owner sends back the mean on the union of the supports
 * in `resultBits`, or with resultBits 0 the accepted members' parts themselves (file comment).
 */
export function topkCodec (c: { chunk: number, k: number, bits: number, resultBits: number, efDecay?: number, mean?: SparseMean }): PartCodec {
  const why = topkParamsProblem(c) ?? (c.resultBits === 0 ? undefined : topkParamsProblem({ ...c, bits: c.resultBits }))
  if (why !== undefined) throw new TrainArgumentError(`top-k codec: ${why}`)
  if (c.mean !== undefined && c.mean !== 'members' && c.mean !== 'senders') throw new TrainArgumentError(`top-k codec: mean must be members or senders, got ${JSON.stringify(c.mean)}`)
  const senders = c.mean === 'senders'
  if (c.resultBits === 0) return topkGatherCodec(c, senders)
  const send: TopKParams = { chunk: c.chunk, k: c.k, bits: c.bits, zero: false }
  const result = (accepted: number): TopKParams => ({ chunk: c.chunk, k: Math.min(c.chunk, Math.max(1, accepted) * c.k), bits: c.resultBits, zero: true })
  const decode = (bytes: Uint8Array, n: number): Float32Array => { const x = new Float32Array(n); decodeTopKInto(bytes, n, send, x); return x }
  return {
    kind: 'topk',
    spec: { kind: 'topk', ...c },
    id: `topk/${c.chunk}/${c.k}/${c.bits}/${c.resultBits}${senders ? '/senders' : ''}`,
    align: c.chunk,
    bytes: n => topkBytes(n, send),
    encode: (x) => {
      const sent = new Float32Array(x.length)
      return { bytes: encodeTopK(x, send, sent), sent }
    },
    slice: (bytes, start, end) => sliceTopK(bytes, start, end, send),
    decodeInto: (bytes, n, out) => { decodeTopKInto(bytes, n, send, out) },
    norm: (bytes, n) => l2(decode(bytes, n)),
    check: (bytes, n) => checkTopK(bytes, n, send),
    reduce: (contribs, n, whole) => reduceSparse(contribs, n, whole, send, result, senders),
    resultBytes: (n, accepted) => topkBytes(n, result(accepted)),
    checkResult: (bytes, n, accepted) => checkTopK(bytes, n, result(accepted)),
    decodeResultInto: (bytes, n, accepted, out, offset) => { decodeTopKInto(bytes, n, result(accepted), out, offset) }
  }
}

/**
 * Top-k whose owners all-gather instead of requantizing: a RESULT holds, for the m accepted
 * members in the round's order, m f32 norm-rule factors (1: not clipped) then their m parts as
 * they were sent. Every member decodes them and sums factor·x in member order in f64, divides by
 * m and rounds once to f32: the same bytes in, the same mean out, everywhere — and no second
 * rounding that no error feedback would carry. Per chunk it sends m scales, m·k indices and
 * m·k `bits`-bit codes (the union mean: one scale, ≤ m·k indices, ≤ m·k `resultBits` codes).
 */
function topkGatherCodec (c: { chunk: number, k: number, bits: number, mean?: SparseMean }, senders: boolean): PartCodec {
  const send: TopKParams = { chunk: c.chunk, k: c.k, bits: c.bits, zero: false }
  const base = topkCodec({ ...c, resultBits: 2 })
  const resultBytes = (n: number, m: number): number => m * (4 + topkBytes(n, send))
  return {
    ...base,
    spec: { kind: 'topk', chunk: c.chunk, k: c.k, bits: c.bits, resultBits: 0, ...(c.mean === undefined ? {} : { mean: c.mean }) },
    id: `topk/${c.chunk}/${c.k}/${c.bits}/gather${senders ? '/senders' : ''}`,
    reduce: (contribs, n, whole) => {
      const { report, factors, parts } = sparseAccept(contribs, n, whole, send)
      const out = new Uint8Array(resultBytes(n, parts.length))
      const view = new DataView(out.buffer)
      factors.forEach((f, i) => { view.setFloat32(4 * i, f, true) })
      let o = 4 * parts.length
      for (const q of parts) { out.set(q, o); o += q.byteLength }
      return { bytes: out, report }
    },
    resultBytes,
    checkResult: (bytes, n, m) => {
      if (bytes.byteLength !== resultBytes(n, m)) return `wrong size: ${bytes.byteLength} bytes, ${m} gathered parts of ${n} elements are ${resultBytes(n, m)}`
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      for (let i = 0; i < m; i++) {
        const f = view.getFloat32(4 * i, true)
        if (!(f > 0 && f <= 1)) return `factor ${i} is ${f}, not in (0, 1]`
      }
      const size = topkBytes(n, send)
      for (let i = 0; i < m; i++) {
        const why = checkTopK(bytes.subarray(4 * m + i * size, 4 * m + (i + 1) * size), n, send)
        if (why !== undefined) return `gathered part ${i}: ${why}`
      }
      return undefined
    },
    decodeResultInto: (bytes, n, m, out, offset) => {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      const size = topkBytes(n, send)
      const acc = new Float64Array(n)
      const count = senders ? new Uint16Array(n) : undefined
      const x = new Float32Array(n)
      for (let i = 0; i < m; i++) {
        const f = view.getFloat32(4 * i, true)
        decodeTopKInto(bytes.subarray(4 * m + i * size, 4 * m + (i + 1) * size), n, send, x)
        for (let j = 0; j < n; j++) if (x[j] !== 0) { acc[j] += f * x[j]; if (count !== undefined) count[j]++ }
      }
      divideInto(acc, m, count, out, offset)
    }
  }
}

function l2 (x: Float32Array): number {
  let ss = 0
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i]
  return Math.sqrt(ss)
}

/**
 * The sparse owner's reduction: the bad-input rules of README.md § Bad input (malformed → refused,
 * norm above the cap → scaled to it), then Σ factor·x over accepted members in member order in
 * f64, divided by their count, rounded once to f32, encoded on the zero grid with m·k per chunk.
 */
function reduceSparse (contribs: readonly Contribution[], n: number, whole: number | undefined, send: TopKParams, result: (m: number) => TopKParams, senders: boolean): { bytes: Uint8Array, report: ReduceReport } {
  const { report, factors, xs } = sparseAccept(contribs, n, whole, send)
  const acc = new Float64Array(n)
  const count = senders ? new Uint16Array(n) : undefined
  xs.forEach((x, c) => {
    const f = factors[c]
    for (let i = 0; i < n; i++) if (x[i] !== 0) { acc[i] += f * x[i]; if (count !== undefined) count[i]++ }
  })
  const mean = new Float32Array(n)
  divideInto(acc, xs.length, count, mean, 0)
  return { bytes: encodeTopK(mean, result(xs.length)), report }
}

/**
 * out[offset + i] = acc[i] / m (the mean over the m accepted members), or with `count` (mean
 * 'senders') acc[i] / count[i], the mean over the members that sent element i: on this model a
 * member's 4 of 256 rarely overlap another's, so dividing by m shrinks most of what is sent m×
 * (BENCHMARKS.md § Training: the outer lr then has to make up for it). 0 where nobody sent.
 */
function divideInto (acc: Float64Array, m: number, count: Uint16Array | undefined, out: Float32Array, offset: number): void {
  for (let i = 0; i < acc.length; i++) {
    const d = count === undefined ? m : count[i]
    out[offset + i] = d > 0 ? acc[i] / d : 0
  }
}

/**
 * The bad-input rules on a part's top-k contributions (members in order): malformed or missing →
 * refused, norm above the cap → a factor below 1. The accepted ones' decoded values, factors and bytes.
 */
function sparseAccept (contribs: readonly Contribution[], n: number, whole: number | undefined, send: TopKParams): { report: ReduceReport, factors: number[], xs: Float32Array[], parts: Uint8Array[] } {
  const report: ReduceReport = { accepted: [], rejected: [], clipped: [] }
  const ok: Array<{ peer: string, q: Uint8Array, x: Float32Array, norm: number, claim: number | undefined }> = []
  for (const c of contribs) {
    if (c.q === undefined) { report.rejected.push({ peer: c.peer, reason: 'no contribution' }); continue }
    if (c.excluded !== undefined) { report.rejected.push({ peer: c.peer, reason: `excluded: ${c.excluded}` }); continue }
    const why = checkTopK(c.q, n, send)
    if (why !== undefined) { report.rejected.push({ peer: c.peer, reason: why }); continue }
    const x = new Float32Array(n)
    decodeTopKInto(c.q, n, send, x)
    ok.push({ peer: c.peer, q: c.q, x, norm: l2(x), claim: c.norm })
  }
  const cap = normCap(ok.map(o => o.norm), ok.map(o => o.claim), n, whole)
  const factors = ok.map((o) => {
    report.accepted.push(o.peer)
    if (!(o.norm > cap)) return 1
    report.clipped.push({ peer: o.peer, norm: o.norm, cap })
    return Math.fround(cap / o.norm) // f32: what the gathered RESULT carries, so both reductions use it
  })
  return { report, factors, xs: ok.map(o => o.x), parts: ok.map(o => o.q) }
}
