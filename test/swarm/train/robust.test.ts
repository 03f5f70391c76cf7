/**
 * The pure pieces of robust aggregation: the aggregators' exact values (robust.ts), their
 * validation, the owner's reduction with an aggregation and exclusions (reduce.ts), and the
 * contribution check's rules on a stub loss probe (contribution-check.ts), the run declaration's
 * fields and the board's record of refused peers (exclusions.ts).
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { q8Bytes, quantizeQ8 } from '../../../web/src/gpu/cpu/quant.ts'
import { aggregate, aggregationProblem, parseAggregation, type Aggregation } from '../../../web/src/swarm/train/robust.ts'
import { reducePart } from '../../../web/src/swarm/train/reduce.ts'
import { GauntletCheck, type LossProbe } from '../../../web/src/swarm/train/contribution-check.ts'
import { dequantizeQ8Into, quantizeQ8Fast } from '../../../web/src/swarm/train/q8fast.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { KEEP_SYNC_RECORDS, defaultRunSpec, parseRunSpec } from '../../../web/src/swarm/train/run-board.ts'
import { recordRefused, refusedCounts } from '../../../web/src/swarm/train/exclusions.ts'

const f32 = (...v: number[]): Float32Array => Float32Array.from(v)

describe('aggregators (exact values)', () => {
  it('trimmed mean drops the extremes per coordinate and averages the rest', () => {
    const xs = [f32(1, 5, -3), f32(100, 5, 0), f32(2, 5, 7), f32(3, 5, -100)]
    // coordinate 0: [1, 2, 3, 100] → (2 + 3) / 2; 1: ties → 5; 2: [-100, -3, 0, 7] → (-3 + 0) / 2
    expect(Array.from(aggregate(xs, 3, { kind: 'trimmed-mean', trim: 1 }))).toEqual([2.5, 5, -1.5])
  })

  it('trimmed mean with too few members shrinks to the median; one member is itself', () => {
    expect(Array.from(aggregate([f32(1), f32(9), f32(4)], 1, { kind: 'trimmed-mean', trim: 3 }))).toEqual([4])
    expect(Array.from(aggregate([f32(1), f32(9)], 1, { kind: 'trimmed-mean', trim: 1 }))).toEqual([5])
    expect(Array.from(aggregate([f32(-7.25)], 1, { kind: 'trimmed-mean', trim: 1 }))).toEqual([-7.25])
    expect(Array.from(aggregate([], 2, { kind: 'trimmed-mean', trim: 1 }))).toEqual([0, 0])
  })

  it('the mean sums in member order in f64 and rounds once', () => {
    const xs = [f32(1e8), f32(1), f32(-1e8)]
    expect(aggregate(xs, 1, { kind: 'mean' })[0]).toBe(Math.fround((1e8 + 1 - 1e8) / 3))
  })

  it('centered clip: one iteration from the coordinate-wise median, τ from the lower-median distance', () => {
    const xs = [f32(1, 0), f32(0, 1), f32(1, 1), f32(100, 100)]
    // median (1, 1); distances 1, 1, 0, 99√2 → lower median 1, τ = 2; the outlier is clipped to length 2
    const d = Math.sqrt(99 * 99 + 99 * 99)
    const x0 = Math.fround(1 + (0 + -1 + 0 + 99 * (2 / d)) / 4)
    const x1 = Math.fround(1 + (-1 + 0 + 0 + 99 * (2 / d)) / 4)
    expect(Array.from(aggregate(xs, 2, { kind: 'centered-clip', tauFactor: 2, iters: 1 }))).toEqual([x0, x1])
    expect(x0).toBeCloseTo(1 + (Math.SQRT2 - 1) / 4, 6)
  })

  it('centered clip stays near the honest points however far the outlier is', () => {
    const honest = [f32(1, 1), f32(1.2, 0.9), f32(0.9, 1.1), f32(1.1, 1)]
    for (const far of [10, 1e3, 1e6]) {
      const v = aggregate([...honest, f32(far, -far)], 2, { kind: 'centered-clip', tauFactor: 1, iters: 5 })
      expect(Math.hypot(v[0] - 1.05, v[1] - 1)).toBeLessThan(0.2)
    }
  })

  it('results do not depend on the order contributions arrive in, only on member order', () => {
    const rng = new Rng(3)
    const xs = Array.from({ length: 5 }, () => Float32Array.from({ length: 97 }, () => rng.next() * 2 - 1))
    for (const a of [{ kind: 'trimmed-mean', trim: 1 }, { kind: 'centered-clip', tauFactor: 1, iters: 3 }] as Aggregation[]) {
      const once = aggregate(xs, 97, a)
      const again = aggregate(xs.map(x => x.slice()), 97, a)
      expect(Buffer.from(again.buffer).equals(Buffer.from(once.buffer))).toBe(true)
    }
  })

  it('declarations are validated', () => {
    expect(aggregationProblem({ kind: 'mean' })).toBeUndefined()
    expect(aggregationProblem({ kind: 'trimmed-mean', trim: 2 })).toBeUndefined()
    expect(aggregationProblem({ kind: 'centered-clip', tauFactor: 1, iters: 3 })).toBeUndefined()
    expect(aggregationProblem({ kind: 'trimmed-mean', trim: 0 })).toMatch(/trim/)
    expect(aggregationProblem({ kind: 'trimmed-mean', trim: 1, extra: 1 })).toMatch(/exactly/)
    expect(aggregationProblem({ kind: 'centered-clip', tauFactor: 0, iters: 3 })).toMatch(/tauFactor/)
    expect(aggregationProblem({ kind: 'centered-clip', tauFactor: 1, iters: 1000 })).toMatch(/iters/)
    expect(aggregationProblem({ kind: 'median' })).toMatch(/kind/)
    expect(aggregationProblem(null)).toMatch(/object/)
    expect(() => parseAggregation({ kind: 'x' })).toThrow(/aggregation kind/)
  })
})

describe('the owner reduction with an aggregation', () => {
  it('requantizes the aggregate of the dequantized contributions; excluded ones are rejected with their reason', () => {
    const rng = new Rng(5)
    const n = 130 // odd: a partial last block
    const xs = Array.from({ length: 4 }, () => Float32Array.from({ length: n }, () => rng.next() - 0.5))
    const qs = xs.map(x => quantizeQ8Fast(x, n, 64))
    const a: Aggregation = { kind: 'trimmed-mean', trim: 1 }
    const r = reducePart([
      { peer: 'a', q: qs[0] }, { peer: 'b', q: qs[1] }, { peer: 'c', q: qs[2], excluded: 'sign flip' }, { peer: 'd', q: qs[3] }, { peer: 'e', q: qs[2] }
    ], n, 64, undefined, a)
    expect(r.report.rejected).toEqual([{ peer: 'c', reason: 'excluded: sign flip' }])
    expect(r.report.accepted).toEqual(['a', 'b', 'd', 'e'])
    const deq = [qs[0], qs[1], qs[3], qs[2]].map(q => { const x = new Float32Array(n); dequantizeQ8Into(q, n, 64, x); return x })
    const want = aggregate(deq, n, a)
    expect(Array.from(r.mean)).toEqual(Array.from(want))
    expect(Buffer.from(r.q).equals(Buffer.from(quantizeQ8(want, 64)))).toBe(true)
    expect(r.q.byteLength).toBe(q8Bytes(n, 64))
  })
})

/** A probe whose losses are a fixed function of each contribution's first element (gain = x[0]). */
const stubProbe: LossProbe = {
  losses: async (_round, _n, _start, deltas) => ({ before: 1, after: deltas.map(d => 1 - d[0]) })
}

