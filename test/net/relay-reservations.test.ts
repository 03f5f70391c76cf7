/**
 * Reservations on the relay as `npm start` runs it (relay/main.ts → startRelay(parseConfig)), with
 * Node peers joined like the CLI's (net/swarm.ts). Found while testing DiLoCo training: peers that
 * had left kept their reservations for the 2 h TTL (filling --max-reservations, so newcomers were
 * refused) and stayed in the relay's DHT, so newcomers dialled them through the relay forever and
 * logged NO_RESERVATION every 10 s.
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { dialThroughRelay, isNoReservation, joinSwarm, type Swarm } from '../../web/src/net/index.ts'
import { createRelay, type RelayNode } from '../../web/src/net/node.ts'
import { GONE_AFTER_NO_RESERVATION, swarmRendezvousCid } from '../../web/src/net/peers.ts'
import { until } from './peers-harness.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

const cleanup: Array<() => Promise<void>> = []

/** Adds to `into` the peers the relay's DHT lists as providers of the default swarm's rendezvous key. */
async function relayProviders (relay: RelayHandle | RelayNode, into: Set<string>): Promise<void> {
  const cid = await swarmRendezvousCid('default')
  const node = 'bootstrapAddrs' in relay ? relay.node : relay
  try {
    for await (const ev of node.services.dht.findProviders(cid, { signal: AbortSignal.timeout(1_000) })) {
      if (ev.name === 'PROVIDER') for (const p of ev.providers) into.add(p.id.toString())
    }
  } catch { /* the query times out walking absent peers; the local records came first */ }
}
afterAll(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}) })

async function relayLikeMain (args: string[]): Promise<RelayHandle> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-resv-'))
  const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', ...args], {})!, () => {})
  cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
  return relay
}

async function join (relay: RelayHandle, lines: string[] = []): Promise<Swarm> {
  const s = await joinSwarm({ bootstrap: [relay.bootstrapAddrs[0]], persist: false, iceServers: [], log: (l) => { lines.push(l) } })
  cleanup.push(async () => { await s.stop() })
  await s.peers.ready()
  return s
}

describe('relay reservations (relay started as relay/main.ts starts it)', () => {
  it('forgets departed peers (reservations and swarm provider records); newcomers reserve and reach each other', async () => {
    const relay = await relayLikeMain(['--max-reservations', '2'])
    const reservations = (): number => relay.node.services.relay.reservations.size
    const boot = relay.bootstrapAddrs[0]

    // Two peers come and go (two earlier `webswarm train` runs).
    const old = [await join(relay), await join(relay)]
    expect(reservations()).toBe(2)
    const oldIds = old.map(s => s.peerId)
    // They announced themselves in the relay's DHT (the swarm's rendezvous key) before leaving.
    const seen = new Set<string>()
    await until('the peers\' provider records', async () => { await relayProviders(relay, seen); return oldIds.every(id => seen.has(id)) }, 15_000, 200)
    for (const s of old) await s.stop()
    await until('the relay to drop the departed peers\' reservations', () => reservations() === 0, 5_000)
    await until('the relay to drop their provider records', async () => {
      const now = new Set<string>()
      await relayProviders(relay, now)
      return !oldIds.some(id => now.has(id))
    }, 5_000, 200)

    // Two newcomers: before the fix both slots were still taken and they were refused.
    const a = await join(relay)
    const b = await join(relay)
    expect(reservations()).toBe(2)

    // A departed peer answers NO_RESERVATION (after dialThroughRelay's bounded retries); a live one connects.
    const t0 = Date.now()
    const err = await dialThroughRelay(a.node, boot, oldIds[0], { noReservationRetries: 2 }).then(() => undefined, (e: Error) => e)
    expect(isNoReservation(err)).toBe(true)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250 + 500)
    const conn = await dialThroughRelay(a.node, boot, b.peerId, { signal: AbortSignal.timeout(20_000) })
    expect(conn.remotePeer.toString()).toBe(b.peerId)
  }, 60_000)

  it('the peer manager stops dialling a departed peer it still finds in a DHT', async () => {
    // createRelay alone keeps provider records (startRelay's forgetting is off): the departed
    // peer stays discoverable, as it does through any DHT node that has not heard it left.
    const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
    cleanup.push(async () => { await relay.stop() })
    const boot = relay.getMultiaddrs()[0].toString()
    const joinBare = async (lines: string[] = []): Promise<Swarm> => {
      const s = await joinSwarm({ bootstrap: [boot], persist: false, iceServers: [], log: (l) => { lines.push(l) } })
      cleanup.push(async () => { await s.stop() })
      await s.peers.ready()
      return s
    }
    const old = await joinBare()
    const seen = new Set<string>()
    await until('the peer\'s provider record', async () => { await relayProviders(relay, seen); return seen.has(old.peerId) }, 15_000, 200)
    await old.stop()
    const lines: string[] = []
    const a = await joinBare(lines)
    const b = await joinBare()
    await until('A to give up on the departed peer', () => lines.some(l => l.includes(old.peerId) && l.includes('treated as gone')), 30_000, 100)
    expect(lines.filter(l => l.includes(old.peerId) && l.includes('NO_RESERVATION')).length).toBeLessThanOrEqual(GONE_AFTER_NO_RESERVATION)
    expect(a.peers.knownPeers()).not.toContain(old.peerId)
    await until('A and B linked directly', () => a.peers.directPeers().includes(b.peerId), 20_000, 100)
  }, 60_000)

  it('a peer that lost its relay connection reserves again and is reached through the relay meanwhile', async () => {
    const relay = await relayLikeMain([])
    const boot = relay.bootstrapAddrs[0]
    const a = await join(relay)
    const b = await join(relay)
    for (const c of b.node.getConnections(relay.node.peerId)) await c.close()
    for (const c of a.node.getConnections(b.node.peerId)) await c.close()
    // Dialled at once: B is redialling the relay and reserving; NO_RESERVATION is retried meanwhile.
    // A relay that reaches B while B's new link is still being set up answers MALFORMED_MESSAGE
    // (its hop handler's catch-all; fresh-clone CI at load 28): two more attempts ride that out.
    const conn = await dialThroughRelay(a.node, boot, b.peerId, { noReservationRetries: 6, attempts: 4, signal: AbortSignal.timeout(90_000) })
    expect(conn.remotePeer.toString()).toBe(b.peerId)
    expect(relay.node.services.relay.reservations.has(b.node.peerId)).toBe(true)
  }, 150_000)
})

