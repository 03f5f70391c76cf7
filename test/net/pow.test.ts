/**
 * The identity proof of work (web/src/net/pow.ts): stamps verify only for their peer, scope, day
 * and difficulty; malformed ones are refused with a reason; the hash agrees with node:crypto.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { leadingZeroBits, mintStamp, powEpoch, stampProblem, verifyStamp } from '../../web/src/net/pow.ts'

const NOW = Date.UTC(2026, 11, 5, 3, 0, 0)
const DAY = 86_400_000
const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('proof-of-work stamps', () => {
  it('counts leading zero bits exactly', () => {
    expect(leadingZeroBits(Uint8Array.of(0x80))).toBe(0)
    expect(leadingZeroBits(Uint8Array.of(0x01))).toBe(7)
    expect(leadingZeroBits(Uint8Array.of(0, 0, 0x10, 0xff))).toBe(19)
    expect(leadingZeroBits(Uint8Array.of(0, 0))).toBe(16)
  })

  it('a minted stamp verifies for its peer, scope and day, and meets the difficulty by node:crypto too', async () => {
    const stamp = await mintStamp('swarm-a', PEER, 10, NOW)
    expect(stamp.startsWith(`${powEpoch(NOW)}:`)).toBe(true)
    expect(stampProblem(stamp, 'swarm-a', PEER, 10, NOW)).toBeUndefined()
    const [epoch, nonce] = stamp.split(':')
    const d = createHash('sha256').update(`webswarm-pow/1\nswarm-a\n${PEER}\n${epoch}\n${nonce}`).digest()
    expect(leadingZeroBits(d)).toBeGreaterThanOrEqual(10)
    // valid tomorrow too (a peer that joined late yesterday), not the day after
    expect(verifyStamp(stamp, 'swarm-a', PEER, 10, NOW + DAY)).toBe(true)
    expect(stampProblem(stamp, 'swarm-a', PEER, 10, NOW + 2 * DAY)).toMatch(/not today/)
    expect(stampProblem(stamp, 'swarm-a', PEER, 10, NOW - DAY)).toMatch(/not today/)
  })

  it('refuses a stamp for another peer or scope, a weaker one, and malformed ones', async () => {
    const stamp = await mintStamp('swarm-a', PEER, 12, NOW)
    const other = PEER.slice(0, -1) + (PEER.endsWith('N') ? 'M' : 'N')
    // another peer or scope hashes differently: with 12 bits required, a chance of 2^-12 each to pass
    expect(verifyStamp(stamp, 'swarm-a', other, 12, NOW)).toBe(false)
    expect(verifyStamp(stamp, 'swarm-b', PEER, 12, NOW)).toBe(false)
    expect(stampProblem(stamp, 'swarm-a', PEER, 30, NOW)).toMatch(/leading zero bits, 30 required/)
    expect(stampProblem(undefined, 'swarm-a', PEER, 1, NOW)).toMatch(/no proof-of-work stamp/)
    expect(stampProblem('x:1', 'swarm-a', PEER, 1, NOW)).toMatch(/not "<epoch>:<nonce>"/)
    expect(stampProblem('1:' + '9'.repeat(40), 'swarm-a', PEER, 1, NOW)).toMatch(/longer than/)
    expect(stampProblem(`${powEpoch(NOW)}:-1`, 'swarm-a', PEER, 1, NOW)).toMatch(/not "<epoch>:<nonce>"/)
  })

  it('difficulty 0 admits any well-formed stamp of the day; bad difficulties are config errors', async () => {
    expect(verifyStamp(`${powEpoch(NOW)}:0`, 's', PEER, 0, NOW)).toBe(true)
    expect(() => stampProblem('1:1', 's', PEER, 33, NOW)).toThrow(/difficulty/)
    await expect(mintStamp('s', PEER, -1, NOW)).rejects.toThrow(/difficulty/)
  })

  it('minting yields to the event loop and can be aborted', async () => {
    const ac = new AbortController()
    let ticks = 0
    const timer = setInterval(() => { if (++ticks === 2) ac.abort() }, 0)
    await expect(mintStamp('s', PEER, 32, NOW, { batch: 64, signal: ac.signal })).rejects.toThrow(/abort/i)
    clearInterval(timer)
    expect(ticks).toBeGreaterThanOrEqual(2)
  })
})