describe('the contribution check (stub loss probe)', () => {
  const part = (round: number, deltas: Float32Array[]) => ({ round, n: 1000, start: 0, end: deltas[0].length, peers: deltas.map((_, i) => `p${i}`), deltas })

  it('excludes a contribution that hurts or does next to nothing; honest gains within 10× of the median pass', async () => {
    const c = new GauntletCheck(stubProbe)
    const out = await c.check(part(0, [f32(0.02, 1), f32(0.01, 2), f32(-0.05, 3), f32(0.011, 4), f32(0.0009, 5)]))
    expect([...out.keys()].sort()).toEqual(['p2', 'p4'])
    expect(out.get('p2')).toMatch(/loss gain/)
    expect(c.counts).toEqual({ checked: 5, zero: 0, replay: 0, loss: 2 })
  })

  it('a window with no typical gain excludes nobody by loss', async () => {
    const c = new GauntletCheck(stubProbe)
    const out = await c.check(part(0, [f32(0, 1), f32(-0.01, 2), f32(0.3, 3), f32(-0.5, 4)]))
    expect(out.size).toBe(0)
  })

  it('a zero update is free-riding unless every member sent zero', async () => {
    const c = new GauntletCheck(stubProbe)
    const out = await c.check(part(0, [f32(0.1, 1), f32(0, 0), f32(0.1, 2), f32(0.1, 1.5)]))
    expect(out.get('p1')).toMatch(/zero update/)
    const none = await new GauntletCheck(stubProbe).check(part(0, [f32(0, 0), f32(0, 0), f32(0, 0)]))
    expect(none.size).toBe(0)
  })

  it('a replay of an earlier round (own or another peer’s) is excluded; a close but new update is not', async () => {
    const c = new GauntletCheck(stubProbe)
    await c.check(part(3, [f32(0.1, 1, 2), f32(0.1, 2, 1), f32(0.1, 3, 3)]))
    const out = await c.check(part(4, [f32(0.1, 1, 2), f32(0.1, 2.3, 1), f32(0.1, 3, 3.3), f32(0.2, 4, 1)]))
    expect(out.get('p0')).toMatch(/replays round 3's update of p0/)
    expect(out.has('p1')).toBe(false) // cosine 0.9986 with its round-3 update: close, but new
    expect(out.has('p2')).toBe(false)
    // history is kept keepRounds (2) rounds: round 7 no longer compares with round 3
    const late = await c.check(part(7, [f32(0.1, 1, 2), f32(0.1, 9, 1), f32(0.1, 3, 9)]))
    expect(late.size).toBe(0)
  })

  it('a part that moves the same way for everyone every round (weight decay alone) is no replay', async () => {
    const c = new GauntletCheck(stubProbe)
    await c.check(part(1, [f32(0.1, 1, 1), f32(0.1, 1, 1), f32(0.1, 1, 1)]))
    const out = await c.check(part(2, [f32(0.1, 1, 1), f32(0.1, 1, 1), f32(0.1, 1, 1)]))
    expect(out.size).toBe(0)
  })

  it('fewer than 3 candidates: the loss rule does not apply', async () => {
    const out = await new GauntletCheck(stubProbe).check(part(0, [f32(0.1, 1), f32(-1, 1)]))
    expect(out.size).toBe(0)
  })

  it('refuses bad options and mismatched inputs', async () => {
    expect(() => new GauntletCheck(stubProbe, { replayCosine: 0 })).toThrow(/replayCosine/)
    expect(() => new GauntletCheck(stubProbe, { minGainFraction: 1 })).toThrow(/minGainFraction/)
    await expect(new GauntletCheck(stubProbe).check({ round: 0, n: 10, start: 0, end: 3, peers: ['a'], deltas: [f32(1, 2)] })).rejects.toThrow(/2 elements, the part 3/)
  })
})

describe('the run declaration and the board record', () => {
  it('a declaration selects the aggregation and the check; old declarations mean the mean, no check; bad ones are refused', () => {
    const d = defaultRunSpec('r1')
    expect(d.aggregation).toEqual({ kind: 'mean' })
    expect(d.checkWindows).toBe(0)
    const { aggregation: _a, checkWindows: _c, ...old } = d
    expect(parseRunSpec(old).aggregation).toEqual({ kind: 'mean' })
    const r = defaultRunSpec('r2', { aggregation: { kind: 'centered-clip', tauFactor: 2, iters: 3 }, checkWindows: 2 })
    expect(parseRunSpec(JSON.parse(JSON.stringify(r)))).toEqual(r)
    expect(() => parseRunSpec({ ...d, aggregation: { kind: 'trimmed-mean', trim: -1 } })).toThrow(/aggregation trimmed-mean's trim/)
    expect(() => parseRunSpec({ ...d, checkWindows: 17 })).toThrow(/checkWindows/)
    expect(() => parseRunSpec({ ...d, checkWindows: 1, seqLen: 32 })).toThrow(/needs ≥ 64/)
    expect(parseRunSpec({ ...d, checkWindows: 2, seqLen: 32 }).checkWindows).toBe(2)
    expect(() => parseRunSpec({ ...d, compression: { kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 }, aggregation: { kind: 'trimmed-mean', trim: 1 } })).toThrow(/q8 compression only/)
  })

  it('refused peers are recorded per sync, counted per peer, and pruned with the sync records', () => {
    const doc = new Y.Doc()
    const map = doc.getMap<unknown>('train')
    recordRefused(map, 'r1', 0, ['w-c'])
    recordRefused(map, 'r1', 1, ['w-c', 'w-d', 'w-c'])
    recordRefused(map, 'r1', 2, [])
    map.set('refused/r1/x', { peers: ['w-z'] }) // malformed key: ignored
    map.set('refused/r1/9', { peers: 'w-z' }) // malformed value: ignored
    expect(Object.fromEntries(refusedCounts(map, 'r1'))).toEqual({ 'w-c': 2, 'w-d': 1 })
    recordRefused(map, 'r1', KEEP_SYNC_RECORDS, ['w-e'])
    expect(map.has('refused/r1/0')).toBe(false)
    expect(refusedCounts(map, 'r2').size).toBe(0)
  })
})
