/**
 * Codec of `/webswarm/expert/2.0.0` (grammar in PROTOCOL.md, section `expert`, whose message
 * table is rendered from EXPERT_MESSAGES: schema.ts).
 *
 * One CALL carries, for one MoE layer, the token rows routed to each of several experts this peer
 * hosts; the RESULT carries each expert's output rows in the same order. Router weights never
 * travel: the caller combines.
 */
import { MAX_EXPERTS_PER_CALL, MAX_ROWS_PER_EXPERT, WIRE_VERSION } from '../constants.ts'
import { EXPERT } from '../../net/protocols.ts'
import type { TensorMessage } from '../../net/stream/index.ts'
import { defineMessages, list, messageCodec, str, tensor, varint, type MessageOf } from './schema.ts'

/** Rows (N, C) for expert `expert`. */
const items = list(MAX_EXPERTS_PER_CALL, { expert: varint(MAX_EXPERTS_PER_CALL - 1), rows: tensor({ rank: 2, maxRows: MAX_ROWS_PER_EXPERT }) }, { label: 'expert' })

/** Every `expert` message, in wire order of its fields. */
export const EXPERT_MESSAGES = defineMessages({
  /** Run experts of layer `layer` of `model` on their rows. */
  call: { code: 1, dir: 'caller → host', fields: { model: str(), layer: varint(1 << 20), items } },
  /** Each expert's output rows (N, C), same order as the call. */
  result: { code: 2, dir: 'host → caller', fields: { items }, note: 'same experts, same order' },
  error: { code: 15, dir: 'host → caller', fields: { code: varint(255), message: str() } }
})

export type ExpertMsg = MessageOf<typeof EXPERT_MESSAGES>
export type ExpertRows = Extract<ExpertMsg, { type: 'call' }>['items'][number]


const codec = messageCodec(EXPERT, WIRE_VERSION, EXPERT_MESSAGES)

export function writeExpert (m: ExpertMsg): TensorMessage {
  return codec.write(m)
}

/** Decode one message; throws MalformedMessageError / MessageTooLargeError on anything off-grammar. */
export function readExpert (message: TensorMessage): ExpertMsg {
  return codec.read(message)
}
