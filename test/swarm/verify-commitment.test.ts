/**
 * Compact commitments (swarm/commitment.ts, `infer` STEP_COMMIT / COMMITMENT): the top-k
 * channels of a row and their quantized values, compared against full rows at those channels.
 * Random and odd shapes; malformed commitments (wrong sizes, out-of-range or repeated channels)
 * mismatch instead of passing; the wire refuses inconsistent ones; honest f32 vs f16-KV runs
 * stay under the tolerance at the committed channels (calibration); and a verifier in commit
 * mode catches a liar with fewer bytes per check than full rows, the tokens equal to the honest run.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import type { VerifyOptions } from '../../web/src/swarm/client/verify.ts'
import { compareRows, VERIFY_TOLERANCE } from '../../web/src/swarm/client/verify-compare.ts'
import { commit, commitTolerance, compareCommitment, MAX_COMMIT_BYTES, MAX_COMMIT_K } from '../../web/src/swarm/commitment.ts'
import { MalformedMessageError } from '../../web/src/swarm/errors.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { readInfer, writeInfer } from '../../web/src/swarm/wire/infer.ts'
import { Rng } from '../../web/src/util/rng.ts'
import { BLOCKS, C, FakeSpanBackend } from './fakes.ts'
import { inputs, MARGIN, run, spansOf } from './verify-calibration-helpers.ts'
import { hashedEnds as ends, hashedGreedy, LyingBackend, type LieKind } from './verify-hostile.ts'

describe('commitments to rows', () => {
  for (const [T, W, k] of [[1, 8, 4], [3, 7, 5], [5, 33, 8], [2, 5, 9], [4, 64, MAX_COMMIT_K]] as const) {
    it(`(${T}, ${W}) rows, k ${k}: honest rows agree within the quantization; a perturbed row is found`, () => {
      const rng = new Rng(T * 100 + W)
      const rows = rng.uniform(T * W).map(v => (v - 0.5) * 6)
      const c = commit(rows, W, k)
      const kk = Math.min(k, W)
      expect(c.k).toBe(kk)
      expect(c.bytes.length).toBe(T * (4 + 4 * kk))
      expect(c.rows).toBe(T)
      const tol = commitTolerance(VERIFY_TOLERANCE, kk)
      const same = compareCommitment(rows, W, c, tol)
      expect(same.mismatch).toBeUndefined()
      expect(same.max).toBeLessThan(Math.sqrt(kk) / 65534 + 1e-7)
      // The largest channel of the last row moved by 20 %: beyond the tolerance there.
      const bad = rows.slice()
      const last = (T - 1) * W
      let top = 0
      for (let i = 1; i < W; i++) if (Math.abs(rows[last + i]) > Math.abs(rows[last + top])) top = i
      bad[last + top] *= 1.2
      expect(compareCommitment(bad, W, c, tol).mismatch?.row).toBe(T - 1)
    })
  }

  it('a malformed commitment mismatches: wrong sizes, a channel ≥ C, a channel twice, a NaN scale', () => {
    const rows = new Rng(3).uniform(2 * 8)
    const c = commit(rows, 8, 3)
    const tol = commitTolerance(VERIFY_TOLERANCE, 3)
    expect(compareCommitment(rows.subarray(0, 8), 8, c, tol).mismatch?.deviation).toBe(Infinity)
    expect(compareCommitment(rows, 8, { ...c, bytes: c.bytes.subarray(4) }, tol).mismatch?.deviation).toBe(Infinity)
    const edit = (f: (v: DataView) => void): typeof c => { const b = c.bytes.slice(); f(new DataView(b.buffer)); return { ...c, bytes: b } }
    expect(compareCommitment(rows, 8, edit(v => v.setUint16(4, 8, true)), tol).mismatch?.deviation).toBe(Infinity) // channel ≥ C
    expect(compareCommitment(rows, 8, edit(v => v.setUint16(8, v.getUint16(4, true), true)), tol).mismatch?.deviation).toBe(Infinity) // twice
    expect(compareCommitment(rows, 8, edit(v => v.setFloat32(16, NaN, true)), tol).mismatch).toEqual({ row: 1, deviation: Infinity }) // row 1's scale
    // Zero rows commit to zeros and agree with zeros.
    expect(compareCommitment(new Float32Array(8), 8, commit(new Float32Array(8), 8, 3), tol).mismatch).toBeUndefined()
  })

  it('the wire carries a commitment and refuses inconsistent or oversized ones', () => {
    const c = commit(new Rng(4).uniform(3 * 8), 8, 4)
    const m = { type: 'commitment' as const, session: 's', position: 5, k: 4, rows: 3, data: c.bytes }
    const back = readInfer(writeInfer(m))
    expect(back).toMatchObject({ type: 'commitment', k: 4, rows: 3, position: 5 })
    expect(back.type === 'commitment' && Array.from(back.data)).toEqual(Array.from(c.bytes))
    expect(() => readInfer(writeInfer({ ...m, data: c.bytes.subarray(2) }))).toThrow(/needs 60 bytes/)
    expect(() => readInfer(writeInfer({ ...m, k: 5 }))).toThrow(MalformedMessageError)
    expect(() => readInfer(writeInfer({ ...m, k: MAX_COMMIT_K + 1 }))).toThrow(MalformedMessageError)
    expect(() => readInfer(writeInfer({ ...m, rows: 0, data: new Uint8Array(0) }))).toThrow(MalformedMessageError)
    expect(() => writeInfer({ ...m, data: new Uint8Array(MAX_COMMIT_BYTES + 4) })).toThrow()
    const step = { type: 'stepCommit' as const, session: 's', position: 0, k: 3, hidden: { shape: [1, 8], data: new Float32Array(8) } }
    expect(readInfer(writeInfer(step))).toMatchObject({ type: 'stepCommit', k: 3 })
    expect(() => readInfer(writeInfer({ ...step, k: 0 }))).toThrow(MalformedMessageError)
  })

  it('calibration: honest CPU f32 vs f16 KV on tiny-mixtral stays under the tolerance at the committed channels, as over the whole row', async () => {
    const dir = 'test/fixtures/tiny-mixtral'
    const whole = await spansOf(dir, cpu, [0, 2])
    const W = whole[0].config.hiddenSize
    const lines: string[] = []
    for (const seed of [1, 2]) {
      const x = inputs(W, seed)
      const ref = await run(whole, 'f32', x, W)
      const f16 = await run(whole, 'f16', x, W)
      const full = compareRows(f16, ref, W, VERIFY_TOLERANCE / MARGIN).max
      for (const k of [8, 32]) {
        const { mismatch, max } = compareCommitment(f16, W, commit(ref, W, k), commitTolerance(VERIFY_TOLERANCE, k) / MARGIN)
        lines.push(`seed ${seed} k ${k}: top-k ${max.toExponential(2)}, full row ${full.toExponential(2)}`)
        expect(mismatch, lines[lines.length - 1]).toBeUndefined()
        expect(max).toBeGreaterThan(0)
      }
    }
    console.log(`commitment calibration (tiny-mixtral, f16 KV vs f32):\n  ${lines.join('\n  ')}`)
  })
})

const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

/** s1 [0,2), x [2,4) (lying as told), s3 [4,6), v1 [2,4), v2 [1,5); a verifying client. */
async function swarm (lie: LieKind | undefined, verify: VerifyOptions, logs: string[] = []): Promise<InferenceClient> {
  const net = new MemoryNetwork({ seed: 9 })
  const dir = new MemoryDirectory()
  for (const [peer, start, end] of [['s1', 0, 2], ['x', 2, 4], ['s3', 4, 6], ['v1', 2, 4], ['v2', 1, 5]] as const) {
    const role = new ServerRole({
      transport: net.endpoint(peer), directory: dir, model: 'fake', numBlocks: BLOCKS, span: { start, end },
      loadSpan: async (a, b) => peer === 'x' && lie !== undefined ? new LyingBackend(new FakeSpanBackend('fake', a, b), lie, { after: 3 }) : new FakeSpanBackend('fake', a, b),
      cacheBudgetBytes: 1 << 20, throughput: 100
    })
    await role.start()
    roles.push(role)
  }
  const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: 30_000, hedgeFloorMs: 30_000, verify, log: l => logs.push(l) })
  for (const [peer, rtt] of [['s1', 1], ['x', 0.1], ['s3', 1], ['v1', 2], ['v2', 3]] as const) client.rttMs.set(peer, rtt)
  return client
}

