/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, the one zlib and PNG use) over bytes.
 * Node ≥ 22.2 has it natively in zlib; browsers get a slicing-by-8 table loop with the same output
 * (test/net/stream-codec.test.ts checks the two agree).
 */

const POLY = 0xEDB88320

/** 8 tables × 256 entries: T[k][b] is the CRC of byte b followed by k zero bytes. */
function makeTables (): Uint32Array[] {
  const t: Uint32Array[] = []
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256))
  for (let b = 0; b < 256; b++) {
    let c = b
    for (let i = 0; i < 8; i++) c = (c & 1) !== 0 ? (c >>> 1) ^ POLY : c >>> 1
    t[0][b] = c >>> 0
  }
  for (let b = 0; b < 256; b++) {
    let c = t[0][b]
    for (let k = 1; k < 8; k++) {
      c = t[0][c & 0xff] ^ (c >>> 8)
      t[k][b] = c >>> 0
    }
  }
  return t
}

let tables: Uint32Array[] | undefined

/** Plain-JS CRC-32 of `data`, continuing from `seed` (the CRC of the preceding bytes). */
export function crc32Js (data: Uint8Array, seed = 0): number {
  tables ??= makeTables()
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables
  let c = ~seed >>> 0
  let i = 0
  const n = data.length
  // 8 bytes per step: each table folds one byte position, which removes the loop's serial chain.
  for (; i + 8 <= n; i += 8) {
    const a = (c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>> 0
    c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
      t3[data[i + 4]] ^ t2[data[i + 5]] ^ t1[data[i + 6]] ^ t0[data[i + 7]]
  }
  for (; i < n; i++) c = t0[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return ~c >>> 0
}

type Crc32Fn = (data: Uint8Array, seed?: number) => number

/** Node's zlib.crc32 when present (no import, so bundlers for the browser see nothing). */
function nativeCrc32 (): Crc32Fn | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  const zlib = proc?.getBuiltinModule?.('node:zlib') as { crc32?: Crc32Fn } | undefined
  return typeof zlib?.crc32 === 'function' ? zlib.crc32 : undefined
}

/** CRC-32 of `data` continuing from `seed`; native where the platform has it. */
export const crc32: Crc32Fn = nativeCrc32() ?? crc32Js
