/**
 * fetchSnapshot (late-join.ts) against a peer whose transport breaks, or whose answer times out,
 * once: a joiner whose run has one other member has nobody else to ask, so one broken stream or
 * one slow answer must not end its join (e2e runs of the page failed both ways); a peer that stays
 * unreachable or silent is still given up on, naming it.
 */
import { describe, expect, it } from 'vitest'
import { PeerTimeoutError, PeerUnreachableError } from '../../../web/src/swarm/errors.ts'
import type { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { fetchSnapshot } from '../../../web/src/swarm/train/late-join.ts'
import { hashBytes } from '../../../web/src/swarm/train/outer.ts'
import { MsgType } from '../../../web/src/swarm/train/wire.ts'

/** A stand-in for the joiner's AllReducePeer: SNAPSHOT answered from `state`, after `breaks` broken streams (or timed-out requests). */
async function peer (breaks: number, how: 'eof' | 'timeout' = 'eof'): Promise<{ ar: AllReducePeer, calls: () => number }> {
  const state = Uint8Array.from({ length: 64 }, (_, i) => i * 3)
  const hash = await hashBytes(state.subarray(0, 32))
  const momentumHash = await hashBytes(state.subarray(32))
  let calls = 0
  const ar = {
    self: 'joiner',
    run: 'r',
    rpc: async (to: string, msg: { type: number, offset: number, length: number }) => {
      calls++
      if (calls <= breaks) throw how === 'eof' ? new PeerUnreachableError(to, 'UnexpectedEOFError: stream closed while reading 0/1 bytes') : new PeerTimeoutError(to, 30_000)
      expect(msg.type).toBe(MsgType.SNAPSHOT)
      const payload = state.slice(msg.offset, msg.offset + msg.length)
      return { type: MsgType.STATE, run: 'r', round: 4, hash, momentumHash, total: state.byteLength, offset: msg.offset, meta: '{}', payload }
    }
  }
  return { ar: ar as unknown as AllReducePeer, calls: () => calls }
}

describe('fetchSnapshot when a stream breaks', () => {
  it('tries the same peer again after one broken stream, and gets its state', async () => {
    const { ar, calls } = await peer(1)
    const got = await fetchSnapshot(ar, ['member'], { sliceBytes: 16 })
    expect(got.round).toBe(4)
    expect(got.data.byteLength).toBe(64)
    expect(calls()).toBe(1 + 4)
  })

  it('gives up on a peer that stays unreachable, naming it', async () => {
    const { ar, calls } = await peer(10)
    await expect(fetchSnapshot(ar, ['member'], { sliceBytes: 16 })).rejects.toThrow(/no peer served a verifiable state \(member: .*unreachable/)
    expect(calls()).toBe(2)
  })

  it('tries the same peer again after one timed-out request, and gets its state', async () => {
    const { ar, calls } = await peer(1, 'timeout')
    const got = await fetchSnapshot(ar, ['member'], { sliceBytes: 16 })
    expect(got.round).toBe(4)
    expect(calls()).toBe(1 + 4)
  })

  it('gives up on a peer that stays silent, naming it', async () => {
    const { ar, calls } = await peer(10, 'timeout')
    await expect(fetchSnapshot(ar, ['member'], { sliceBytes: 16 })).rejects.toThrow(/no peer served a verifiable state \(member: peer member did not answer within 30000 ms/)
    expect(calls()).toBe(2)
  })
})
