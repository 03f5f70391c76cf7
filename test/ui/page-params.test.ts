import { describe, expect, it } from 'vitest'
import { PEER_ENTRY_TTL_MS } from '../../web/src/net/crdt/entries.ts'
import { PAGE_ENTRY_TTL_MS, readPageParams } from '../../web/src/ui/context.ts'
import { PageParamError } from '../../web/src/ui/errors.ts'

describe('page parameters', () => {
  it('defaults: the relay is the page origin, the model its models/default', () => {
    const p = readPageParams('http://127.0.0.1:8080/?x=1')
    expect(p.relayUrl).toBe('http://127.0.0.1:8080/')
    expect(p.bootstrapUrl).toBe('http://127.0.0.1:8080/bootstrap')
    expect(p.relayGiven).toBe(false)
    expect(p.modelUrl).toBe('http://127.0.0.1:8080/models/default')
    expect(p.modelId).toBe('default')
    expect(p.device).toBe('auto')
    expect(p.entryTtlMs).toBe(PAGE_ENTRY_TTL_MS)
    expect(PAGE_ENTRY_TTL_MS).toBeLessThan(PEER_ENTRY_TTL_MS)
    expect(p.maxGpuMemory).toBeUndefined()
  })

  it('?relay= joins another relay and loads models from it; ?model= stays relative to the page', () => {
    const p = readPageParams('https://static.example.org/app/?relay=https://relay.example.org/sub&device=cpu')
    expect(p.relayUrl).toBe('https://relay.example.org/sub/')
    expect(p.bootstrapUrl).toBe('https://relay.example.org/sub/bootstrap')
    expect(p.modelUrl).toBe('https://relay.example.org/sub/models/default')
    expect(p.device).toBe('cpu')
    const q = readPageParams('https://static.example.org/app/?relay=https://relay.example.org/&model=./models/tiny/')
    expect(q.modelUrl).toBe('https://static.example.org/app/models/tiny')
    expect(q.modelId).toBe('tiny')
  })

  it('?entry-ttl=, ?max-gpu-memory= and ?hedge-floor= parse; malformed values are refused with the reason', () => {
    const p = readPageParams('http://h/?entry-ttl=6&max-gpu-memory=2GB')
    expect(p.entryTtlMs).toBe(6000)
    expect(p.maxGpuMemory).toBe(2e9)
    expect(p.hedgeFloorMs).toBeUndefined()
    expect(readPageParams('http://h/?hedge-floor=10000').hedgeFloorMs).toBe(10_000)
    expect(p.trainCodec).toBe('q8')
    expect(readPageParams('http://h/?train-codec=sparseloco').trainCodec).toBe('sparseloco')
    for (const bad of ['?train-codec=zstd', '?train-codec=', '?entry-ttl=1', '?entry-ttl=x', '?entry-ttl=100000', '?relay=ftp://x/', '?relay=http://[', '?hedge-floor=0', '?hedge-floor=1.5', '?hedge-floor=999999', '?hedge-floor=x']) {
      expect(() => readPageParams(`http://h/${bad}`), bad).toThrow(PageParamError)
    }
  })
})
