import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig, type RelayConfig } from '../../relay/config.ts'
import { PEER_RELAY_BACKOFF_INITIAL_MS, PEER_RELAY_BACKOFF_MAX_MS, RelayPeering } from '../../relay/peering.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import type { RelayNode } from '../../web/src/net/node.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { NetConfigError } from '../../web/src/net/errors.ts'
import { joinSwarm, type Swarm } from '../../web/src/net/index.ts'
import type { SwarmDoc } from '../../web/src/net/crdt/swarm-doc.ts'
import { until } from './peers-harness.ts'

/**
 * Watchdog of every wait on relays and peers, ms. Real sockets on real time: idle, each wait
 * takes well under a few seconds (a sync at link-up, anti-entropy every 5 s); on the loaded
 * 2-core machine 20 s bounds were hit in relay.test.ts. A passing run never waits for it.
 */
const WATCHDOG_MS = 120_000
/** The whole scenario: several such waits in a row. */
const TEST_MS = 600_000

const tmpDirs: string[] = []
async function tmp (): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-relays-test-'))
  tmpDirs.push(d)
  return d
}
afterAll(async () => { for (const d of tmpDirs) await fs.rm(d, { recursive: true, force: true }) })

const quiet = (): void => {}

async function relayConfig (args: string[]): Promise<RelayConfig> {
  const dir = await tmp()
  return { ...parseConfig(['--port', '0', '--ice-server', 'none', ...args], {})!, dataDir: dir, staticDir: dir }
}

/** Relay ids this peer holds a reservation on (its /p2p-circuit addresses name them). */
function reservedOn (s: Swarm): Set<string> {
  const out = new Set<string>()
  for (const a of s.node.getMultiaddrs()) {
    const parts = a.toString().split('/p2p-circuit')[0].split('/p2p/')
    if (a.toString().includes('/p2p-circuit') && parts.length > 1) out.add(parts[1])
  }
  return out
}

async function hasEntries (doc: SwarmDoc, peers: Swarm[]): Promise<boolean> {
  const entries = await doc.peers()
  return peers.every(p => entries.get(p.peerId)?.data.name === p.peerId)
}

describe('relay config: --peer-relay', () => {
  it('takes repeated flags or PEER_RELAYS, and refuses a malformed address naming it', () => {
    const id = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
    const a = `/ip4/127.0.0.1/tcp/9001/ws/p2p/${id}`
    const b = `/ip4/127.0.0.1/tcp/9002/ws/p2p/${id}`
    expect(parseConfig(['--peer-relay', a, '--peer-relay', b], {})!.peerRelays).toEqual([a, b])
    expect(parseConfig([], { PEER_RELAYS: `${a}, ${b}` })!.peerRelays).toEqual([a, b])
    expect(parseConfig([], {})!.peerRelays).toEqual([])
    expect(() => parseConfig(['--peer-relay', 'relay2.example:8080'], {})).toThrow(NetConfigError)
    expect(() => parseConfig(['--peer-relay', 'relay2.example:8080'], {})).toThrow(/--peer-relay "relay2\.example:8080" is not a multiaddr/)
    // Without the id a redial could not tell the relay from a stranger at the same address.
    expect(() => parseConfig([], { PEER_RELAYS: '/ip4/127.0.0.1/tcp/9001/ws' })).toThrow(/--peer-relay "\/ip4\/127\.0\.0\.1\/tcp\/9001\/ws" must end in \/p2p\/<relay peer id>/)
  })
})

describe('RelayPeering redial', () => {
  it('redials a failed or dropped peer relay with doubling delays on its clock, capped', async () => {
    const other = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
    const self = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    let dials = 0
    let failing = true
    const target = new EventTarget()
    const node = {
      peerId: peerIdFromString(self),
      dial: async () => { dials++; if (failing) throw new Error('refused') },
      addEventListener: target.addEventListener.bind(target),
      removeEventListener: target.removeEventListener.bind(target)
    } as unknown as RelayNode
    const clock = new ManualClock()
    const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }
    // Our own address in the shared list is skipped.
    const peering = new RelayPeering(node, [`/ip4/127.0.0.1/tcp/1/ws/p2p/${other}`, `/ip4/127.0.0.1/tcp/2/ws/p2p/${self}`], () => {}, clock)
    peering.start()
    await settle()
    expect(dials).toBe(1)
    clock.advance(PEER_RELAY_BACKOFF_INITIAL_MS - 1)
    await settle()
    expect(dials).toBe(1)
    clock.advance(1)
    await settle()
    expect(dials).toBe(2)
    clock.advance(2 * PEER_RELAY_BACKOFF_INITIAL_MS)
    await settle()
    expect(dials).toBe(3)
    for (let i = 0; i < 10; i++) { clock.advance(PEER_RELAY_BACKOFF_MAX_MS); await settle() }
    expect(clock.nextDue()! - clock.now()).toBeLessThanOrEqual(PEER_RELAY_BACKOFF_MAX_MS)
    failing = false
    clock.advance(PEER_RELAY_BACKOFF_MAX_MS)
    await settle()
    expect(peering.connected()).toEqual([other])
    expect(clock.pending).toBe(0)
    // The link drops: redialled after the first delay again (the failures were reset).
    const before = dials
    target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(other) }))
    expect(peering.connected()).toEqual([])
    clock.advance(PEER_RELAY_BACKOFF_INITIAL_MS)
    await settle()
    expect(dials).toBe(before + 1)
    expect(peering.connected()).toEqual([other])
    peering.stop()
  })
})

