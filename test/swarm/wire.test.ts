import { describe, expect, it } from 'vitest'
import { Rng } from '../../web/src/util/rng.ts'
import { MAX_MESSAGE_BYTES, WIRE_VERSION } from '../../web/src/swarm/constants.ts'
import { MalformedMessageError, MessageTooLargeError } from '../../web/src/swarm/errors.ts'
import { readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'
import { readExpert, writeExpert, type ExpertMsg } from '../../web/src/swarm/wire/expert.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'

const hidden = { shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2) }

const inferSamples: InferMsg[] = [
  { type: 'open', model: 'tiny-mixtral', start: 1, end: 2, maxTokens: 28 },
  { type: 'opened', session: 'abc', cacheTokensLeft: 1000 },
  { type: 'step', session: 'abc', position: 7, hidden },
  { type: 'output', session: 'abc', position: 7, hidden },
  { type: 'close', session: 'abc' },
  { type: 'closed', session: 'abc' },
  { type: 'info' },
  { type: 'infoOk', spans: [{ model: 'm', start: 0, end: 3 }], throughput: 12.345, cacheTokensLeft: 5 },
  { type: 'chain', session: 'abc', position: 7, tokens: 3, input: { hidden }, next: { peer: '12D3KooWnext', session: 'def' } },
  { type: 'chain', session: 'def', position: 7, tokens: 3, input: { from: '12D3KooWprev' } },
  { type: 'chained', session: 'abc', position: 7, hidden, pushError: '' },
  { type: 'chained', session: 'abc', position: 7, hidden, pushError: 'push to x failed' },
  { type: 'push', session: 'def', position: 7, hidden },
  { type: 'pushed', session: 'def', position: 7 },
  { type: 'error', code: 3, message: 'bad shape' }
]

const expertSamples: ExpertMsg[] = [
  { type: 'call', model: 'm', layer: 1, items: [{ expert: 0, rows: { shape: [2, 6], data: new Float32Array(12).fill(1.5) } }, { expert: 3, rows: { shape: [1, 6], data: new Float32Array(6).fill(-1) } }] },
  { type: 'result', items: [{ expert: 2, rows: { shape: [0, 6], data: new Float32Array(0) } }] },
  { type: 'error', code: 8, message: 'not hosted' }
]

describe('infer / expert codecs', () => {
  it('round-trips every message type', () => {
    for (const m of inferSamples) expect(readInfer(writeInfer(m))).toEqual(m)
    for (const m of expertSamples) expect(readExpert(writeExpert(m))).toEqual(m)
  })

  it('rejects missing fields, extra fields and tensors, wrong versions and unknown types with typed errors', () => {
    const step = writeInfer(inferSamples[2])
    const meta = step.meta!
    expect(() => readInfer({ meta, tensors: [] })).toThrow(MalformedMessageError)
    expect(() => readInfer({ meta: { ...meta, position: undefined as unknown as number } , tensors: step.tensors })).toThrow(/missing position/)
    expect(() => readInfer({ meta, tensors: [...step.tensors, { name: 'x', dtype: 'f32', shape: [1], data: new Uint8Array(4) }] })).toThrow(/unexpected tensor/)
    expect(() => readInfer({ meta: { ...meta, trailing: 0 }, tensors: step.tensors })).toThrow(/unknown field trailing/)
    expect(() => readInfer({ meta: { ...meta, v: WIRE_VERSION + 1 }, tensors: step.tensors })).toThrow(/version/)
    expect(() => readInfer({ meta: { v: WIRE_VERSION, t: 99 }, tensors: [] })).toThrow(/unknown message type 99/)
    expect(() => readExpert({ meta: { v: WIRE_VERSION, t: 42 }, tensors: [] })).toThrow(/unknown message type 42/)
    expect(() => readInfer({ tensors: [] })).toThrow(MalformedMessageError)
  })

  it('refuses tensors whose size exceeds the message limit before sending', () => {
    // A STEP of more f32 values than a message may hold (the receiving stream refuses it too, from its START frame).
    const n = MAX_MESSAGE_BYTES / 4 + 1
    expect(() => writeInfer({ type: 'step', session: 's', position: 0, hidden: { shape: [n], data: new Float32Array(n) } })).toThrow(MessageTooLargeError)
  })

  it('refuses a non-f32 dtype, an empty span and an oversized string', () => {
    const step = writeInfer(inferSamples[2])
    expect(() => readInfer({ meta: step.meta, tensors: [{ ...step.tensors[0], dtype: 'u32' }] })).toThrow(/unsupported dtype u32/)
    expect(() => readInfer(writeInfer({ type: 'open', model: 'm', start: 2, end: 2, maxTokens: 1 }))).toThrow(/empty block span/)
    expect(() => writeInfer({ type: 'close', session: 'x'.repeat(5000) })).toThrow(MessageTooLargeError)
  })

  it('refuses a CHAIN with no tokens, an unknown input source, an empty pusher or next, or a bad next record', () => {
    const chain = (tokens: number, input: unknown, next?: unknown): TensorMessage => ({ meta: { v: WIRE_VERSION, t: 9, session: 's', position: 0, tokens, input, ...(next === undefined ? {} : { next }) } as TensorMessage['meta'], tensors: [] })
    expect(() => readInfer(chain(0, { case: 2, from: 'p' }))).toThrow(/tokens must be/)
    expect(() => readInfer(chain(600, { case: 2, from: 'p' }))).toThrow(/tokens = 600 exceeds 512/)
    expect(() => readInfer(chain(1, { case: 3 }))).toThrow(/input source 3/)
    expect(() => readInfer(chain(1, { case: 2, from: '' }))).toThrow(/empty pushing peer/)
    expect(() => readInfer(chain(1, { case: 2, from: 'p' }, 2))).toThrow(/has-next must be a record/)
    expect(() => readInfer(chain(1, { case: 2, from: 'p' }, { peer: '', session: 'x' }))).toThrow(/empty next/)
    expect(readInfer(chain(1, { case: 2, from: 'p' }))).toMatchObject({ type: 'chain', input: { from: 'p' } })
  })

  it('fuzz: random mutations either decode or throw a typed error, never anything else', () => {
    const rng = new Rng(7)
    const all = [...inferSamples.map(m => ({ m: writeInfer(m), read: readInfer as (b: TensorMessage) => unknown })), ...expertSamples.map(m => ({ m: writeExpert(m), read: readExpert as (b: TensorMessage) => unknown }))]
    const values: unknown[] = [null, -1, 0, 1, 1.5, 2 ** 60, '', 'x', [], [{}], {}, { case: 1 }, { case: 2, from: 'p' }, true]
    let typed = 0
    for (let i = 0; i < 3000; i++) {
      const s = all[rng.int(all.length)]
      const meta: Record<string, unknown> = { ...s.m.meta }
      const keys = [...Object.keys(meta), 'other']
      const flips = 1 + rng.int(4)
      for (let f = 0; f < flips; f++) meta[keys[rng.int(keys.length)]] = values[rng.int(values.length)]
      const tensors = s.m.tensors.map(t => rng.next() < 0.2 ? { ...t, shape: [...t.shape, 1, 1, 1, 1].slice(0, 1 + rng.int(6)) } : t)
      if (rng.next() < 0.1) tensors.pop()
      try {
        s.read({ meta: meta as TensorMessage['meta'], tensors })
      } catch (e) {
        expect(e instanceof MalformedMessageError || e instanceof MessageTooLargeError, String(e)).toBe(true)
        typed++
      }
    }
    expect(typed).toBeGreaterThan(100)
  })
})
