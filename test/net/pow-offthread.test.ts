/**
 * Identity stamps minted off the page thread (web/src/net/pow-offthread.ts, pow-worker.ts): the
 * worker's message contract (one MintRequest, one MintReply), the same stamp as in place, and the
 * fallbacks: no Worker, a worker that crashes, an aborted mint.
 */
import { describe, expect, it } from 'vitest'
import { NetConfigError } from '../../web/src/net/errors.ts'
import { answerMint, mintOffThread, offThreadMinter, type MintReply, type MintRequest, type MintWorker } from '../../web/src/net/pow-offthread.ts'
import { mintStamp, verifyStamp } from '../../web/src/net/pow.ts'

const NOW = Date.UTC(2026, 11, 5, 3, 0, 0)
const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const SCOPE = 'relay/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

/** A stand-in worker: runs pow-worker.ts's handler on a structured clone of each message, like a Worker would. */
class FakeWorker implements MintWorker {
  onmessage: ((ev: { data: MintReply }) => void) | null = null
  onerror: ((ev: { message: string }) => void) | null = null
  readonly received: MintRequest[] = []
  terminated = 0
  constructor (private readonly behave: 'answer' | 'crash' | 'hang' = 'answer') {}
  postMessage (m: MintRequest): void {
    const req = structuredClone(m)
    this.received.push(req)
    if (this.behave === 'crash') setTimeout(() => this.onerror?.({ message: 'SyntaxError: failed to load' }), 0)
    if (this.behave === 'answer') void answerMint(req).then(r => { this.onmessage?.({ data: structuredClone(r) }) })
  }

  terminate (): void { this.terminated++ }
}

describe('identity stamps minted in a worker', () => {
  it('the worker answers a request with the stamp minting in place gives, or with the mint\'s error', async () => {
    const inPlace = await mintStamp(SCOPE, PEER, 10, NOW)
    expect(await answerMint({ scope: SCOPE, peer: PEER, bits: 10, now: NOW })).toEqual({ stamp: inPlace })
    const bad = await answerMint({ scope: SCOPE, peer: PEER, bits: 40, now: NOW })
    expect('error' in bad && bad.error).toMatch(/difficulty must be an integer in \[0, 32\] bits, got 40/)
  })

  it('mints through the worker: one request with the four fields, the same stamp, the worker terminated', async () => {
    const w = new FakeWorker()
    const stamp = await offThreadMinter(() => w)(SCOPE, PEER, 10, NOW, {})
    expect(w.received).toEqual([{ scope: SCOPE, peer: PEER, bits: 10, now: NOW }])
    expect(stamp).toBe(await mintStamp(SCOPE, PEER, 10, NOW))
    expect(verifyStamp(stamp, SCOPE, PEER, 10, NOW)).toBe(true)
    expect(w.terminated).toBe(1)
  })

  it('falls back in place where there are no Workers (Node), or when the worker cannot start or crashes', async () => {
    const expected = await mintStamp(SCOPE, PEER, 10, NOW)
    expect(typeof (globalThis as { Worker?: unknown }).Worker).toBe('undefined')
    expect(await mintOffThread(SCOPE, PEER, 10, NOW, {})).toBe(expected)
    expect(await offThreadMinter(() => undefined)(SCOPE, PEER, 10, NOW, {})).toBe(expected)
    expect(await offThreadMinter(() => { throw new Error('Worker blocked by CSP') })(SCOPE, PEER, 10, NOW, {})).toBe(expected)
    const crashing = new FakeWorker('crash')
    expect(await offThreadMinter(() => crashing)(SCOPE, PEER, 10, NOW, {})).toBe(expected)
    expect(crashing.terminated).toBe(1)
  })

  it('a refused mint rejects with a typed error; an aborted one terminates the worker', async () => {
    await expect(offThreadMinter(() => new FakeWorker())(SCOPE, PEER, 40, NOW, {})).rejects.toThrow(NetConfigError)
    const hanging = new FakeWorker('hang')
    const ac = new AbortController()
    const p = offThreadMinter(() => hanging)(SCOPE, PEER, 10, NOW, { signal: ac.signal })
    ac.abort(new Error('peer stopped'))
    await expect(p).rejects.toThrow('peer stopped')
    expect(hanging.terminated).toBe(1)
  })
})
