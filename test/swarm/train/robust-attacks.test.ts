/**
 * Hostile trainers in a DiLoCo run over the seeded MemoryNetwork (issue #13 item 2): 4 honest
 * workers and one attacker that sign-flips, sends zeros, sends scaled noise or replays its first
 * update. With the trimmed mean and the Gauntlet-style contribution check, the loss still falls,
 * the attacker is excluded (and recorded in the sync events and the check's counters), honest
 * replicas stay bit-identical, and no honest worker is ever excluded — in honest runs either.
 *
 * The attack sits in front of the attacker's AllReducePeer.reduce: it replaces the q8 vector the
 * worker contributes (and its norm claim), so every owner, the attacker's own part included, sees it.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset, brownCorpus, type Window } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { GauntletCheck } from '../../../web/src/swarm/train/contribution-check.ts'
import { ModelLossProbe } from '../../../web/src/swarm/train/loss-probe.ts'
import type { Aggregation } from '../../../web/src/swarm/train/robust.ts'
import { DiLoCoWorker, type SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { normQ8 } from '../../../web/src/swarm/train/q8fast.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'
import { Rng } from '../../../web/src/util/rng.ts'
import { expectIdentical } from './replicas.ts'
import { CLOCKED_TIMING } from './quiet-clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 })
const MODEL_SEED = 7
const BLOCK = 64
/** One part per owner (the tiny model's fifth is < 16 Ki elements): one check per owner and round. */
const TIMING = { ...CLOCKED_TIMING, partElements: 16_384, windowParts: 4 }
const AGG: Aggregation = { kind: 'trimmed-mean', trim: 1 }

type Attack = 'sign-flip' | 'zeros' | 'noise' | 'replay'

let train: TextDataset
let evalWindows: Window[]
beforeAll(async () => {
  const { train: t, validation } = new TextDataset((await brownCorpus()).slice(0, 400_000)).split(0.1)
  train = t
  const it = validation.windows(32, 99)
  evalWindows = Array.from({ length: 4 }, () => it.next().value as Window)
})

interface Node { id: string, ar: AllReducePeer, worker: DiLoCoWorker, check: GauntletCheck, syncs: SyncEvent[] }
let nodes: Node[] = []
afterEach(() => { for (const n of nodes) { n.ar.stop(); n.worker.dispose() } nodes = [] })

/** The attacker's replacement for its q8 contribution of round `round` (`first`: its round-0 bytes). */
function corrupt (attack: Attack, q: Uint8Array, n: number, rng: Rng, first: Uint8Array | undefined): Uint8Array {
  const out = q.slice()
  const i8 = new Int8Array(out.buffer)
  const v = new DataView(out.buffer)
  const nb = Math.ceil(n / BLOCK)
  for (let j = 0; j < nb; j++) {
    const at = j * (4 + BLOCK)
    for (let i = 0; i < BLOCK; i++) {
      const o = at + 4 + i
      if (attack === 'sign-flip') i8[o] = -i8[o]
      else if (attack === 'zeros') i8[o] = 0
      else if (attack === 'noise') i8[o] = rng.int(255) - 127
    }
    if (attack === 'zeros') v.setFloat32(at, 0, true)
    if (attack === 'noise') v.setFloat32(at, 2 * v.getFloat32(at, true), true) // twice the honest scale: noise of ~2× an honest norm
  }
  if (attack === 'replay' && first !== undefined) return first.slice()
  return out
}