describe('several relays', { timeout: TEST_MS }, () => {
  const relays: RelayHandle[] = []
  const swarms: Swarm[] = []
  afterAll(async () => {
    for (const s of swarms) await s.stop()
    for (const r of relays) await r.stop()
  })

  it('replicate the swarm doc between them; a relay restarted empty gets it back; a peer on several re-reserves elsewhere when one dies', async () => {
    const relay2 = await startRelay(await relayConfig([]), quiet)
    relays.push(relay2)
    const addr2 = relay2.bootstrapAddrs[0]
    const relay1 = await startRelay(await relayConfig(['--peer-relay', addr2]), quiet)
    const relay3 = await startRelay(await relayConfig(['--peer-relay', addr2]), quiet)
    relays.push(relay1, relay3)
    const addr1 = relay1.bootstrapAddrs[0]
    const id = (r: RelayHandle): string => r.node.peerId.toString()
    await until('relays 1 and 3 linked to relay 2', () => relay1.peering.connected().includes(id(relay2)) && relay3.peering.connected().includes(id(relay2)), WATCHDOG_MS)

    // Before any peer exists, so only the relays' link can carry it: each relay's write reaches the other.
    const doc1 = relay1.swarms.get('default')!.sdoc
    const doc2 = relay2.swarms.get('default')!.sdoc
    doc1.map('runs').set('from-relay-1', true)
    doc2.map('runs').set('from-relay-2', true)
    await until('relays 1 and 2 hold each other\'s writes', () => doc2.map('runs').get('from-relay-1') === true && doc1.map('runs').get('from-relay-2') === true, WATCHDOG_MS)

    // /bootstrap of relay 1 names relay 2 too, so a page learns every relay from one.
    const boot = await (await fetch(`${relay1.httpUrl}/bootstrap`, { signal: AbortSignal.timeout(WATCHDOG_MS) })).json() as { multiaddrs: string[] }
    expect(boot.multiaddrs).toContain(addr2)

    // A only on relay 1, B only on relay 2 (targetPeers 0: no WebRTC links of their own; a DHT
    // lookup may still connect them, so the relay-only proof is the writes above and relay 1').
    // C knows all three relays.
    const join = async (bootstrap: string[]): Promise<Swarm> => {
      const s = await joinSwarm({ bootstrap, iceServers: [], targetPeers: 0, persist: false, log: quiet })
      swarms.push(s)
      await s.peers.ready(WATCHDOG_MS)
      await s.setSelf({ name: s.peerId })
      return s
    }
    const a = await join([addr1])
    const b = await join([addr2])
    const c = await join([addr1, addr2, relay3.bootstrapAddrs[0]])
    await until('A sees B and B sees A', async () => await hasEntries(a.doc, [b]) && await hasEntries(b.doc, [a]), WATCHDOG_MS)
    // Two reservations, not three: the cap (node.ts MAX_RELAY_RESERVATIONS).
    await until('C reserved on two relays', () => reservedOn(c).size === 2, WATCHDOG_MS)

    // One of C's relays other than relay 2 dies: C re-reserves on the relay it did not use.
    const victim = [relay1, relay3].find(r => reservedOn(c).has(id(r)))!
    const others = new Set([relay1, relay2, relay3].filter(r => r !== victim).map(id))
    await victim.stop()
    await until('C re-reserved on the remaining two relays', () => reservedOn(c).size === 2 && !reservedOn(c).has(id(victim)), WATCHDOG_MS)
    expect(reservedOn(c)).toEqual(others)

    // Relay 1 dies (if it was not the victim); 1' starts with an empty data dir (a new identity)
    // peered with relay 2 only: it gets every entry back from relay 2.
    await relay1.stop()
    const relay1b = await startRelay(await relayConfig(['--peer-relay', addr2]), quiet)
    relays.push(relay1b)
    expect((await relay1b.swarms.get('default')!.sdoc.peers()).size).toBe(0)
    const doc1b = relay1b.swarms.get('default')!.sdoc
    await until('relay 1\' has A\'s, B\'s and C\'s entries back', async () => await hasEntries(doc1b, [a, b, c]), WATCHDOG_MS)
    expect(doc1b.map('runs').get('from-relay-1')).toBe(true)
    // C keeps its reservation on relay 2 throughout.
    expect(reservedOn(c).has(id(relay2))).toBe(true)
    expect(relay2.node.services.relay.reservations.has(c.node.peerId)).toBe(true)
  })
})
