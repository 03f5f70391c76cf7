/**
 * A peer's own check of an accusation it read from the swarm doc (evidence.ts), before it stops
 * routing to the accused. The accuser's signature was checked by net/crdt; here, in order:
 *
 *   1. the claim: two different digests and a deviation beyond the tolerance (else `refuted`);
 *   2. the exhibit: the inputs hash to `inputsHash`, the two rows to their digests, and the rows
 *      really differ by the claimed deviation (else `forged`; no exhibit: `unverifiable`);
 *   3. a recomputation of row `position` on the exhibit's inputs by servers other than both
 *      parties and anyone else accused (a liar must not be the judge of an honest server's case),
 *      or by this peer's own blocks (Recompute.honest): the "honest" row must match it
 *      and the accused's must not (else `refuted`: the accuser lied); nobody to ask: `unverifiable`;
 *   4. the accused's own answer to the same inputs now (Recompute.accused): it must disagree with
 *      the recomputation too (else `unreproduced`: the accuser may have made up the accused's row,
 *      since outputs are not signed by their server; a server that lies rarely escapes here, and
 *      is left to each client's own verification).
 *
 * Only `confirmed` gets the accused avoided; everything else is ignored and counted. A hostile
 * peer therefore cannot get an honest server avoided by writing accusations: step 4 asks that
 * server itself. The cost of a check is one recomputation and one replay of `position + 1` rows
 * on the span's blocks, so verdicts are cached per accusation and at most `maxChecks` are run
 * per checker lifetime (a flood of accusations cannot turn readers into a compute amplifier).
 */
import { digestF32, rowDeviation, VERIFY_TOLERANCE } from './client/verify-compare.ts'
import type { Accusation } from './evidence.ts'
import { exhibitOf } from './evidence.ts'

/** The rows behind an accusation's digests: inputs (position + 1, C), the accused's row and the honest one (C each). */
export interface Exhibit { inputs: Float32Array, accused: Float32Array, honest: Float32Array }

export type Verdict = 'confirmed' | 'forged' | 'refuted' | 'unreproduced' | 'unverifiable'

/** Ways to recompute an accused span's row `position` on the exhibit's inputs; undefined when nobody can. */
export interface Recompute {
  /** By servers not in `avoid` (the accused, the accuser and every other accused peer), or by this peer's own blocks. */
  honest: (a: Accusation, inputs: Float32Array, avoid: ReadonlySet<string>) => Promise<Float32Array | undefined>
  /** By the accused itself, asked now. */
  accused: (a: Accusation, inputs: Float32Array) => Promise<Float32Array | undefined>
}

export interface CheckOptions {
  /** Hidden size of the model: the exhibit's rows are C wide. */
  hiddenSize: number
  /** @default VERIFY_TOLERANCE */
  tolerance?: number
  /** Recomputations this checker may run; later accusations are `unverifiable`. @default 16 */
  maxChecks?: number
}

/** Why an accusation got its verdict, for logs. */
export interface CheckResult { verdict: Verdict, why: string }

export class EvidenceChecker {
  private readonly cache = new Map<string, CheckResult>()
  private readonly tolerance: number
  private checksLeft: number

  constructor (private readonly recompute: Recompute | undefined, private readonly opts: CheckOptions) {
    this.tolerance = opts.tolerance ?? VERIFY_TOLERANCE
    this.checksLeft = opts.maxChecks ?? 16
  }

  /** The verdict on `a`, written by `accuser` (cached per accuser and accusation); `suspects`: every peer accused in the doc. */
  async check (accuser: string, a: Accusation, suspects: ReadonlySet<string> = new Set()): Promise<CheckResult> {
    const key = `${accuser}\n${a.accused}\n${a.inputsHash}\n${a.accusedDigest}\n${a.honestDigest}\n${a.blocks.join(',')}\n${a.position}`
    const known = this.cache.get(key)
    if (known !== undefined) return known
    const r = await this.judge(accuser, a, suspects)
    // Out of budget or nobody to ask is not a property of the accusation: asked again next scan.
    if (r.verdict !== 'unverifiable') this.cache.set(key, r)
    return r
  }

  private async judge (accuser: string, a: Accusation, suspects: ReadonlySet<string>): Promise<CheckResult> {
    const tol = this.tolerance
    const C = this.opts.hiddenSize
    if (a.accusedDigest === a.honestDigest || !(a.deviation > tol)) return { verdict: 'refuted', why: 'the accusation claims no disagreement beyond the tolerance' }
    if (a.exhibit === undefined) return { verdict: 'unverifiable', why: 'no exhibit (the rows did not fit the entry)' }
    const x = exhibitOf(a)
    if (x === undefined) return { verdict: 'forged', why: 'the exhibit does not decode to f32 rows' }
    if (x.inputs.length !== (a.position + 1) * C || x.accused.length !== C || x.honest.length !== C) return { verdict: 'forged', why: `the exhibit's shapes do not match position ${a.position} and hidden size ${C}` }
    if (await digestF32(x.inputs) !== a.inputsHash) return { verdict: 'forged', why: 'the exhibit\'s inputs do not hash to inputsHash' }
    if (await digestF32(x.accused) !== a.accusedDigest || await digestF32(x.honest) !== a.honestDigest) return { verdict: 'forged', why: 'the exhibit\'s rows do not hash to the digests' }
    const dev = rowDeviation(x.accused, x.honest)
    if (!(dev > tol)) return { verdict: 'forged', why: `the exhibit's rows agree (deviation ${dev.toExponential(2)})` }
    if (this.recompute === undefined || this.checksLeft <= 0) return { verdict: 'unverifiable', why: 'no recomputation available' }
    this.checksLeft--
    const y = await this.recompute.honest(a, x.inputs, new Set([...suspects, a.accused, accuser]))
    if (y === undefined) return { verdict: 'unverifiable', why: 'no unaccused server other than the two parties holds the blocks' }
    const devHonest = rowDeviation(x.honest, y)
    if (devHonest > tol) return { verdict: 'refuted', why: `the accuser's honest row is not what the blocks compute (deviation ${devHonest.toExponential(2)})` }
    const devAccused = rowDeviation(x.accused, y)
    if (!(devAccused > tol)) return { verdict: 'refuted', why: `the accused's row is what the blocks compute (deviation ${devAccused.toExponential(2)})` }
    const z = await this.recompute.accused(a, x.inputs)
    if (z === undefined) return { verdict: 'unverifiable', why: 'the accused could not be asked' }
    const devNow = rowDeviation(z, y)
    if (!(devNow > tol)) return { verdict: 'unreproduced', why: `the accused answers these inputs right (deviation ${devNow.toExponential(2)})` }
    return { verdict: 'confirmed', why: `recomputed: the accused deviates by ${devNow.toExponential(2)}` }
  }
}
