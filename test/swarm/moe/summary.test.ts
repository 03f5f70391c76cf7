/** Co-selection summaries (what block servers publish in the CRDT) and expert records from the DHT: round trips and bad input. */
import { describe, expect, it } from 'vitest'
import { CoSelectionStats } from '../../../web/src/swarm/moe/coselection.ts'
import { MAX_SUMMARY_BYTES, MAX_SUMMARY_PAIRS_PER_LAYER } from '../../../web/src/swarm/moe/constants.ts'
import { affinityFromPeers, affinityFromStats, parseSummary, summarize } from '../../../web/src/swarm/moe/summary.ts'
import { parseExpertRecord } from '../../../web/src/swarm/dht-directory.ts'
import { MalformedMessageError } from '../../../web/src/swarm/errors.ts'
import { Rng } from '../../../web/src/util/rng.ts'

/** Stats of a span starting at layer `first`: tokens pick {0, 3} or {1, 2} at every layer. */
function stats (first: number, layers: number, tokens: number, seed = 1): CoSelectionStats {
  const s = new CoSelectionStats(layers, 4, first)
  const rng = new Rng(seed)
  const choices: number[][] = Array.from({ length: layers }, () => [])
  for (let t = 0; t < tokens; t++) {
    const p = rng.next() < 0.5 ? [0, 3] : [1, 2]
    for (const c of choices) c.push(...p)
  }
  s.record(choices, 2)
  return s
}

describe('co-selection summaries', () => {
  it('round-trip: names model layers, strongest pairs first, parses back', () => {
    const s = stats(1, 2, 40)
    const sum = summarize(s, 'm')
    expect(sum.layers.map(l => l.layer)).toEqual([1, 2])
    expect(sum.layers[0].pairs.map(p => [p[0], p[1]]).sort()).toEqual([[0, 3], [1, 2]])
    expect(sum.layers[0].pairs.reduce((a, p) => a + p[2], 0)).toBe(40)
    expect(parseSummary(JSON.parse(JSON.stringify(sum)), 3, 4)).toEqual(sum)
  })

  it('stays under its byte cap on a large layer', () => {
    const E = 256
    const s = new CoSelectionStats(40, E)
    const rng = new Rng(2)
    s.record(Array.from({ length: 40 }, () => Array.from({ length: 2 * 300 }, (_, i) => i % 2 === 0 ? rng.int(E / 2) : E / 2 + rng.int(E / 2))), 2)
    const sum = summarize(s, 'big')
    expect(new TextEncoder().encode(JSON.stringify(sum)).length).toBeLessThanOrEqual(MAX_SUMMARY_BYTES)
    expect(Math.max(...sum.layers.map(l => l.pairs.length))).toBeLessThanOrEqual(MAX_SUMMARY_PAIRS_PER_LAYER)
    expect(() => parseSummary(sum, 40, E)).not.toThrow()
  })

  it('bad input: each malformed summary is rejected with a reason', () => {
    const good = summarize(stats(0, 2, 20), 'm')
    const bad: Array<[unknown, RegExp]> = [
      [null, /not an object/],
      [[1, 2], /not an object/],
      [{ ...good, v: 2 }, /version/],
      [{ ...good, model: 7 }, /model/],
      [{ ...good, tokens: -1 }, /tokens/],
      [{ ...good, tokens: 1.5 }, /tokens/],
      [{ ...good, layers: 'x' }, /layers/],
      [{ ...good, layers: [{ layer: 9, pairs: [] }] }, /layer 9/],
      [{ ...good, layers: [{ layer: 0, pairs: [] }, { layer: 0, pairs: [] }] }, /twice/],
      [{ ...good, layers: [{ layer: 0, pairs: [[1, 0, 1]] }] }, /i < j/],
      [{ ...good, layers: [{ layer: 0, pairs: [[0, 4, 1]] }] }, /i < j < 4/],
      [{ ...good, layers: [{ layer: 0, pairs: [[0, 1, 21]] }] }, /21 times in 20 tokens/],
      [{ ...good, layers: [{ layer: 0, pairs: [[0, 1]] }] }, /not \[i, j, n\]/],
      [{ ...good, layers: [{ layer: 0, pairs: Array.from({ length: MAX_SUMMARY_PAIRS_PER_LAYER + 1 }, () => [0, 1, 1]) }] }, /at most/],
      [{ ...good, pad: 'x'.repeat(MAX_SUMMARY_BYTES) }, /larger than/]
    ]
    for (const [v, why] of bad) expect(() => parseSummary(v, 2, 4), JSON.stringify(v)?.slice(0, 80)).toThrow(why)
    for (const [v] of bad) expect(() => parseSummary(v, 2, 4)).toThrow(MalformedMessageError)
  })

  it('affinity averages per-token rates over publishers; other models, tiny and bad summaries are left out', () => {
    const a = summarize(stats(0, 2, 100, 1), 'm')
    const b = summarize(stats(0, 2, 10_000, 3), 'm') // many tokens: still one vote
    const entries: Array<[string, { data: Record<string, unknown> }]> = [
      ['pa', { data: { coselection: a } }],
      ['pb', { data: { coselection: b } }],
      ['other', { data: { coselection: summarize(stats(0, 2, 50), 'other-model') } }],
      ['tiny', { data: { coselection: summarize(stats(0, 2, 3), 'm') } }],
      ['liar', { data: { coselection: { ...a, tokens: 1, layers: [{ layer: 0, pairs: [[0, 1, 1000]] }] } } }],
      ['plain', { data: { agent: 'browser' } }]
    ]
    const r = affinityFromPeers(entries, 'm', 2, 4)
    expect(r.publishers).toEqual(['pa', 'pb'])
    expect(r.rejected.map(x => x.peer)).toEqual(['liar'])
    const m = r.affinity!.get(0)!
    // Every token picks {0,3} or {1,2}: the two rates sum to 1, the cross pairs are 0.
    expect(m[0 * 4 + 3] + m[1 * 4 + 2]).toBeCloseTo(1, 9)
    expect(m[0 * 4 + 3]).toBe(m[3 * 4 + 0])
    expect(m[0 * 4 + 1]).toBe(0)
    expect(affinityFromPeers([['plain', { data: {} }]], 'm', 2, 4).affinity).toBeUndefined()
    const local = affinityFromStats(stats(1, 1, 10))
    expect([...local.keys()]).toEqual([1])
    expect(local.get(1)![0]).toBe(0) // no diagonal
  })
})

