import { describe, expect, it } from 'vitest'
import { MalformedMessageError } from '../../web/src/net/errors.ts'
import { Reader, Writer } from '../../web/src/net/wire.ts'

const P = '/webswarm/test/1.0.0'

describe('net/wire.ts Reader / Writer (DHT records, crdt-sync frames, the swarm codecs)', () => {
  it('round-trips every field kind', () => {
    const bytes = new Writer().u8(7).varuint(300).varuint(Number.MAX_SAFE_INTEGER).f64(1.5).bytes(new Uint8Array([1, 2])).string('héllo').raw(new Uint8Array([9])).finish()
    const r = new Reader(bytes, P)
    expect([r.u8(), r.varuint(), r.varuint(), r.f64(), [...r.bytes(2)], r.string(16), [...r.raw(1)]]).toEqual([7, 300, Number.MAX_SAFE_INTEGER, 1.5, [1, 2], 'héllo', [9]])
    r.end()
  })

  it('refuses every truncation with MalformedMessageError naming the protocol', () => {
    const bytes = new Writer().varuint(300).f64(2).string('abc').finish()
    for (let n = 0; n < bytes.length; n++) {
      const r = new Reader(bytes.subarray(0, n), P)
      expect(() => { r.varuint('a'); r.f64('b'); r.string(8, 'c') }).toThrow(MalformedMessageError)
    }
    expect(() => new Reader(new Uint8Array(0), P).u8('kind')).toThrow(`${P}: malformed message: truncated kind`)
  })

  it('refuses oversized values before using them: varint over its cap, over 8 bytes or past 2^53, bytes over their cap', () => {
    expect(() => new Reader(new Writer().varuint(513).finish(), P).varuint('tokens', 512)).toThrow(/tokens = 513 exceeds 512/)
    expect(() => new Reader(new Uint8Array(9).fill(0x80), P).varuint('n')).toThrow(/varint longer than 8 bytes/)
    expect(() => new Reader(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), P).varuint('n')).toThrow(/exceeds 9007199254740991/)
    expect(() => new Reader(new Writer().bytes(new Uint8Array(10)).finish(), P).bytes(9, 'payload')).toThrow(/payload: length 10 exceeds cap 9/)
  })

  it('refuses invalid UTF-8 and trailing bytes', () => {
    expect(() => new Reader(Uint8Array.from([2, 0xc3, 0x28]), P).string(8, 'name')).toThrow(/name: invalid UTF-8/)
    const r = new Reader(Uint8Array.from([1, 2]), P)
    r.u8()
    expect(() => { r.end() }).toThrow(/1 trailing bytes/)
  })
})
