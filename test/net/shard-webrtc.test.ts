/**
 * Shard download over real libp2p: a relay (kad-dht server) and four Node peers on 127.0.0.1.
 * Three providers announce the root as DHT provider records; the fetcher finds them through the
 * DHT, downloads over direct WebRTC from all three in parallel, and one provider is stopped midway.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RelayNode, WebSwarmNode } from '../../web/src/net/node.ts'
import { contentRoutingDirectory, fetchShard, MemoryShardStore, serveShards } from '../../web/src/net/shard/index.ts'
import { connectDirect, startPeer, startRelay } from './stream-peers.ts'
import { patternBytes } from './stream-harness.ts'

const MiB = 1024 * 1024

let relay: RelayNode
let relayAddr: Multiaddr
let fetcher: WebSwarmNode
let providers: WebSwarmNode[]

beforeAll(async () => {
  ({ relay, addr: relayAddr } = await startRelay())
  fetcher = await startPeer(relayAddr)
  providers = []
  for (let i = 0; i < 3; i++) providers.push(await startPeer(relayAddr))
  // The swarm layer keeps direct WebRTC links (NET-A's peers.ts); here we make them explicitly.
  for (const p of providers) await connectDirect(fetcher, p, relayAddr)
})

/** Stopping nodes whose WebRTC streams are mid-close can take long; teardown waits this much at most. */
const TEARDOWN_MS = 5000

afterAll(async () => {
  const stops = Promise.allSettled([fetcher, ...providers, relay].map(async n => { await n?.stop() }))
  await Promise.race([stops, new Promise(resolve => setTimeout(resolve, TEARDOWN_MS))])
})

describe('shards over WebRTC', () => {
  it('downloads 24 MiB from 3 providers found in the DHT; one is stopped midway and its chunks come from the others', async () => {
    const file = patternBytes(24 * MiB, 2024)
    let root = ''
    for (const p of providers) {
      const store = new MemoryShardStore()
      root = await store.addFile(file)
      await serveShards(p, store)
      await contentRoutingDirectory(p).provide(root, { signal: AbortSignal.timeout(15_000) })
    }
    const directory = contentRoutingDirectory(fetcher)
    const found = await directory.findProviders(root, { signal: AbortSignal.timeout(15_000) })
    expect(new Set(found.map(String))).toEqual(new Set(providers.map(p => p.peerId.toString())))

    const victim = providers[1]
    let stopped: Promise<void> | undefined
    const lines: string[] = []
    const store = new MemoryShardStore()
    const res = await fetchShard(fetcher, root, {
      directory,
      store,
      chunkIdleMs: 3000,
      log: l => lines.push(l),
      onProgress: (done) => { if (done === 6 && stopped === undefined) stopped = Promise.resolve(victim.stop()) }
    })
    expect(stopped).toBeDefined() // stopping is not awaited: a stopping node may take long to close its streams
    const got = store.assemble(root)
    expect(got).toBeDefined()
    // Buffer.equals: vitest's deep equality walks 24 Mi elements one by one (tens of seconds)
    expect(Buffer.from(got as Uint8Array).equals(file)).toBe(true)
    const counts = providers.map(p => res.fetchedFrom.get(p.peerId.toString()) ?? 0)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(24)
    expect(counts[0]).toBeGreaterThan(0)
    expect(counts[2]).toBeGreaterThan(0)
    expect(counts[1]).toBeLessThan(24 / 2) // it served some before it went away, not its share after
    expect(lines.some(l => l.includes(victim.peerId.toString()))).toBe(true)
  })
})
