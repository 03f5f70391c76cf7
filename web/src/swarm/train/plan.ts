/**
 * Which member owns which part of the vector in one attempt. The vector of n elements is cut into
 * one chunk per member, aligned to q8 blocks (so a part's q8 bytes are a plain slice of the whole
 * vector's q8 bytes), and each chunk into parts of ≤ partElements (the pipelining unit).
 *
 * Parts are numbered in one global send order, interleaving owners — (part 0 of every owner),
 * (part 1 of every owner), … — so all owners work at once, and every member sends in the same
 * order (which keeps a windowed pipeline deadlock-free: the lowest unfinished part always has
 * every member's contribution on its way).
 */
import { q8Bytes } from '../../gpu/cpu/quant.ts'
import { TrainArgumentError } from './errors.ts'

export interface PartPlan {
  /** Global index (the send order). */
  id: number
  owner: string
  /** Elements [start, end) of the vector. */
  start: number
  end: number
}

/** The parts of an n-element vector over sorted `members`. */
export function planParts (n: number, members: readonly string[], block: number, partElements: number): PartPlan[] {
  if (members.length === 0) throw new TrainArgumentError('planParts: no members')
  if (!Number.isInteger(partElements) || partElements < block || partElements % block !== 0) throw new TrainArgumentError(`planParts: part size ${partElements} must be a positive multiple of the q8 block ${block}`)
  const blocks = Math.ceil(n / block)
  const perOwner = Math.ceil(blocks / members.length) * block // elements per chunk
  const byOwner: Array<Array<{ start: number, end: number }>> = members.map((_, i) => {
    const lo = Math.min(n, i * perOwner)
    const hi = Math.min(n, (i + 1) * perOwner)
    const parts: Array<{ start: number, end: number }> = []
    for (let s = lo; s < hi; s += partElements) parts.push({ start: s, end: Math.min(hi, s + partElements) })
    return parts
  })
  const out: PartPlan[] = []
  const most = Math.max(...byOwner.map(p => p.length))
  for (let k = 0; k < most; k++) {
    for (let i = 0; i < members.length; i++) {
      const p = byOwner[i][k]
      if (p !== undefined) out.push({ id: out.length, owner: members[i], start: p.start, end: p.end })
    }
  }
  return out
}

/** The q8 bytes of elements [start, end) of a q8 vector (start block-aligned): a view, no copy. */
export function sliceQ8 (q: Uint8Array, start: number, end: number, block: number): Uint8Array {
  if (start % block !== 0) throw new TrainArgumentError(`sliceQ8: start ${start} is not a multiple of the block ${block}`)
  const from = (start / block) * (4 + block)
  return q.subarray(from, from + q8Bytes(end - start, block))
}
