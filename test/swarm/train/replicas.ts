/** Checks shared by the DiLoCo tests that run several workers on one seeded network. */
import { expect } from 'vitest'

/**
 * Every node's sync events agree on the θ_global hash for each sync number they both applied;
 * returns how many pairs were compared (so a test can require that enough syncs happened).
 */
export function expectIdentical (ns: ReadonlyArray<{ id: string, syncs: ReadonlyArray<{ seq: number, hash: string }> }>): number {
  const bySeq = new Map<number, string>()
  let checked = 0
  for (const n of ns) {
    for (const s of n.syncs) {
      const h = bySeq.get(s.seq)
      if (h === undefined) bySeq.set(s.seq, s.hash)
      else { expect(s.hash, `sync ${s.seq} on ${n.id}`).toBe(h); checked++ }
    }
  }
  return checked
}
