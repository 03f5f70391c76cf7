/**
 * Codec of `/webswarm/expert/1.0.0` (grammar in PROTOCOL.md, section `expert`).
 * Order (STYLE 10): constants → write/read pairs → one dispatcher with `default: throw`.
 *
 * One CALL carries, for one MoE layer, the token rows routed to each of several experts this peer
 * hosts; the RESULT carries each expert's output rows in the same order. Router weights never
 * travel: the caller combines.
 */
import { MAX_EXPERTS_PER_CALL, MAX_MESSAGE_BYTES, MAX_ROWS_PER_EXPERT, WIRE_VERSION } from '../constants.ts'
import { MalformedMessageError } from '../errors.ts'
import { ByteReader, ByteWriter, type WireTensor } from './bytes.ts'

export const EXPERT_TYPES = {
  call: 1,
  result: 2,
  error: 15
} as const

const MAX_TENSOR_VALUES = MAX_MESSAGE_BYTES / 4

/** Rows (N, C) for expert `expert`. */
export interface ExpertRows { expert: number, rows: WireTensor }
/** Run experts of layer `layer` of `model` on their rows. */
export interface ExpertCallMsg { type: 'call', model: string, layer: number, items: ExpertRows[] }
/** Each expert's output rows (N, C), same order as the call. */
export interface ExpertResultMsg { type: 'result', items: ExpertRows[] }
export interface ExpertErrorMsg { type: 'error', code: number, message: string }
export type ExpertMsg = ExpertCallMsg | ExpertResultMsg | ExpertErrorMsg

function writeItems (w: ByteWriter, items: ExpertRows[]): Uint8Array {
  w.varint(items.length)
  for (const it of items) w.varint(it.expert).tensor(it.rows)
  return w.finish()
}

function readItems (r: ByteReader): ExpertRows[] {
  const n = r.varint('expert count', MAX_EXPERTS_PER_CALL)
  const items: ExpertRows[] = []
  let budget = MAX_TENSOR_VALUES
  for (let i = 0; i < n; i++) {
    const expert = r.varint('expert', MAX_EXPERTS_PER_CALL - 1)
    const rows = r.tensor(`rows of expert ${expert}`, budget)
    budget -= rows.data.length
    if (rows.shape.length !== 2) throw new MalformedMessageError(`rows of expert ${expert}: expected (N, C), got [${rows.shape.join(', ')}]`)
    if (rows.shape[0] > MAX_ROWS_PER_EXPERT) throw new MalformedMessageError(`expert ${expert}: ${rows.shape[0]} rows exceed ${MAX_ROWS_PER_EXPERT}`)
    items.push({ expert, rows })
  }
  return items
}

export function writeExpert (m: ExpertMsg): Uint8Array {
  const w = new ByteWriter().u8(WIRE_VERSION)
  switch (m.type) {
    case 'call': return writeItems(w.u8(EXPERT_TYPES.call).string(m.model).varint(m.layer), m.items)
    case 'result': return writeItems(w.u8(EXPERT_TYPES.result), m.items)
    case 'error': return w.u8(EXPERT_TYPES.error).varint(m.code).string(m.message).finish()
  }
}

export function readExpert (bytes: Uint8Array): ExpertMsg {
  const r = new ByteReader(bytes)
  const version = r.u8('version')
  if (version !== WIRE_VERSION) throw new MalformedMessageError(`expert: unsupported version ${version} (expected ${WIRE_VERSION})`)
  const type = r.u8('type')
  let m: ExpertMsg
  switch (type) {
    case EXPERT_TYPES.call: m = { type: 'call', model: r.string('model'), layer: r.varint('layer', 1 << 20), items: readItems(r) }; break
    case EXPERT_TYPES.result: m = { type: 'result', items: readItems(r) }; break
    case EXPERT_TYPES.error: m = { type: 'error', code: r.varint('code', 255), message: r.string('message') }; break
    default: throw new MalformedMessageError(`expert: unknown message type ${type}`)
  }
  r.end()
  return m
}
