/**
 * DiLoCo under churn through the real workers and all-reduce (web/src/sim/train-churn.ts): after
 * every sync a quarter of the workers vanish and as many join from a fetched state; every sync
 * completes with the live workers, every replica holds the same θ_global, loss falls, and the
 * rounds that waited for a leaver did so through the clock (its READY window), not by luck.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { brownCorpus } from '../../web/src/model/data.ts'
import { SimConfigError } from '../../web/src/sim/errors.ts'
import { TrainChurnSim } from '../../web/src/sim/train-churn.ts'

let corpus: string
beforeAll(async () => { corpus = (await brownCorpus()).slice(0, 200_000) })

describe('training under churn (real DiLoCo workers and all-reduce, seeded network, clock moved only when all wait)', () => {
  it('8 workers, 25 % leave after each sync and as many join: every sync completes, replicas identical, loss falls', async () => {
    const sim = new TrainChurnSim({ workers: 8, churnPerSync: 0.25, seed: 3, corpus })
    try {
      const r = await sim.run(3)
      expect(r.errors).toEqual([])
      expect(r.identicalSyncs).toBe(3)
      expect(r.replicasIdentical).toBe(true)
      expect([r.left, r.joined]).toEqual([4, 4])
      // The leavers' entries linger one round: it completes with the 8 live workers after its READY window.
      expect(r.members).toEqual([8, 8, 8])
      expect(r.timersFired).toBeGreaterThan(0)
      expect(r.evalAfter).toBeLessThan(r.evalBefore - 0.2)
    } finally {
      sim.stop()
    }
  }, 120_000)

  it('bad settings are refused by name', () => {
    expect(() => new TrainChurnSim({ workers: 1, corpus })).toThrow(SimConfigError)
    expect(() => new TrainChurnSim({ workers: 4, churnPerSync: 1, corpus })).toThrow(/churnPerSync 1/)
    expect(() => new TrainChurnSim({ workers: 4, innerSteps: 0, corpus })).toThrow(/innerSteps 0/)
    expect(() => new TrainChurnSim({ workers: 4, corpus: 'short' })).toThrow(/at least 10,000/)
  })
})
