/** The run declaration's inner-optimizer fields: defaults for declarations written before them, and their checks. */
import { describe, expect, it } from 'vitest'
import { RunConfigError } from '../../../web/src/swarm/train/errors.ts'
import { defaultRunSpec, parseRunSpec } from '../../../web/src/swarm/train/run-board.ts'

describe('run spec: inner AdamW and its schedule', () => {
  it('a declaration without the newer fields reads as torch AdamW with a constant lr', () => {
    const old: Record<string, unknown> = { ...defaultRunSpec('r1') }
    for (const k of ['decaySteps', 'minInnerLr', 'beta1', 'beta2', 'eps']) delete old[k]
    const s = parseRunSpec(old)
    expect([s.decaySteps, s.minInnerLr, s.beta1, s.beta2, s.eps]).toEqual([0, 0, 0.9, 0.999, 1e-8])
  })

  it('defaults: the cosine floor is a tenth of the inner lr', () => {
    expect(defaultRunSpec('r1', { innerLr: 6e-3 }).minInnerLr).toBeCloseTo(6e-4, 12)
    expect(defaultRunSpec('r1', { innerLr: 6e-3, decaySteps: 100, minInnerLr: 1e-4 }).minInnerLr).toBe(1e-4)
  })

  it.each([
    [{ beta1: 1 }, /beta1 must be in \[0, 1\)/],
    [{ beta2: -0.1 }, /beta2 must be in \[0, 1\)/],
    [{ eps: 0 }, /eps must be in \(0, 0.01\]/],
    [{ decaySteps: 1.5 }, /decaySteps must be a non-negative integer/],
    [{ decaySteps: 5, warmupSteps: 5 }, /decaySteps \(5\) must exceed warmupSteps \(5\)/],
    [{ decaySteps: 50, innerLr: 1e-3, minInnerLr: 2e-3 }, /minInnerLr \(0.002\) exceeds innerLr \(0.001\)/]
  ])('refuses %j', (o, why) => {
    expect(() => defaultRunSpec('r1', o)).toThrow(why)
  })
})

describe('run spec: the pseudo-gradient codec', () => {
  it('q8 stays the default; top-k is declared with validated parameters', () => {
    expect(defaultRunSpec('r1').compression).toEqual({ kind: 'q8', block: 64 })
    const t = { kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 } as const
    expect(parseRunSpec({ ...defaultRunSpec('r1'), compression: t }).compression).toEqual(t)
    // SparseLoCo: the error feedback decays (efDecay), the outer step has no momentum.
    const s = { ...t, chunk: 64, k: 1, efDecay: 0.95 }
    expect(parseRunSpec({ ...defaultRunSpec('r1'), compression: s, outer: { lr: 1, momentum: 0 } }).compression).toEqual(s)
    // the top-k mean over the members that sent each element
    const senders = { ...s, mean: 'senders' }
    expect(parseRunSpec({ ...defaultRunSpec('r1'), compression: senders }).compression).toEqual(senders)
  })

  it.each([
    [{ kind: 'topk', chunk: 100, k: 4, bits: 2, resultBits: 4 }, /chunk must be a multiple of 8/],
    [{ kind: 'topk', chunk: 256, k: 0, bits: 2, resultBits: 4 }, /k must be an integer in \[1, chunk = 256\]/],
    [{ kind: 'topk', chunk: 256, k: 4, bits: 1, resultBits: 4 }, /bits must be an integer in \[2, 8\]/],
    [{ kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 9 }, /resultBits must be 0 \(owners all-gather the parts\) or an integer in \[2, 8\]/],
    [{ kind: 'topk', chunk: 256, k: 4, bits: 2 }, /run field resultBits must be an integer/],
    [{ kind: 'topk', chunk: 64, k: 1, bits: 2, resultBits: 4, efDecay: 0 }, /efDecay must be in \(0, 1\]/],
    [{ kind: 'topk', chunk: 64, k: 1, bits: 2, resultBits: 4, efDecay: 1.5 }, /efDecay must be in \(0, 1\]/],
    [{ kind: 'topk', chunk: 64, k: 1, bits: 2, resultBits: 4, efDecay: '0.9' }, /efDecay/],
    [{ kind: 'topk', chunk: 64, k: 1, bits: 2, resultBits: 4, mean: 'median' }, /mean must be "members" or "senders"/],
    [{ kind: 'zstd' }, /compression must be/]
  ])('refuses %j', (compression, why) => {
    expect(() => parseRunSpec({ ...defaultRunSpec('r1'), compression })).toThrow(why)
  })
})

