/**
 * Membership hygiene on the run board (membership.ts): heartbeats make closed tabs' entries stale,
 * so they are neither expected in rounds nor tried as state providers; forged heartbeats are
 * ignored with a reason; records and entries of a losing concurrent founding are not the run's.
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { TrainSession } from '../../../web/src/swarm/train/session.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import type { SnapshotState } from '../../../web/src/swarm/train/allreduce.ts'
import { fetchLatestState } from '../../../web/src/swarm/train/late-join.ts'
import { MAX_CLOCK_SKEW_MS, MEMBER_PRUNE_MS, MEMBER_TTL_MS, specContentKey } from '../../../web/src/swarm/train/membership.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { defaultRunSpec, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import type { StateShards } from '../../../web/src/swarm/train/state-shards.ts'

const T0 = 1_800_000_000_000
const H = (c: string): string => c.repeat(64)

function clockBoard (doc = new Y.Doc()): { board: RunBoard, clock: { now: number } } {
  const clock = { now: T0 }
  return { board: new RunBoard(doc.getMap(TRAIN_MAP), 'r1', { now: () => clock.now }), clock }
}

async function snap (round: number): Promise<SnapshotState> {
  const data = new Uint8Array(64).map((_, i) => i * 3 + round)
  return { round, data, hash: await hashBytes(data.subarray(0, 32)), momentumHash: await hashBytes(data.subarray(32)), meta: '{}' }
}

describe('member heartbeats', () => {
  it('a stale member is not expected and not tried as a provider; a live one is; a rejoining peer is live again', async () => {
    const { board, clock } = clockBoard()
    board.declare(defaultRunSpec('r1'))
    board.join('me', 0); board.join('alive', 0); board.join('closed', 0)
    clock.now += MEMBER_TTL_MS - 1000
    board.heartbeat('me'); board.heartbeat('alive') // 'closed' was a tab that went away
    clock.now += 2000
    expect(board.expected(5)).toEqual(['alive', 'me'])
    expect(board.memberStatus().stale).toEqual(['closed'])

    const s = await snap(4)
    board.record(4, { hash: s.hash, members: ['closed', 'alive', 'me'], attempt: 0, root: H('a'), genesis: board.genesis() })
    const tried: string[][] = []
    const shards: StateShards = {
      publish: async () => '',
      fetch: async (_root, providers) => { tried.push([...providers]); return { data: s.data, fetchedFrom: new Map([[providers[0], 1]]) } },
      close: () => {}
    }
    const snapshotPeers: string[][] = []
    const init = { board, self: 'me', totalBytes: 64, shards, snapshot: async (peers: string[]) => { snapshotPeers.push(peers); return s } }
    expect((await fetchLatestState(init)).via).toBe('shards')
    expect(tried[0]).toEqual(['alive'])
    await fetchLatestState({ ...init, shards: undefined })
    expect(snapshotPeers[0]).toEqual(['alive'])

    board.join('closed', 5) // the tab is back
    expect(board.expected(5)).toEqual(['alive', 'closed', 'me'])
    expect(board.expected(4)).toEqual(['alive', 'me'])
    expect(board.memberStatus().stale).toEqual([])
  })

  it('bad or forged heartbeat fields are ignored with a reason; a clock a little ahead is tolerated', () => {
    const { board } = clockBoard()
    board.declare(defaultRunSpec('r1'))
    const g = board.genesis()
    const m = board.map
    m.set('member/r1/ahead', { fromSeq: 0, at: T0 + MAX_CLOCK_SKEW_MS - 1000, genesis: g })
    m.set('member/r1/future', { fromSeq: 0, at: T0 + 3_600_000, genesis: g })
    m.set('member/r1/noat', { fromSeq: 0, genesis: g })
    m.set('member/r1/strat', { fromSeq: 0, at: String(T0), genesis: g })
    m.set('member/r1/neg', { fromSeq: -1, at: T0, genesis: g })
    m.set('member/r1/extra', { fromSeq: 0, at: T0, genesis: g, evil: 1 })
    m.set('member/r1/badgen', { fromSeq: 0, at: T0, genesis: 'zz' })
    m.set('member/r1/', { fromSeq: 0, at: T0, genesis: g })
    const st = board.memberStatus()
    expect([...st.live.keys()]).toEqual(['ahead'])
    const why = Object.fromEntries(st.ignored.map(i => [i.key, i.reason]))
    expect(why['member/r1/future']).toMatch(/heartbeat 3600 s in the future \(more than 30 s of clock skew, or forged\)/)
    expect(why['member/r1/noat']).toMatch(/heartbeat at must be a positive integer/)
    expect(why['member/r1/strat']).toMatch(/heartbeat at must be a positive integer/)
    expect(why['member/r1/neg']).toMatch(/fromSeq must be a non-negative integer/)
    expect(why['member/r1/extra']).toMatch(/unknown fields evil/)
    expect(why['member/r1/badgen']).toMatch(/genesis must be 16 hex digits/)
    expect(why['member/r1/']).toMatch(/peer id must be/)
    expect(board.expected(0)).toEqual(['ahead'])
    // a heartbeat never revives an unreadable entry: the peer must join again
    expect(board.heartbeat('noat')).toBe(false)
  })

  it('a clean leave removes the entry; long-stale entries are pruned', () => {
    const { board, clock } = clockBoard()
    board.declare(defaultRunSpec('r1'))
    board.join('a', 0); board.join('b', 0)
    board.leave('a')
    expect(board.map.has('member/r1/a')).toBe(false)
    clock.now += MEMBER_PRUNE_MS + 1
    board.join('c', 0)
    expect(board.prune()).toEqual(['b'])
    expect([...board.members().keys()]).toEqual(['c'])
  })
})

describe('a session keeps its entry live', () => {
  it('heartbeats while it runs, enters again when its entry vanished, leaves on stop', async () => {
    const { board, clock } = clockBoard()
    board.declare(defaultRunSpec('r1', { seqLen: 16, corpus: { kind: 'text', text: 'x' } }))
    const s = await TrainSession.start({
      transport: new MemoryNetwork({ seed: 1 }).endpoint('me'), board, backend: cpu, heartbeatMs: 5,
      corpus: async () => 'the quick brown fox jumps over the lazy dog. '.repeat(200)
    })
    try {
      const until = async (what: string, ok: () => boolean): Promise<void> => {
        // waits for the session's next heartbeat however late a loaded machine runs it (the test's
        // timeout bounds a wait that never ends; a 2 s cap here once decided the outcome instead)
        while (!ok()) await new Promise(resolve => setTimeout(resolve, 5))
        expect(ok(), what).toBe(true)
      }
      clock.now += 2 * MEMBER_TTL_MS // a long pause: the entry looks stale…
      expect(board.memberStatus().stale).toEqual(['me'])
      await until('live again after a heartbeat', () => board.members().has('me')) // …until the next heartbeat
      board.leave('me') // deleted behind its back (pruned by a peer that saw it stale)
      await until('entered again', () => board.members().get('me') === s.worker.nextSeq)
    } finally { s.stop() }
    expect(board.map.has('member/r1/me')).toBe(false)
  })
})

describe('syncs beat too', () => {
  it('a peer whose heartbeat timer is throttled (a hidden tab) stays live while it syncs', async () => {
    const { board, clock } = clockBoard()
    board.declare(defaultRunSpec('r1', { seqLen: 16, innerSteps: 2, corpus: { kind: 'text', text: 'x' } }))
    const s = await TrainSession.start({
      transport: new MemoryNetwork({ seed: 1 }).endpoint('me'), board, backend: cpu, heartbeatMs: 1, // half a period has always passed
      allreduce: { partTimeoutMs: 400, readyWindowMs: 100, coordinatorTimeoutMs: 2000 },
      corpus: async () => 'the quick brown fox jumps over the lazy dog. '.repeat(200)
    })
    // the timer never gets to run (as if throttled): stop it, keep syncing
    clearInterval((s as unknown as { heartbeatTimer: ReturnType<typeof setInterval> }).heartbeatTimer)
    try {
      for (let i = 0; i < 3; i++) {
        clock.now += MEMBER_TTL_MS - 1000 // nearly stale…
        expect(board.members().has('me')).toBe(true)
        await s.run(1) // …and each sync refreshes the entry
      }
      clock.now += MEMBER_TTL_MS - 1000
      expect(board.members().has('me')).toBe(true) // 4 × TTL − 4 s after the last timer beat
      clock.now += 2000
      expect(board.memberStatus().stale).toEqual(['me']) // no sync for a TTL: stale after all
    } finally { s.stop() }
  }, 60_000)
})

describe('concurrent foundings', () => {
  it('two declarations written before either saw the other converge to one genesis on both docs', () => {
    const [d1, d2] = [new Y.Doc(), new Y.Doc()]
    const [b1, b2] = [clockBoard(d1).board, clockBoard(d2).board]
    const s1 = b1.declare(defaultRunSpec('r1'))
    const s2 = b2.declare(defaultRunSpec('r1'))
    expect(s1.genesis).toMatch(/^[0-9a-f]{16}$/)
    expect(s1.genesis).not.toBe(s2.genesis)
    expect(specContentKey(s1)).toBe(specContentKey(s2))
    b1.join('p1', 0); b2.join('p2', 0)
    b1.record(0, { hash: H('1'), members: ['p1'], attempt: 0, genesis: s1.genesis })
    b2.record(0, { hash: H('2'), members: ['p2'], attempt: 0, genesis: s2.genesis })
    Y.applyUpdate(d2, Y.encodeStateAsUpdate(d1))
    Y.applyUpdate(d1, Y.encodeStateAsUpdate(d2))
    expect(b1.genesis()).toBe(b2.genesis())
    const winner = b1.genesis()
    const [wPeer, lPeer] = winner === s1.genesis ? ['p1', 'p2'] : ['p2', 'p1']
    for (const b of [b1, b2]) {
      expect(b.expected(0)).toEqual([wPeer])
      expect(b.memberStatus().forked).toEqual([lPeer])
      // seq 0's entry holds one of the two records; only the winner's counts as the run's
      const rec = b.recordAt(0)
      if (rec !== undefined) expect(rec.genesis).toBe(winner)
      else expect(b.syncRecords().ignored[0].reason).toMatch(/of another founding of the run/)
    }
  })
})

describe('a board over a swarm doc that changes generation', () => {
  it('writes and reads the map its getter names now, not the one it started on', () => {
    let doc = new Y.Doc()
    const board = new RunBoard(() => doc.getMap(TRAIN_MAP), 'r1', { now: () => T0 })
    board.declare(defaultRunSpec('r1'))
    board.join('me', 0)
    const old = doc
    doc = new Y.Doc() // what SwarmDoc.rotate/adopt do: a fresh Y.Doc of the live entries
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(old))
    board.join('late', 0)
    expect(doc.getMap(TRAIN_MAP).has('member/r1/late')).toBe(true)
    expect(old.getMap(TRAIN_MAP).has('member/r1/late')).toBe(false)
    expect(board.expected(0).sort()).toEqual(['late', 'me'])
  })
})
