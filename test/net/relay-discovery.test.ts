/**
 * Relays find each other through the DHT (relay/discovery.ts): relays 2 and 3 each name only
 * relay 1 (`--peer-relay`); after a round each, relay 3 has found relay 2 through the DHT, links
 * to it, and lists it in /bootstrap, so a page that knows relay 3 learns all three; the number of
 * links is bounded. The rounds are called by the test (the timer is off: --find-relays-interval 0).
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { parseConfig } from '../../relay/config.ts'
import { RelayFinder, relayAddrOf } from '../../relay/discovery.ts'
import { RelayPeering } from '../../relay/peering.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { until } from './peers-harness.ts'

/** Watchdog of each wait on real sockets (loaded 2-core machine); a passing run never reaches it. */
const WATCHDOG_MS = 120_000

const tmpDirs: string[] = []
const relays: RelayHandle[] = []
afterAll(async () => {
  for (const r of relays) await r.stop()
  for (const d of tmpDirs) await fs.rm(d, { recursive: true, force: true })
})

/** A relay node as RelayFinder and RelayPeering see it, with the DHT queries the test gives; it dials nobody. */
function standIn (self: string, dht: { provide: () => AsyncGenerator<unknown>, findProviders: () => AsyncGenerator<unknown>, routingTable?: { size: number } }): never {
  return {
    peerId: peerIdFromString(self),
    dial: async () => { throw new Error('not dialled in this test') },
    addEventListener: () => {},
    removeEventListener: () => {},
    services: { dht }
  } as never
}

async function relay (args: string[]): Promise<RelayHandle> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-relay-discovery-'))
  tmpDirs.push(dir)
  const r = await startRelay({ ...parseConfig(['--port', '0', '--ice-server', 'none', '--find-relays-interval', '0', ...args], {})!, dataDir: dir, staticDir: dir }, () => {})
  relays.push(r)
  return r
}

const id = (r: RelayHandle): string => r.node.peerId.toString()

describe('relays found through the DHT', () => {
  it('a relay naming one other finds the rest, links to them and lists them in /bootstrap', { timeout: 600_000 }, async () => {
    const r1 = await relay([])
    const r2 = await relay(['--peer-relay', r1.bootstrapAddrs[0]])
    const r3 = await relay(['--peer-relay', r1.bootstrapAddrs[0]])
    // Each DHT needs a server to ask: relay 1 in both routing tables.
    // (routingTable is kad-dht's, outside its public type.)
    const tableSize = (r: RelayHandle): number => (r.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
    await until('relays 2 and 3 have relay 1 in their DHT routing table', () => [r2, r3].every(r => tableSize(r) > 0), WATCHDOG_MS)
    expect(r3.peering.knows(id(r2))).toBe(false)

    expect(await r2.finder.round()).toEqual([]) // provides; relay 1 is all it finds, and known
    const found = await r3.finder.round()
    expect(found.map(a => multiaddr(a).getComponents().findLast(c => c.name === 'p2p')?.value)).toEqual([id(r2)])
    await until('relay 3 linked to relay 2', () => r3.peering.connected().includes(id(r2)), WATCHDOG_MS)

    const boot = await (await fetch(`${r3.httpUrl}/bootstrap`, { signal: AbortSignal.timeout(WATCHDOG_MS) })).json() as { multiaddrs: string[] }
    const listed = new Set(boot.multiaddrs.map(a => multiaddr(a).getComponents().findLast(c => c.name === 'p2p')?.value))
    expect(listed).toEqual(new Set([id(r1), id(r2), id(r3)]))
    // A second round finds nothing new.
    expect(await r3.finder.round()).toEqual([])
  })

  it('links to at most maxLinks relays, skips itself, known relays and providers without a websocket address', async () => {
    const self = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    const ids = ['12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp', '12D3KooWHiPAyWeWrQbMBrWiA1TfMw7DT32y8dy7xvuXa3UtfmfL']
    const info = (pid: string, addrs: string[]): { id: ReturnType<typeof peerIdFromString>, multiaddrs: ReturnType<typeof multiaddr>[] } => ({ id: peerIdFromString(pid), multiaddrs: addrs.map(a => multiaddr(a)) })
    const providers = [
      info(self, ['/ip4/127.0.0.1/tcp/9000/ws']),
      info(ids[0], ['/ip4/127.0.0.1/tcp/9001/ws']),
      info('12D3KooWLc4XsNvBNf6zhmuEFeNHAqgDzpsdrRm8kV9DmnhT4qBx', ['/ip4/127.0.0.1/udp/9/webrtc-direct']), // no websocket address
      info(ids[1], ['/ip4/127.0.0.1/tcp/9002/ws']),
      info(ids[2], ['/ip4/127.0.0.1/tcp/9003/ws'])
    ]
    const node = standIn(self, {
      provide: async function * () {},
      findProviders: async function * () { yield { name: 'PROVIDER', providers } }
    })
    const peering = new RelayPeering(node, [`/ip4/127.0.0.1/tcp/9001/ws/p2p/${ids[0]}`], () => {})
    const finder = new RelayFinder(node, peering, { maxLinks: 2, intervalMs: 0 })
    // Known: ids[0] (configured). New: ids[1], up to the bound of 2 links; ids[2] is left out.
    expect(await finder.round()).toEqual([`/ip4/127.0.0.1/tcp/9002/ws/p2p/${ids[1]}`])
    expect(peering.addrs()).toEqual([`/ip4/127.0.0.1/tcp/9001/ws/p2p/${ids[0]}`, `/ip4/127.0.0.1/tcp/9002/ws/p2p/${ids[1]}`])
    expect(relayAddrOf(providers[2] as never)).toBeUndefined()
    finder.stop()
  })

  it('a lone relay logs a failing query once per failing stretch, not every round', async () => {
    const self = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    let failing = true
    const timeout = (): never => { throw Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }) }
    const node = standIn(self, {
      provide: async function * () { if (failing) timeout() },
      findProviders: async function * () { if (failing) timeout() }
    })
    const lines: string[] = []
    const finder = new RelayFinder(node, new RelayPeering(node, [], () => {}), { intervalMs: 0, log: l => lines.push(l) })
    for (let i = 0; i < 3; i++) await finder.round()
    expect(lines).toHaveLength(2) // providing, looking up: once each over three rounds
    expect(lines[0]).toMatch(/providing .* failed: The operation was aborted due to timeout/)
    expect(lines[1]).toMatch(/looking up .* failed/)
    failing = false
    await finder.round() // both succeed: the next failure is news again
    failing = true
    await finder.round()
    expect(lines).toHaveLength(4)
    finder.stop()
  })

  it('a relay with no DHT peer at all (npm start alone) logs nothing for its timed-out queries; once it has one, a failure is logged', async () => {
    const self = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    const timeout = (): never => { throw Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }) }
    const routingTable = { size: 0 }
    const node = standIn(self, {
      provide: async function * () { timeout() },
      findProviders: async function * () { timeout() },
      routingTable
    })
    const lines: string[] = []
    const finder = new RelayFinder(node, new RelayPeering(node, [], () => {}), { intervalMs: 0, log: l => lines.push(l) })
    for (let i = 0; i < 3; i++) await finder.round()
    expect(lines).toEqual([])
    routingTable.size = 1 // another relay linked: its queries failing is news
    await finder.round()
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/providing .* failed: The operation was aborted due to timeout/)
    finder.stop()
  })
})
