/**
 * The run declaration switches robust aggregation and the contribution check on for every
 * session of the run (session.ts wiring): three sessions over one doc train with the trimmed
 * mean and the check, every owner checks, nobody honest is refused, replicas stay identical; a
 * declaration without them leaves the check off.
 */
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { GauntletCheck } from '../../../web/src/swarm/train/contribution-check.ts'
import { refusedCounts } from '../../../web/src/swarm/train/exclusions.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP, type RunSpec } from '../../../web/src/swarm/train/run-board.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import type { SyncEvent } from '../../../web/src/swarm/train/worker.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'

const TIMING = { partTimeoutMs: 30_000, readyWindowMs: 60_000, coordinatorTimeoutMs: 120_000, partElements: 4096, windowParts: 4 }
const TEXT = 'the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. '.repeat(200)

let sessions: TrainSession[] = []
afterEach(() => { for (const s of sessions) s.stop(); sessions = [] })

async function runThree (spec: RunSpec, seed: number): Promise<{ doc: Y.Doc, syncs: SyncEvent[][] }> {
  const net = new MemoryNetwork({ seed })
  const doc = new Y.Doc()
  new RunBoard(doc.getMap(TRAIN_MAP), spec.id).declare(spec)
  const syncs: SyncEvent[][] = [[], [], []]
  sessions = await Promise.all(['s-a', 's-b', 's-c'].map(async (id, i) => await TrainSession.start({
    transport: net.endpoint(id), board: new RunBoard(doc.getMap(TRAIN_MAP), spec.id), backend: cpu, corpus: async () => TEXT, allreduce: TIMING,
    onSync: (e) => { syncs[i].push(e) },
    log: (l) => { if (process.env.AR_LOG !== undefined) console.log(id, l) }
  })))
  await Promise.all(sessions.map(async s => { await s.run(2) }))
  return { doc, syncs }
}

describe('robust aggregation selected by the run declaration', () => {
  it('trimmed mean + contribution check: every owner checks, nobody honest refused, replicas identical', async () => {
    const spec = defaultRunSpec('robust', { innerSteps: 3, seqLen: 32, totalSyncs: 2, corpus: { kind: 'text', text: 'x' }, aggregation: { kind: 'trimmed-mean', trim: 1 }, checkWindows: 2 })
    const { doc, syncs } = await runThree(spec, 41)
    for (const s of sessions) {
      expect(s.allreduce.contributionCheck).toBeInstanceOf(GauntletCheck)
      expect((s.allreduce.contributionCheck as GauntletCheck).counts.checked).toBeGreaterThan(0)
    }
    for (const i of [1, 2]) expect(syncs[i].map(e => e.hash)).toEqual(syncs[0].map(e => e.hash))
    for (const ev of syncs.flat()) expect(ev.rejected).toEqual([])
    expect(refusedCounts(doc.getMap(TRAIN_MAP), 'robust').size).toBe(0)
  }, 120_000)

  it('a declaration without the fields trains with the mean and no check', async () => {
    const spec = defaultRunSpec('plain', { innerSteps: 3, seqLen: 16, totalSyncs: 1, corpus: { kind: 'text', text: 'x' } })
    const { syncs } = await runThree(spec, 42)
    for (const s of sessions) expect(s.allreduce.contributionCheck).toBeUndefined()
    expect(syncs[1].map(e => e.hash)).toEqual(syncs[0].map(e => e.hash))
  }, 120_000)
})
