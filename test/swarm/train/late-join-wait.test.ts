/**
 * A joiner whose board lags the trainers by more than the states they keep: its first shard fetch
 * finds no provider (NoProvidersError), and it waits for the newer record instead of falling back
 * to SNAPSHOT at once (the e2e late joiner fell back under load). Clocks are manual: the wait ends
 * on the board's change, or on the clock, never on the machine's speed.
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { NoProvidersError } from '../../../web/src/net/shard/errors.ts'
import { fetchLatestState } from '../../../web/src/swarm/train/late-join.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import type { StateShards } from '../../../web/src/swarm/train/state-shards.ts'
import type { SnapshotState } from '../../../web/src/swarm/train/allreduce.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'

const BYTES = 64
const PEERS = ['12D3KooWA', '12D3KooWB']

/** Shards held by "the trainers": a fetch of any other root finds no provider. */
function shardsHolding (held: Map<string, Uint8Array>, fetched: string[]): StateShards {
  return {
    publish: async () => { throw new Error('not in this test') },
    fetch: async (root) => {
      fetched.push(root)
      const data = held.get(root)
      if (data === undefined) throw new NoProvidersError(`no provider of ${root} answered with its manifest`)
      return { data, fetchedFrom: new Map([[PEERS[0], 1]]) }
    },
    close: () => {}
  }
}

async function stateAt (seed: number): Promise<{ data: Uint8Array, hash: string }> {
  const data = new Uint8Array(BYTES).map((_, i) => (i * 31 + seed) & 0xff)
  return { data, hash: await hashBytes(data.subarray(0, BYTES / 2)) }
}

function boardWith (): RunBoard {
  const b = new RunBoard(new Y.Doc().getMap(TRAIN_MAP), 'lagging')
  for (const p of PEERS) b.join(p, 0)
  return b
}

const noSnapshot = async (): Promise<SnapshotState> => { throw new Error('fell back to SNAPSHOT') }

describe('a late joiner whose board lags the trainers', () => {
  it('waits for the newer record after a fetch nobody could serve, and takes it as shards', async () => {
    const board = boardWith()
    const old = await stateAt(12)
    board.record(12, { hash: old.hash, members: PEERS, attempt: 0, root: 'aa'.repeat(32) }) // dropped by the trainers
    const now = await stateAt(16)
    const root16 = 'bb'.repeat(32)
    const fetched: string[] = []
    const clock = new ManualClock() // never advanced: only the board's change can end the wait
    const lines: string[] = []
    const got = fetchLatestState({ board, self: 'joiner', totalBytes: BYTES, shards: shardsHolding(new Map([[root16, now.data]]), fetched), snapshot: noSnapshot, clock, log: l => lines.push(l) })
    await expect.poll(() => fetched.length).toBe(1)
    expect(clock.nextDue()).toBeDefined() // waiting, with the fallback timer armed
    board.record(16, { hash: now.hash, members: PEERS, attempt: 0, root: root16 }) // the CRDT catches up
    const r = await got
    expect(r.via).toBe('shards')
    expect(r.state.round).toBe(16)
    expect(r.state.hash).toBe(now.hash)
    expect(fetched).toEqual(['aa'.repeat(32), root16])
    expect(clock.nextDue()).toBeUndefined() // the timer was cleared
    expect(lines.some(l => l.includes('refused state shards of sync 12') && l.includes('NoProvidersError'))).toBe(true)
  })

  it('falls back to SNAPSHOT when no newer record comes within the wait', async () => {
    const board = boardWith()
    const old = await stateAt(3)
    board.record(3, { hash: old.hash, members: PEERS, attempt: 0, root: 'cc'.repeat(32) })
    const fetched: string[] = []
    const clock = new ManualClock()
    let snapshots = 0
    const got = fetchLatestState({
      board, self: 'joiner', totalBytes: BYTES, shards: shardsHolding(new Map(), fetched), clock,
      snapshot: async () => { snapshots++; return { round: 3, data: old.data, hash: old.hash, momentumHash: await hashBytes(old.data.subarray(BYTES / 2)), meta: '{}' } }
    })
    await expect.poll(() => clock.nextDue()).toBeDefined()
    expect(snapshots).toBe(0)
    clock.advance(clock.nextDue()! - clock.now())
    const r = await got
    expect(r.via).toBe('snapshot')
    expect(snapshots).toBe(1)
  })

  it('does not wait after a refusal that is not "nobody holds it" (a lying record): SNAPSHOT at once', async () => {
    const board = boardWith()
    const good = await stateAt(5)
    const lie = await stateAt(6)
    const root = 'dd'.repeat(32)
    board.record(5, { hash: good.hash, members: PEERS, attempt: 0, root })
    const clock = new ManualClock()
    const r = await fetchLatestState({
      board, self: 'joiner', totalBytes: BYTES, shards: shardsHolding(new Map([[root, lie.data]]), []), clock,
      snapshot: async () => ({ round: 5, data: good.data, hash: good.hash, momentumHash: await hashBytes(good.data.subarray(BYTES / 2)), meta: '{}' })
    })
    expect(r.via).toBe('snapshot')
    expect(clock.nextDue()).toBeUndefined()
  })
})
