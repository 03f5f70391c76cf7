/**
 * Which experts the router picks together (same token, same layer) and in sequence (layer l's
 * expert → layer l+1's, ExFlow's inter-layer affinity). Counted from the routing decisions as
 * they happen; placement uses them to keep often-co-selected experts on one peer (fewer calls).
 */
import { SwarmArgumentError } from '../errors.ts'

export class CoSelectionStats {
  /** Per layer: (E, E) counts of tokens routed to both i and j (symmetric; diagonal = picks of i). */
  readonly pairs: Float64Array[]
  /** Per layer l < L−1: (E, E) counts of tokens routed to i at layer l and j at layer l+1. */
  readonly next: Float64Array[]
  tokens = 0

  /**
   * @param numLayers MoE layers recorded (a block server's span: its own layers only)
   * @param firstLayer model index of the first recorded layer, so summaries name model layers
   */
  constructor (readonly numLayers: number, readonly numExperts: number, readonly firstLayer = 0) {
    this.pairs = Array.from({ length: numLayers }, () => new Float64Array(numExperts * numExperts))
    this.next = Array.from({ length: Math.max(0, numLayers - 1) }, () => new Float64Array(numExperts * numExperts))
  }

  /** Record one forward: choices[l] = (T, k) expert ids chosen at layer l for the same T tokens. */
  record (choices: ReadonlyArray<ArrayLike<number>>, k: number): void {
    const E = this.numExperts
    if (choices.length !== this.numLayers) throw new SwarmArgumentError(`expected choices for ${this.numLayers} layers, got ${choices.length}`)
    const T = choices[0].length / k
    for (let l = 0; l < this.numLayers; l++) {
      const c = choices[l]
      if (c.length !== T * k) throw new SwarmArgumentError(`layer ${l}: expected (T=${T}, k=${k}) choices, got ${c.length}`)
      for (let t = 0; t < T; t++) {
        for (let a = 0; a < k; a++) {
          for (let b = 0; b < k; b++) this.pairs[l][c[t * k + a] * E + c[t * k + b]]++
          if (l + 1 < this.numLayers) {
            const n = choices[l + 1]
            for (let b = 0; b < k; b++) this.next[l][c[t * k + a] * E + n[t * k + b]]++
          }
        }
      }
    }
    this.tokens += T
  }

  /** Share of co-selections of layer `l` that fall within the same group of a placement. */
  withinGroupShare (l: number, groups: ReadonlyArray<readonly number[]>): number {
    const E = this.numExperts
    const groupOf = new Int32Array(E).fill(-1)
    groups.forEach((g, i) => { for (const e of g) groupOf[e] = i })
    let within = 0
    let total = 0
    for (let i = 0; i < E; i++) {
      for (let j = 0; j < E; j++) {
        if (i === j) continue
        const n = this.pairs[l][i * E + j]
        total += n
        if (groupOf[i] >= 0 && groupOf[i] === groupOf[j]) within += n
      }
    }
    return total === 0 ? 0 : within / total
  }

  toJSON (): { tokens: number, pairs: number[][][], next: number[][][] } {
    const E = this.numExperts
    const mat = (m: Float64Array): number[][] => Array.from({ length: E }, (_, i) => Array.from(m.subarray(i * E, (i + 1) * E)))
    return { tokens: this.tokens, pairs: this.pairs.map(mat), next: this.next.map(mat) }
  }
}

/**
 * Split a layer's E experts into `groups` groups of near-equal size, greedily keeping the most
 * co-selected pairs together: seed each group with an unplaced expert, then repeatedly add the
 * expert with the most co-selections with the group's members.
 */
export function placeExperts (stats: CoSelectionStats, layer: number, groups: number): number[][] {
  const E = stats.numExperts
  if (!Number.isInteger(groups) || groups < 1 || groups > E) throw new SwarmArgumentError(`groups must be in [1, ${E}], got ${groups}`)
  const m = stats.pairs[layer]
  const left = new Set(Array.from({ length: E }, (_, e) => e))
  const out: number[][] = []
  for (let g = 0; g < groups; g++) {
    const size = Math.floor(E / groups) + (g < E % groups ? 1 : 0)
    // Seed: the most-picked expert left (diagonal), ties by id.
    let seed = -1
    for (const e of left) if (seed < 0 || m[e * E + e] > m[seed * E + seed]) seed = e
    const group = [seed]
    left.delete(seed)
    while (group.length < size) {
      let best = -1
      let bestScore = -1
      for (const e of left) {
        const score = group.reduce((a, x) => a + m[e * E + x], 0)
        if (score > bestScore) { best = e; bestScore = score }
      }
      group.push(best)
      left.delete(best)
    }
    out.push(group.sort((a, b) => a - b))
  }
  return out
}