async function node (net: MemoryNetwork, ids: string[], id: string, dataSeed: number, clock: ManualClock, attack?: Attack): Promise<Node> {
  const ar = new AllReducePeer(net.endpoint(id), { run: 'r1', directory: { expected: () => ids }, ...TIMING, clock, aggregation: AGG })
  const worker = new DiLoCoWorker(initModel(CONFIG, cpu, MODEL_SEED), train, ar, { innerSteps: 4, seqLen: 32, innerLr: 3e-3, outer: { lr: 0.7, momentum: 0.9 }, dataSeed, evalWindows })
  const check = new GauntletCheck(new ModelLossProbe({ model: initModel(CONFIG, cpu, MODEL_SEED), data: train, layout: worker.layout, fragments: worker.fragments, global: () => worker.global, seqLen: 32 }))
  ar.contributionCheck = check
  if (process.env.CHECK_LOG !== undefined) {
    const inner = check.check.bind(check)
    check.check = async (p) => { const out = await inner(p); console.log(`${id} r${p.round} [${p.start}] gains ${[...check.lastGains].map(([k, g]) => `${k}:${g.toExponential(2)}`).join(' ')} excl ${[...out.keys()].join(',')}`); return out }
  }
  const n: Node = { id, ar, worker, check, syncs: [] }
  if (attack !== undefined) {
    const reduce = ar.reduce.bind(ar)
    const rng = new Rng(dataSeed)
    let first: Uint8Array | undefined
    ar.reduce = async (round, q, len, into, _norm) => {
      first ??= q.slice()
      const bad = corrupt(attack, q, len, rng, round === 0 ? undefined : first)
      return await reduce(round, bad, len, into, normQ8(bad, len, BLOCK)) // an honest-looking claim of what it sends
    }
  }
  worker.hooks.onSync = (e) => { n.syncs.push(e) }
  nodes.push(n)
  return n
}

async function run (seed: number, attack: Attack | undefined, syncs: number): Promise<{ honest: Node[], attacker?: Node, before: number }> {
  const clock = new ManualClock()
  const net = new MemoryNetwork({ seed })
  const ids = ['w-a', 'w-b', 'w-c', 'w-d', 'w-e']
  // the attacker is w-c: neither the coordinator (smallest id) nor last
  const ns = await Promise.all(ids.map(async (id, i) => await node(net, ids, id, seed * 10 + i + 1, clock, id === 'w-c' ? attack : undefined)))
  const before = await ns[0].worker.evalGlobal(evalWindows)
  for (const n of ns) await n.worker.initFromModel()
  await Promise.all(ns.map(async n => { await n.worker.runSyncs(syncs) }))
  expect(clock.fired).toBe(0) // no timeout decided anything: every exclusion is the check's
  const honest = attack === undefined ? ns : ns.filter(n => n.id !== 'w-c')
  return { honest, attacker: attack === undefined ? undefined : ns[2], before }
}

describe('robust training aggregation against hostile trainers', () => {
  for (const attack of ['sign-flip', 'zeros', 'noise', 'replay'] as const) {
    it(`${attack}: the attacker is excluded, loss falls, honest replicas identical, no honest peer excluded`, async () => {
      const { honest, before } = await run(21, attack, 4)
      expect(expectIdentical(honest)).toBe(3 * 4)
      for (const n of honest) {
        for (const s of n.syncs) {
          expect(s.members).toContain('w-c')
          expect(s.rejected.filter(p => p !== 'w-c'), `sync ${s.seq} on ${n.id}`).toEqual([])
        }
      }
      // excluded in every round it can be caught in (a replay from round 1: round 0 is its original)
      const from = attack === 'replay' ? 1 : 0
      for (const s of honest[0].syncs.filter(s => s.seq >= from)) expect(s.rejected, `sync ${s.seq}`).toContain('w-c')
      const counts = nodes.map(n => n.check.counts)
      const byRule = { zero: 0, replay: 0, loss: 0 }
      for (const c of counts) { byRule.zero += c.zero; byRule.replay += c.replay; byRule.loss += c.loss }
      if (attack === 'zeros') expect(byRule.zero).toBeGreaterThan(0)
      else if (attack === 'replay') expect(byRule.replay).toBeGreaterThan(0)
      else expect(byRule.loss).toBeGreaterThan(0)
      const evals = honest[0].syncs.map(s => s.evalLoss!)
      expect(evals[evals.length - 1]).toBeLessThan(before - 0.2)
      expect(honest[0].worker.global.every(Number.isFinite)).toBe(true)
    })
  }

  it('honest runs over several seeds: nobody is excluded', async () => {
    for (const seed of [31, 32, 33]) {
      const { honest } = await run(seed, undefined, 3)
      expectIdentical(honest)
      for (const n of honest) for (const s of n.syncs) expect(s.rejected, `seed ${seed} sync ${s.seq} on ${n.id}`).toEqual([])
      for (const n of nodes) { n.ar.stop(); n.worker.dispose() }
      nodes = []
    }
  })
})
