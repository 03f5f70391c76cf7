import { describe, expect, it } from 'vitest'
import { Rng } from '../../web/src/util/rng.ts'
import { MAX_MESSAGE_BYTES, WIRE_VERSION } from '../../web/src/swarm/constants.ts'
import { MalformedMessageError, MessageTooLargeError } from '../../web/src/swarm/errors.ts'
import { readInfer, writeInfer, type InferMsg } from '../../web/src/swarm/wire/infer.ts'
import { readExpert, writeExpert, type ExpertMsg } from '../../web/src/swarm/wire/expert.ts'
import { ByteWriter } from '../../web/src/swarm/wire/bytes.ts'

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

  it('rejects truncation, trailing bytes, wrong versions and unknown types with typed errors', () => {
    const step = writeInfer(inferSamples[2])
    expect(() => readInfer(step.subarray(0, step.length - 1))).toThrow(MalformedMessageError)
    expect(() => readInfer(new Uint8Array([...step, 0]))).toThrow(/trailing/)
    expect(() => readInfer(new Uint8Array([WIRE_VERSION + 1, ...step.subarray(1)]))).toThrow(/version/)
    expect(() => readInfer(new Uint8Array([WIRE_VERSION, 99]))).toThrow(/unknown message type 99/)
    expect(() => readExpert(new Uint8Array([WIRE_VERSION, 42]))).toThrow(/unknown message type 42/)
    expect(() => readInfer(new Uint8Array([]))).toThrow(MalformedMessageError)
  })

  it('refuses tensors whose declared size exceeds the message limit before allocating', () => {
    // A STEP claiming a (1e6, 1e6) tensor in a few bytes.
    const w = new ByteWriter().u8(WIRE_VERSION).u8(3).string('s').varint(0).u8(1).u8(2).varint(1_000_000).varint(1_000_000)
    expect(() => readInfer(w.finish())).toThrow(MessageTooLargeError)
    expect(() => readInfer(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toThrow(MessageTooLargeError)
  })

  it('refuses a non-f32 dtype, an empty span and an oversized string', () => {
    const w = new ByteWriter().u8(WIRE_VERSION).u8(3).string('s').varint(0).u8(7).u8(2).varint(1).varint(1)
    expect(() => readInfer(w.finish())).toThrow(/dtype code 7/)
    expect(() => readInfer(writeInfer({ type: 'open', model: 'm', start: 2, end: 2, maxTokens: 1 }))).toThrow(/empty block span/)
    expect(() => writeInfer({ type: 'close', session: 'x'.repeat(5000) })).toThrow(MessageTooLargeError)
  })

  it('refuses a CHAIN with no tokens, an unknown input source, an empty pusher or next, or a bad has-next byte', () => {
    const head = () => new ByteWriter().u8(WIRE_VERSION).u8(9).string('s').varint(0)
    expect(() => readInfer(head().varint(0).u8(2).string('p').u8(0).finish())).toThrow(/tokens must be/)
    expect(() => readInfer(head().varint(600).u8(2).string('p').u8(0).finish())).toThrow(/tokens = 600 exceeds 512/)
    expect(() => readInfer(head().varint(1).u8(3).finish())).toThrow(/input source 3/)
    expect(() => readInfer(head().varint(1).u8(2).string('').u8(0).finish())).toThrow(/empty pushing peer/)
    expect(() => readInfer(head().varint(1).u8(2).string('p').u8(2).finish())).toThrow(/has-next/)
    expect(() => readInfer(head().varint(1).u8(2).string('p').u8(1).string('').string('x').finish())).toThrow(/empty next/)
  })

  it('fuzz: random mutations either decode or throw a typed error, never anything else', () => {
    const rng = new Rng(7)
    const all = [...inferSamples.map(m => ({ bytes: writeInfer(m), read: readInfer as (b: Uint8Array) => unknown })), ...expertSamples.map(m => ({ bytes: writeExpert(m), read: readExpert as (b: Uint8Array) => unknown }))]
    let typed = 0
    for (let i = 0; i < 3000; i++) {
      const s = all[rng.int(all.length)]
      const b = s.bytes.slice(0, rng.next() < 0.2 ? rng.int(s.bytes.length + 1) : s.bytes.length)
      const flips = 1 + rng.int(4)
      for (let f = 0; f < flips && b.length > 0; f++) b[rng.int(b.length)] = rng.int(256)
      try {
        s.read(b)
      } catch (e) {
        expect(e instanceof MalformedMessageError || e instanceof MessageTooLargeError, String(e)).toBe(true)
        typed++
      }
    }
    expect(typed).toBeGreaterThan(100)
  })
})