describe('run spec: the outer lr schedule', () => {
  it('absent in older declarations (a constant outer lr); declared as decaySyncs with finalLr', () => {
    expect(defaultRunSpec('r1').outer).toEqual({ lr: 0.7, momentum: 0.9 })
    const outer = { lr: 2, momentum: 0, decaySyncs: 19, finalLr: 1 }
    expect(parseRunSpec({ ...defaultRunSpec('r1'), outer }).outer).toEqual(outer)
  })

  it.each([
    [{ lr: 2, momentum: 0, decaySyncs: 19 }, /run field finalLr must be in \(0, 10\]/],
    [{ lr: 2, momentum: 0, finalLr: 1 }, /run field decaySyncs must be an integer in \[1, 1000000\]/],
    [{ lr: 2, momentum: 0, decaySyncs: 0, finalLr: 1 }, /decaySyncs must be an integer in \[1, 1000000\]/],
    [{ lr: 2, momentum: 0, decaySyncs: 2.5, finalLr: 1 }, /decaySyncs must be an integer/],
    [{ lr: 2, momentum: 0, decaySyncs: 10, finalLr: 11 }, /finalLr must be in \(0, 10\]/],
    [{ lr: 2, momentum: 0, decaySyncs: 10, finalLr: '1' }, /finalLr must be in/]
  ])('refuses %j', (outer, why) => {
    expect(() => parseRunSpec({ ...defaultRunSpec('r1'), outer })).toThrow(why)
  })
})

describe('run spec: codec and aggregation together', () => {
  it('robust aggregation needs q8 parts', () => {
    expect(() => parseRunSpec({ ...defaultRunSpec('r1'), compression: { kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4 }, aggregation: { kind: 'trimmed-mean', trim: 1 } })).toThrow(/apply to q8 compression only/)
  })
})

describe('run spec: the one-step-delayed outer update', () => {
  it('is off in declarations written before it, and excludes overlapSteps / mixAlpha', () => {
    const old: Record<string, unknown> = { ...defaultRunSpec('r1') }
    delete old.delayOuter
    expect(parseRunSpec(old).delayOuter).toBe(false)
    expect(parseRunSpec({ ...defaultRunSpec('r1', { innerSteps: 8 }), delayOuter: true }).delayOuter).toBe(true)
    expect(() => parseRunSpec({ ...defaultRunSpec('r1', { innerSteps: 8 }), delayOuter: true, overlapSteps: 2 })).toThrow(/delayOuter replaces/)
    expect(() => parseRunSpec({ ...defaultRunSpec('r1'), delayOuter: 'yes' })).toThrow(/delayOuter must be true or false/)
  })

  it('takes a number of syncs d in [1, 4] (worker.ts delayOuter: d); refuses others naming the field and the range', () => {
    for (const d of [1, 2, 4]) {
      const spec = parseRunSpec({ ...defaultRunSpec('r1', { innerSteps: 8 }), delayOuter: d })
      expect(spec.delayOuter).toBe(d)
      expect(parseRunSpec(JSON.parse(JSON.stringify(spec))).delayOuter).toBe(d) // what a peer reads back from the CRDT
    }
    for (const bad of [0, 5, 1.5, -1, 'x', '2']) {
      let err: unknown
      try { parseRunSpec({ ...defaultRunSpec('r1'), delayOuter: bad }) } catch (e) { err = e }
      expect(err, String(bad)).toBeInstanceOf(RunConfigError)
      expect((err as Error).message).toBe(`run field delayOuter must be true or false, or an integer number of syncs in [1, 4], got ${JSON.stringify(bad)}`)
    }
    expect(() => parseRunSpec({ ...defaultRunSpec('r1', { innerSteps: 8 }), delayOuter: 2, mixAlpha: 0.5 })).toThrow(/delayOuter replaces/)
  })
})
