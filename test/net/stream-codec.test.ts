import { describe, expect, it } from 'vitest'
import { crc32, crc32Js } from '../../web/src/net/stream/crc32.ts'
import { decodeFrame, encodeFrame, FrameType, readFrameHeader, readStart, writeCredit, writeError, writeStart } from '../../web/src/net/stream/codec.ts'
import { FRAME_HEADER_BYTES, MAX_FRAME_BODY_BYTES } from '../../web/src/net/stream/constants.ts'
import { FrameDecoder } from '../../web/src/net/stream/decoder.ts'
import {
  ChecksumError, InvalidTensorError, LimitExceededError, MalformedFrameError, ProtocolVersionError, UnexpectedFrameError, UnknownFrameTypeError
} from '../../web/src/net/stream/errors.ts'
import type { TensorMessage } from '../../web/src/net/stream/index.ts'
import { patternBytes } from './stream-harness.ts'

const limits = { maxMessageBytes: 1 << 20, maxTensors: 16, maxMetaBytes: 1024, maxStreamBytes: 1 << 24, maxMessages: 8 }

/** Frames of `message` with id `id`, as a sender would produce them, in one buffer. */
function frames (id: number, message: TensorMessage, chunk = 1000): Uint8Array {
  const parts: Uint8Array[] = []
  const start = writeStart(message)
  parts.push(encodeFrame(FrameType.START, id, start, crc32(start)))
  for (const t of message.tensors) {
    for (let o = 0; o < t.data.byteLength; o += chunk) {
      const body = t.data.subarray(o, o + chunk)
      parts.push(encodeFrame(FrameType.DATA, id, body, crc32(body)))
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.byteLength }
  return out
}

function collect (): { decoder: FrameDecoder, got: TensorMessage[], credits: number[], errors: string[] } {
  const got: TensorMessage[] = []
  const credits: number[] = []
  const errors: string[] = []
  const decoder = new FrameDecoder(limits, {
    onMessage: (_id, m) => { got.push(m) },
    onCredit: (n) => { credits.push(n) },
    onRemoteError: (_id, code, msg) => { errors.push(`${code}:${msg}`) },
    onEnd: () => { errors.push('end') }
  })
  return { decoder, got, credits, errors }
}

const sample: TensorMessage = {
  meta: { op: 'step', pos: 7, tags: ['a', 'ü'] },
  tensors: [
    { name: 'hidden', dtype: 'f32', shape: [2, 3, 5], data: patternBytes(120, 1) },
    { name: 'mask', dtype: 'u8', shape: [7], data: patternBytes(7, 2) },
    { name: 'empty', dtype: 'f16', shape: [0, 4], data: new Uint8Array(0) },
    { name: 'scalar', dtype: 'i32', shape: [], data: patternBytes(4, 3) },
    { name: 'q', dtype: 'q8', shape: [64], data: patternBytes(64 + 8, 4) }
  ]
}

describe('crc32', () => {
  it('matches the IEEE check value and the native zlib one on random data', () => {
    expect(crc32Js(new TextEncoder().encode('123456789'))).toBe(0xCBF43926)
    for (const n of [0, 1, 7, 8, 9, 63, 1000, 16_320, 100_003]) {
      const b = patternBytes(n, n + 11)
      expect(crc32Js(b)).toBe(crc32(b))
      // continuing from a seed equals one pass
      const k = Math.floor(n / 3)
      expect(crc32Js(b.subarray(k), crc32Js(b.subarray(0, k)))).toBe(crc32(b))
    }
  })
})

describe('codec', () => {
  it('START round-trips metadata and descriptors of every dtype, rank 0 and empty tensors included', () => {
    const body = writeStart(sample)
    const s = readStart(body, limits)
    expect(s.meta).toEqual(sample.meta)
    expect(s.tensors.map(t => [t.name, t.dtype, t.shape, t.byteLength])).toEqual(sample.tensors.map(t => [t.name, t.dtype, t.shape, t.data.byteLength]))
    expect(s.totalBytes).toBe(120 + 7 + 0 + 4 + 72)
  })

  it('rejects tensors whose bytes do not fit dtype × shape before sending', () => {
    expect(() => writeStart({ tensors: [{ name: 'x', dtype: 'f32', shape: [3], data: new Uint8Array(11) }] })).toThrow(InvalidTensorError)
    expect(() => writeStart({ tensors: [{ name: 'x', dtype: 'q8', shape: [3], data: new Uint8Array(2) }] })).toThrow(InvalidTensorError)
    expect(() => writeStart({ tensors: [{ name: 'x', dtype: 'u8', shape: [1.5], data: new Uint8Array(1) }] })).toThrow(InvalidTensorError)
    expect(() => writeStart({ tensors: [{ name: 'x', dtype: 'u8', shape: [1, 1, 1, 1, 1, 1, 1, 1, 1], data: new Uint8Array(1) }] })).toThrow(InvalidTensorError)
    const t = { name: 'x', dtype: 'u8' as const, shape: [1], data: new Uint8Array(1) }
    expect(() => writeStart({ tensors: [t, t] })).toThrow(/used twice/)
  })

  it('header checks version, reserved flags and body cap; dispatcher rejects unknown types', () => {
    const f = encodeFrame(FrameType.CREDIT, 0, writeCredit(3), crc32(writeCredit(3)))
    const h = readFrameHeader(f)
    expect(decodeFrame(h, f.subarray(FRAME_HEADER_BYTES), limits)).toEqual({ type: FrameType.CREDIT, id: 0, messages: 3 })
    const bad = f.slice(); bad[0] = 2
    expect(() => readFrameHeader(bad)).toThrow(ProtocolVersionError)
    const flags = f.slice(); flags[2] = 1
    expect(() => readFrameHeader(flags)).toThrow(MalformedFrameError)
    const big = f.slice(); new DataView(big.buffer).setUint32(8, MAX_FRAME_BODY_BYTES + 1, true)
    expect(() => readFrameHeader(big)).toThrow(LimitExceededError)
    expect(() => decodeFrame({ ...h, type: 9 }, new Uint8Array(0), limits)).toThrow(UnknownFrameTypeError)
    expect(() => decodeFrame({ ...h, type: FrameType.CREDIT }, writeCredit(0), limits)).toThrow(MalformedFrameError)
  })

  it('ERROR text is truncated at a character boundary', () => {
    const body = writeError(7, 'é'.repeat(2000))
    expect(body.byteLength).toBeLessThanOrEqual(2 + 1024)
    expect(decodeFrame({ type: FrameType.ERROR, id: 1, bodyLength: body.byteLength, crc: 0 }, body, limits)).toMatchObject({ code: 7, message: 'é'.repeat(512) })
  })
})

describe('FrameDecoder', () => {
  it('reassembles messages from any split of the byte stream', () => {
    const bytes = new Uint8Array([...frames(1, sample, 33), ...frames(2, { tensors: [] }), ...frames(3, sample, 1000)])
    for (const cut of [1, 2, 15, 16, 17, 100, 4096, bytes.byteLength]) {
      const { decoder, got } = collect()
      for (let o = 0; o < bytes.byteLength; o += cut) decoder.push(bytes.subarray(o, o + cut))
      expect(got).toHaveLength(3)
      expect(got[1]).toEqual({ tensors: [] })
      for (const m of [got[0], got[2]]) {
        expect(m.meta).toEqual(sample.meta)
        m.tensors.forEach((t, i) => { expect(t).toEqual(sample.tensors[i]) })
      }
    }
  })

  it('rejects a flipped payload bit, out-of-order ids, overruns and limits, and stays failed', () => {
    const good = frames(1, sample, 50)
    const flip = good.slice(); flip[flip.byteLength - 3] ^= 0x10
    const c1 = collect()
    expect(() => { c1.decoder.push(flip) }).toThrow(ChecksumError)
    expect(c1.got).toHaveLength(0)
    expect(() => { c1.decoder.push(frames(2, { tensors: [] })) }).toThrow(ChecksumError) // failed for good

    expect(() => { collect().decoder.push(frames(2, sample)) }).toThrow(UnexpectedFrameError)
    const data = new Uint8Array([9])
    expect(() => { collect().decoder.push(encodeFrame(FrameType.DATA, 1, data, crc32(data))) }).toThrow(UnexpectedFrameError)
    const start = writeStart({ tensors: [{ name: 'x', dtype: 'u8', shape: [1], data: new Uint8Array(1) }] })
    const over = new Uint8Array([...encodeFrame(FrameType.START, 1, start, crc32(start)), ...encodeFrame(FrameType.DATA, 1, new Uint8Array(2), crc32(new Uint8Array(2)))])
    expect(() => { collect().decoder.push(over) }).toThrow(UnexpectedFrameError)
    const huge = { tensors: [{ name: 'x', dtype: 'u8' as const, shape: [(1 << 20) + 1], data: new Uint8Array((1 << 20) + 1) }] }
    expect(() => { collect().decoder.push(frames(1, huge).subarray(0, 200)) }).toThrow(LimitExceededError)
    let many = new Uint8Array(0)
    for (let id = 1; id <= 9; id++) many = new Uint8Array([...many, ...frames(id, { tensors: [] })])
    const c2 = collect()
    expect(() => { c2.decoder.push(many) }).toThrow(LimitExceededError)
    expect(c2.got).toHaveLength(8)

    const end = encodeFrame(FrameType.END, 0, new Uint8Array(0), crc32(new Uint8Array(0)))
    const c3 = collect()
    c3.decoder.push(new Uint8Array([...frames(1, { tensors: [] }), ...end]))
    expect(c3.errors).toEqual(['end'])
    expect(() => { c3.decoder.push(frames(2, { tensors: [] })) }).toThrow(/START of message 2 after END/)
  })
})