describe('expert records read from the DHT', () => {
  const enc = (o: unknown): Uint8Array => new TextEncoder().encode(typeof o === 'string' ? o : JSON.stringify(o))
  const good = { model: 'm', layer: 1, experts: [0, 2], throughput: 3.5, version: 4, state: 'online' }

  it('parses a good record; a record without a state (older announcers) is online', () => {
    expect(parseExpertRecord(enc(good), 'p', 99, 4)).toEqual({ ...good, peer: 'p', expiresAt: 99 })
    const { state: _s, ...old } = good
    expect(parseExpertRecord(enc(old), 'p', 99, 4).state).toBe('online')
  })

  it('bad input: each malformed record is rejected with a reason', () => {
    const bad: Array<[unknown, RegExp]> = [
      ['{not json', /not JSON/],
      [[1], /not an object/],
      [{ ...good, experts: [0, 4] }, /experts/],
      [{ ...good, experts: [1, 1] }, /twice/],
      [{ ...good, experts: 'all' }, /experts/],
      [{ ...good, state: 'zombie' }, /state zombie/],
      [{ ...good, throughput: -1 }, /throughput/],
      [{ ...good, version: 'x' }, /version/],
      [{ ...good, layer: -2 }, /layer/],
      [{ ...good, model: 'x'.repeat(300) }, /model/]
    ]
    for (const [v, why] of bad) expect(() => parseExpertRecord(enc(v), 'p', 1, 4)).toThrow(why)
  })
})
