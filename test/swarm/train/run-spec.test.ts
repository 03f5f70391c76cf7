/** The run declaration's inner-optimizer fields: defaults for declarations written before them, and their checks. */
import { describe, expect, it } from 'vitest'
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
