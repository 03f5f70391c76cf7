/**
 * Pieces of late join that need no network: sync records read from the CRDT are validated (bad
 * fields ignored with a reason), state chunk sizes, the bounded shard store, and fetchLatestState's
 * choice between shards and SNAPSHOT with a fake StateShards.
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { chunkCount, chunkHash } from '../../../web/src/net/shard/index.ts'
import type { SnapshotState } from '../../../web/src/swarm/train/allreduce.ts'
import { fetchLatestState } from '../../../web/src/swarm/train/late-join.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { parseSyncRecord, RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'
import { MAX_STATE_CHUNK_BYTES, MIN_STATE_CHUNK_BYTES, stateChunkBytes, type StateShards } from '../../../web/src/swarm/train/state-shards.ts'
import { RetainingShardStore } from '../../../web/src/swarm/transport/shard-store.ts'
import { buildManifest } from '../../../web/src/net/shard/manifest.ts'

const H = (c: string): string => c.repeat(64)

function board (): RunBoard {
  return new RunBoard(new Y.Doc().getMap(TRAIN_MAP), 'r1')
}

function stateBytes (seed: number, n = 4000): Uint8Array {
  const f = new Float32Array(n)
  for (let i = 0; i < n; i++) f[i] = Math.sin(seed * 1000 + i)
  return new Uint8Array(f.buffer)
}

describe('sync records', () => {
  it('accepts a good record with and without a root', () => {
    expect(parseSyncRecord({ hash: H('a'), members: ['p1', 'p2'], attempt: 0 })).toEqual({ hash: H('a'), members: ['p1', 'p2'], attempt: 0 })
    expect(parseSyncRecord({ hash: H('a'), members: ['p1'], attempt: 1, root: H('b') })).toEqual({ hash: H('a'), members: ['p1'], attempt: 1, root: H('b') })
  })

  it.each([
    [null, /not an object/],
    [[1], /not an object/],
    [{ hash: 'abc', members: ['p'], attempt: 0 }, /hash is not 64 hex/],
    [{ hash: H('A'), members: ['p'], attempt: 0 }, /hash is not 64 hex/],
    [{ hash: H('a'), members: [], attempt: 0 }, /members must be 1…64/],
    [{ hash: H('a'), members: Array.from({ length: 65 }, (_, i) => `p${i}`), attempt: 0 }, /members must be 1…64/],
    [{ hash: H('a'), members: ['p', 7], attempt: 0 }, /members must be strings/],
    [{ hash: H('a'), members: ['x'.repeat(129)], attempt: 0 }, /members must be strings/],
    [{ hash: H('a'), members: ['p'], attempt: -1 }, /attempt must be an integer/],
    [{ hash: H('a'), members: ['p'], attempt: 0.5 }, /attempt must be an integer/],
    [{ hash: H('a'), members: ['p'], attempt: 0, root: 'zz' }, /root is not 64 hex/],
    [{ hash: H('a'), members: ['p'], attempt: 0, blob: 'x'.repeat(10_000) }, /unknown fields blob/]
  ])('refuses %j', (raw, why) => {
    expect(parseSyncRecord(raw)).toMatch(why)
  })

  it('the board skips bad records, says why, and latest() is the newest good one', () => {
    const b = board()
    b.record(0, { hash: H('a'), members: ['p1'], attempt: 0, root: H('c') })
    b.map.set('sync/r1/5', { hash: 'nope', members: ['p1'], attempt: 0 })
    b.map.set('sync/r1/x', { hash: H('d'), members: ['p1'], attempt: 0 })
    b.map.set('sync/r1/3', { hash: H('e'), members: ['p1'], attempt: 0, root: 5 })
    const { records, ignored } = b.syncRecords()
    expect([...records.keys()]).toEqual([0])
    expect(ignored.map(i => `${i.key}: ${i.reason}`).sort()).toEqual([
      'sync/r1/3: root is not 64 hex digits', 'sync/r1/5: hash is not 64 hex digits', 'sync/r1/x: seq is not a non-negative integer'
    ])
    expect(b.latest()).toEqual({ seq: 0, rec: { hash: H('a'), members: ['p1'], attempt: 0, root: H('c') } })
    expect(b.recordAt(5)).toBeUndefined()
  })
})

describe('loss points on the board', () => {
  it('keeps the newest 64 per worker, skips malformed entries and points', () => {
    const b = board()
    for (let i = 0; i < 70; i++) b.recordLoss('p1', i, 5 - i / 100)
    b.recordLoss('p1', 70, Number.NaN) // not recorded
    b.map.set('loss/r1/p2', { points: [[0, 4.5], [-1, 3], ['x', 2], [1, null], [2, 4.4]] })
    b.map.set('loss/r1/p3', 'garbage')
    const l = b.losses()
    expect(l.get('p1')!.length).toBe(64)
    expect(l.get('p1')![0]).toEqual([6, 5 - 6 / 100])
    expect(l.get('p1')!.at(-1)).toEqual([69, 5 - 69 / 100])
    expect(l.get('p2')).toEqual([[0, 4.5], [2, 4.4]])
    expect(l.get('p3')).toEqual([])
  })
})

describe('state chunks and the bounded store', () => {
  it('chunk size is a function of the size: ~16 chunks, within [16 KiB, 1 MiB]', () => {
    expect(stateChunkBytes(1000)).toBe(MIN_STATE_CHUNK_BYTES)
    expect(stateChunkBytes(280_000)).toBe(32 * 1024)
    expect(Math.ceil(280_000 / stateChunkBytes(280_000))).toBeGreaterThanOrEqual(8)
    expect(stateChunkBytes(8e9)).toBe(MAX_STATE_CHUNK_BYTES)
  })

  it('keeps the newest `keep` states, shares equal chunks, drops the rest', async () => {
    const store = new RetainingShardStore(2)
    const add = async (data: Uint8Array): Promise<string> => {
      const { manifest, root, chunks } = await buildManifest(data, 4096)
      store.putManifest(root, manifest)
      chunks.forEach((c, i) => { store.putChunk(chunkHash(manifest, i), c) })
      return root
    }
    const a = stateBytes(1)
    const b = a.slice(); b[0] ^= 1 // differs in its first chunk only
    const c = stateBytes(3)
    const ra = await add(a)
    const rb = await add(b)
    const chunks = chunkCount(store.getManifest(ra)!)
    expect(store.bytes()).toBe(a.byteLength + 4096) // the unchanged chunks are held once
    expect(Buffer.from(store.assemble(rb)!).equals(Buffer.from(b))).toBe(true)
    store.pinned.add(ra)
    const rc = await add(c)
    expect(store.roots()).toEqual([ra, rb, rc]) // ra pinned (a fetch is filling it): held beside the newest 2
    store.pinned.delete(ra)
    await add(b)
    expect(store.roots()).toEqual([rc, rb])
    expect(store.getManifest(ra)).toBeUndefined()
    expect(store.bytes()).toBe(2 * a.byteLength)
    expect(chunks).toBe(4)
    store.putChunk('f'.repeat(64), new Uint8Array(10)) // no held manifest names it: not stored
    expect(store.hasChunk('f'.repeat(64))).toBe(false)
  })

  it('a state remote peers are reading is held past `keep` for the lease time, at most `keep` such', async () => {
    let now = 0
    const store = new RetainingShardStore(2, 1000, () => now)
    const add = async (seed: number): Promise<string> => {
      const { manifest, root, chunks } = await buildManifest(stateBytes(seed), 4096)
      store.putManifest(root, manifest)
      chunks.forEach((c, i) => { store.putChunk(chunkHash(manifest, i), c) })
      return root
    }
    const [r1, r2] = [await add(1), await add(2)]
    store.leaseRoot(r1) // a joiner asked for r1's manifest
    const r3 = await add(3)
    const r4 = await add(4)
    expect(store.roots()).toEqual([r1, r3, r4]) // r1 leased: kept; r2 (not read) went
    expect(store.assemble(r1)).toBeDefined()
    now = 900
    store.leaseChunk(chunkHash(store.getManifest(r1)!, 2)) // still reading r1's chunks: the lease runs on
    now = 1800
    const r5 = await add(5)
    expect(store.roots()).toEqual([r1, r4, r5])
    now = 1901 // a second past its last read: dropped at the next publish
    const r6 = await add(6)
    expect(store.roots()).toEqual([r5, r6])
    expect(store.getManifest(r1)).toBeUndefined()
    // leases never hold more than `keep` extra states: the newest leased ones stay
    store.leaseRoot(r5); store.leaseRoot(r6)
    const r7 = await add(7)
    store.leaseRoot(r7)
    const r8 = await add(8)
    expect(store.roots()).toEqual([r5, r6, r7, r8])
    const r9 = await add(9)
    expect(store.roots()).toEqual([r6, r7, r8, r9])
    expect(store.bytes()).toBe(4 * stateBytes(1).byteLength)
    expect(store.getManifest(r2)).toBeUndefined()
  })

  it('refuses a manifest of another size than the fetch expects', async () => {
    const store = new RetainingShardStore()
    const { manifest, root } = await buildManifest(stateBytes(1), 4096)
    store.expectSize.set(root, 999)
    expect(() => { store.putManifest(root, manifest) }).toThrow(/describes 16000 bytes, a state of this run is 999/)
  })
})

describe('fetchLatestState', () => {
  async function snap (data: Uint8Array, round: number): Promise<SnapshotState> {
    const half = data.byteLength / 2
    return { round, data, hash: await hashBytes(data.subarray(0, half)), momentumHash: await hashBytes(data.subarray(half)), meta: '{}' }
  }
  function fakeShards (content: Map<string, Uint8Array>, calls: string[][]): StateShards {
    return {
      publish: async () => '',
      fetch: async (root, providers) => {
        calls.push([...providers])
        const d = content.get(root)
        if (d === undefined) throw new Error('no provider has it')
        return { data: d, fetchedFrom: new Map(providers.map(p => [p, 1])) }
      },
      close: () => {}
    }
  }

  it('takes the recorded root from the members; falls back to SNAPSHOT when its content is not the recorded θ', async () => {
    const good = stateBytes(7)
    const s = await snap(good, 4)
    const b = board()
    b.join('me', 0); b.join('p1', 0); b.join('p2', 0); b.join('p3', 3)
    b.record(4, { hash: s.hash, members: ['p1', 'p2', 'me'], attempt: 0, root: H('1') })
    const calls: string[][] = []
    const lines: string[] = []
    let snapshots = 0
    const init = {
      board: b, self: 'me', totalBytes: good.byteLength, log: (l: string) => lines.push(l),
      shards: fakeShards(new Map([[H('1'), good], [H('2'), stateBytes(8)]]), calls),
      snapshot: async (peers: string[], minRound: number) => { snapshots++; expect(peers).toEqual(['p1', 'p2', 'p3']); expect(minRound).toBe(4); return s }
    }
    const got = await fetchLatestState(init)
    expect(got.via).toBe('shards')
    expect(got.state.hash).toBe(s.hash)
    expect(got.state.momentumHash).toBe(s.momentumHash)
    expect(calls[0]).toEqual(['p1', 'p2', 'p3']) // the sync's members first, never self
    expect(snapshots).toBe(0)

    // a root whose bytes are another state: refused with the reason, then SNAPSHOT
    b.record(4, { hash: s.hash, members: ['p1', 'p2', 'me'], attempt: 0, root: H('2') })
    const again = await fetchLatestState(init)
    expect(again.via).toBe('snapshot')
    expect(again.state.hash).toBe(s.hash)
    expect(lines.some(l => /refused state shards of sync 4 .*holds θ_global [0-9a-f]{12}…, the board records/.test(l))).toBe(true)

    // wrong size, and an unreachable root: refused, SNAPSHOT
    const small = await fetchLatestState({ ...init, totalBytes: good.byteLength - 8 }).catch((e: Error) => e)
    expect(lines.some(l => /holds 16000 bytes, θ ‖ momentum needs 15992/.test(l))).toBe(true)
    expect(small).toHaveProperty('via', 'snapshot')
    b.record(4, { hash: s.hash, members: ['p1'], attempt: 0, root: H('3') })
    expect((await fetchLatestState(init)).via).toBe('snapshot')
    expect(lines.some(l => /no provider has it/.test(l))).toBe(true)
    expect(snapshots).toBe(3)
  })

  it('a state dropped by its providers mid-fetch: retried on the newer record, not on the same one', async () => {
    const s5 = await snap(stateBytes(5), 5)
    const b = board()
    b.record(4, { hash: H('4'), members: ['p1', 'p2'], attempt: 0, root: H('4') })
    const tried: string[] = []
    const lines: string[] = []
    const shards: StateShards = {
      publish: async () => '',
      fetch: async (root, providers) => {
        tried.push(root)
        if (root === H('4')) { // the swarm moves on while this fetch runs; its providers drop sync 4
          b.record(5, { hash: s5.hash, members: ['p1', 'p2'], attempt: 0, root: H('5') })
          throw new Error('4 of 9 chunks unavailable')
        }
        return { data: s5.data, fetchedFrom: new Map(providers.map(p => [p, 1])) }
      },
      close: () => {}
    }
    const got = await fetchLatestState({ board: b, self: 'me', totalBytes: s5.data.byteLength, shards, log: l => lines.push(l), snapshot: async () => { throw new Error('not used') } })
    expect(got.via).toBe('shards')
    expect(got.state.round).toBe(5)
    expect(tried).toEqual([H('4'), H('5')])
    expect(lines[0]).toMatch(/refused state shards of sync 4 .*unavailable/)
  })

  it('says why it ignores a malformed record, and uses the newest good one', async () => {
    const s = await snap(stateBytes(7), 2)
    const b = board()
    b.record(2, { hash: s.hash, members: ['p1'], attempt: 0 })
    b.map.set('sync/r1/9', { hash: s.hash, members: ['p1'], attempt: 0, root: 'not-a-root' })
    const lines: string[] = []
    let minRound = -2
    const got = await fetchLatestState({ board: b, self: 'me', totalBytes: s.data.byteLength, log: l => lines.push(l), snapshot: async (_p, m) => { minRound = m; return s } })
    expect(got.state.round).toBe(2)
    expect(minRound).toBe(2)
    expect(lines).toContain('train: ignoring board entry sync/r1/9: root is not 64 hex digits')
  })

  it('a SNAPSHOT whose θ is not the recorded one is refused', async () => {
    const s = await snap(stateBytes(7), 2)
    const b = board()
    b.record(2, { hash: H('9'), members: ['p1'], attempt: 0 })
    await expect(fetchLatestState({ board: b, self: 'me', totalBytes: s.data.byteLength, snapshot: async () => s })).rejects.toThrow(/the board records 999999999999…/)
  })
})
