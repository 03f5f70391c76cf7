/**
 * `/webswarm/pow/1.0.0` (PROTOCOL.md § Identity stamps and flood limits): how a peer shows a
 * relay its identity stamp (pow.ts) before asking for a circuit-relay reservation, when the relay
 * requires one (`--reservation-pow-bits`). One request, one answer:
 *
 *   client → relay   lp-frame: stamp (UTF-8, ≤ MAX_STAMP_CHARS bytes) "<epoch>:<nonce>"
 *   relay  → client  lp-frame: 1 byte, 1 = admitted, 0 = refused
 *
 * The stamp's scope is `relay/<relay peer id>`: a stamp for one relay is worth nothing at another.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { LimitExceededError, MalformedMessageError, StampRefusedError } from './errors.ts'
import { MAX_STAMP_CHARS } from './pow.ts'
import type { ProtocolSpec } from './protocols.ts'

export const POW_STAMP: ProtocolSpec = {
  id: '/webswarm/pow/1.0.0',
  maxMessageBytes: MAX_STAMP_CHARS,
  maxMessagesPerStream: 1,
  timeoutMs: 5_000,
  // one stamp per peer and day: a few streams per connection are plenty, more are a flood
  maxInboundStreams: 2,
  maxOutboundStreams: 2,
  runOnLimitedConnection: false
}

/** The scope a relay's stamps are minted for. */
export function relayStampScope (relay: PeerId | string): string {
  return `relay/${relay.toString()}`
}

/** Presents `stamp` to `relay` over an open or new connection; throws when the relay refuses it. */
export async function presentStamp (node: Pick<Libp2p, 'dialProtocol'>, relay: PeerId, stamp: string, signal = AbortSignal.timeout(POW_STAMP.timeoutMs)): Promise<void> {
  const bytes = new TextEncoder().encode(stamp)
  if (bytes.length > POW_STAMP.maxMessageBytes) throw new LimitExceededError(POW_STAMP.id, `stamp of ${bytes.length} B exceeds ${POW_STAMP.maxMessageBytes} B`)
  const stream = await node.dialProtocol(relay, POW_STAMP.id, { signal })
  const lp = lpStream(stream, { maxDataLength: 1 })
  try {
    await lp.write(bytes, { signal })
    const answer = (await lp.read({ signal })).subarray()
    if (answer.length !== 1) throw new MalformedMessageError(POW_STAMP.id, `answer of ${answer.length} bytes`)
    if (answer[0] !== 1) throw new StampRefusedError(relay.toString())
    await stream.close({ signal })
  } catch (e) {
    stream.abort(e as Error)
    throw e
  }
}
