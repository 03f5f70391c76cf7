/**
 * A gossip message's second copy is recognised as a duplicate before its signature is checked
 * (node.ts gossipFastMsgId): each peer gets every message once per relay it is linked to, and
 * every copy's Ed25519 verification was a share of an idle swarm's CPU (BENCHMARKS.md § Scale).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PeerId } from '@libp2p/interface'
import { createPeer, gossipFastMsgId, type WebSwarmNode } from '../../web/src/net/node.ts'

/** A raw gossipsub RPC message (what a neighbour sends). */
interface RawMsg { from?: Uint8Array, seqno?: Uint8Array, data?: Uint8Array, topic: string, signature?: Uint8Array, key?: Uint8Array }
/** gossipsub's own receive-side check (duplicate / invalid / valid), which its public type does not show. */
interface GossipInternals {
  mcache: { msgs: Map<string, { message: RawMsg }> }
  validateReceivedMessage: (from: PeerId, msg: RawMsg) => Promise<{ code: 'duplicate' | 'invalid' | 'valid' }>
}
const internals = (n: WebSwarmNode): GossipInternals => n.services.pubsub as unknown as GossipInternals

describe('gossipFastMsgId', () => {
  it('is the author and sequence number: equal for copies, different otherwise', () => {
    const a = { from: new Uint8Array([1, 2, 3]), seqno: new Uint8Array([0, 0, 0, 7]) }
    expect(gossipFastMsgId({ ...a, data: new Uint8Array([9]) } as typeof a)).toBe(gossipFastMsgId(a))
    expect(gossipFastMsgId({ ...a, seqno: new Uint8Array([0, 0, 0, 8]) })).not.toBe(gossipFastMsgId(a))
    expect(gossipFastMsgId({ ...a, from: new Uint8Array([1, 2, 4]) })).not.toBe(gossipFastMsgId(a))
    // The split is unambiguous: moving a byte from author to sequence number changes the id.
    expect(gossipFastMsgId({ from: new Uint8Array([1, 2]), seqno: new Uint8Array([3, 0, 0, 0, 7]) })).not.toBe(gossipFastMsgId(a))
    expect(gossipFastMsgId({ from: new Uint8Array([1, 2, 3, 0]), seqno: new Uint8Array([0, 0, 7]) })).not.toBe(gossipFastMsgId(a))
  })
})

describe('a gossip message received twice', () => {
  let author: WebSwarmNode
  let reader: WebSwarmNode
  beforeAll(async () => {
    author = await createPeer({ iceServers: [] })
    reader = await createPeer({ iceServers: [] })
  })
  afterAll(async () => { await Promise.allSettled([author?.stop(), reader?.stop()]) })

  it('is a duplicate at its second copy without its signature being checked again', async () => {
    await author.services.pubsub.publish('dup-test', new TextEncoder().encode('hello'))
    const [{ message }] = [...internals(author).mcache.msgs.values()]
    const from = author.peerId
    expect((await internals(reader).validateReceivedMessage(from, message)).code).toBe('valid')
    // A second copy whose signature no longer verifies: only a duplicate check ahead of the
    // signature check calls it a duplicate (verifying it first finds it invalid).
    const signature = message.signature!.slice()
    signature[0] ^= 1
    expect((await internals(reader).validateReceivedMessage(from, { ...message, signature })).code).toBe('duplicate')
    // A message never seen is still verified: the same forged signature on a new sequence number is invalid.
    const seqno = message.seqno!.slice()
    seqno[seqno.length - 1] ^= 1
    expect((await internals(reader).validateReceivedMessage(from, { ...message, seqno, signature })).code).toBe('invalid')
  })
})