describe('dialThroughRelay', () => {
  const noReservation = (): Error => new Error('failed to connect via relay with status NO_RESERVATION')
  const fakeNode = (fail: Array<() => Error>) => {
    const calls: number[] = []
    const t0 = Date.now()
    return {
      calls,
      node: {
        dial: async () => {
          calls.push(Date.now() - t0)
          const f = fail.shift()
          if (f !== undefined) throw f()
          return { remotePeer: 'ok' } as never
        }
      }
    }
  }
  const relay = '/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWGmfA3voCBDgETJAgfhJu3H75Pf74QZP3Gh5qg9gJS13v'
  const peer = '12D3KooWQ4zWAkBMop6xJFbS1eiBxCYt4dHCPXyLjuNrzJKmqcfp'

  it('retries NO_RESERVATION with backoff, other failures at once, and gives up with the last error', async () => {
    const ok = fakeNode([noReservation, noReservation, () => new Error('ICE failed')])
    await dialThroughRelay(ok.node, relay, peer)
    expect(ok.calls).toHaveLength(4)
    expect(ok.calls[1] - ok.calls[0]).toBeGreaterThanOrEqual(240)
    expect(ok.calls[2] - ok.calls[1]).toBeGreaterThanOrEqual(490)
    const gone = fakeNode([noReservation, noReservation])
    await expect(dialThroughRelay(gone.node, relay, peer, { noReservationRetries: 1 })).rejects.toThrow(/NO_RESERVATION/)
    expect(gone.calls).toHaveLength(2)
    const broken = fakeNode([() => new Error('ICE failed'), () => new Error('ICE failed again')])
    await expect(dialThroughRelay(broken.node, relay, peer)).rejects.toThrow('ICE failed again')
    const ac = new AbortController()
    const slow = fakeNode([noReservation, noReservation])
    // cancelled during the backoff after the first NO_RESERVATION (a ManualClock holds it: not a
    // race between a 50 ms abort and the 250 ms backoff that a stalled machine could lose)
    const clock = new ManualClock()
    const p = dialThroughRelay(slow.node, relay, peer, { signal: ac.signal, clock })
    await until('the backoff after NO_RESERVATION', () => clock.pending === 1)
    ac.abort(new Error('cancelled'))
    await expect(p).rejects.toThrow('cancelled')
    expect(slow.calls).toHaveLength(1)
  })

  it('recognises NO_RESERVATION inside wrapped and aggregate errors only', () => {
    expect(isNoReservation(new Error('x', { cause: noReservation() }))).toBe(true)
    expect(isNoReservation(new AggregateError([new Error('a'), noReservation()], 'All multiaddr dials failed'))).toBe(true)
    expect(isNoReservation(new Error('failed to connect via relay with status PERMISSION_DENIED'))).toBe(false)
    expect(isNoReservation('NO_RESERVATION')).toBe(false)
  })
})