describe('verification with commitments (fake blocks, seeded network)', () => {
  const PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
  const N = 12

  it('honest servers: commitments agree, nobody accused, and a check costs fewer bytes than full rows', async () => {
    const ref = await hashedGreedy(PROMPT, N)
    const perCheck: number[] = []
    for (const commitK of [undefined, 2]) {
      const client = await swarm(undefined, { rate: 1, commit: commitK })
      const r = await swarmGenerate(client, ends, PROMPT, { maxNewTokens: N })
      expect(r.tokens).toEqual(ref)
      const st = client.verify!.stats
      expect(st.mismatches).toBe(0)
      if (commitK !== undefined) expect(st.commitChecks).toBeGreaterThan(0)
      perCheck.push(st.answerBytes / st.checks)
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
    expect(perCheck[1]).toBeLessThan(perCheck[0])
  })

  for (const kind of ['scale', 'zeros', 'noise'] as const) {
    it(`a liar (${kind}) from its 4th forward is caught through a commitment, re-checked on full rows, banned; the tokens equal the honest run`, async () => {
      const ref = await hashedGreedy(PROMPT, N)
      const logs: string[] = []
      const client = await swarm(kind, { rate: 1, commit: 2 }, logs)
      const r = await swarmGenerate(client, ends, PROMPT, { maxNewTokens: N })
      expect(r.tokens).toEqual(ref)
      expect(logs.some(l => /x disagrees with a commitment/.test(l))).toBe(true)
      expect(client.verify!.stats.liars).toEqual(['x'])
      expect(client.verify!.stats.commitChecks).toBeGreaterThan(0)
      for (const p of ['s1', 's3', 'v1', 'v2']) expect(client.bans.isLiar(p), p).toBe(false)
    })
  }
})
