/**
 * Reservations need an identity stamp by default (relay --reservation-pow-bits, on at
 * DEFAULT_RESERVATION_POW_BITS): a peer started like a page — joinSwarm with the relay's
 * `/bootstrap` URL, which tells it the difficulty — mints its stamp and presents it on
 * connecting, and gets its reservation; a stampless peer, and a peer that presents none, are
 * refused and counted. Tests use a low cost (10 bits).
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { joinSwarm, type Swarm } from '../../web/src/net/index.ts'
import { createRelay } from '../../web/src/net/node.ts'
import { DEFAULT_RESERVATION_POW_BITS } from '../../web/src/net/pow.ts'
import { bareRelayClient, relayMetric } from '../helpers/relay-client.ts'
import { until } from './peers-harness.ts'

const cleanup: Array<() => Promise<void>> = []
afterAll(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}) })

/** Watchdog of each wait (real sockets on a loaded 2-core machine); a passing run never reaches it. */
const WAIT_MS = 30_000
const REFUSED = 'webswarm_relay_refused_total{reason="reservation-without-stamp"}'

async function relayWith (args: string[]): Promise<RelayHandle> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-stamp-'))
  const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', ...args], {})!, () => {})
  cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
  return relay
}

async function join (init: Parameters<typeof joinSwarm>[0]): Promise<Swarm> {
  const s = await joinSwarm({ persist: false, iceServers: [], targetPeers: 0, log: () => {}, ...init })
  cleanup.push(async () => { await s.stop() })
  return s
}

describe('relay reservations need an identity stamp by default', () => {
  it('is on by default, and /bootstrap tells peers the difficulty', async () => {
    expect(parseConfig([], {})!.reservationPowBits).toBe(DEFAULT_RESERVATION_POW_BITS)
    expect(DEFAULT_RESERVATION_POW_BITS).toBeGreaterThan(0)
    const relay = await relayWith(['--reservation-pow-bits', '10'])
    const info = await (await fetch(`${relay.httpUrl}/bootstrap`)).json() as { reservationPowBits: number }
    expect(info.reservationPowBits).toBe(10)
  })

  it('a peer joining like a page presents its stamp and reserves; a stampless client and a peer presenting none are refused, counted', async () => {
    const relay = await relayWith(['--reservation-pow-bits', '10'])
    const held = (id: string): boolean => [...relay.node.services.relay.reservations.keys()].some(p => p.toString() === id)

    // A page-like peer: bootstrap from the relay's /bootstrap (difficulty included).
    const page = await join({ bootstrapUrl: `${relay.httpUrl}/bootstrap` })
    await page.peers.ready(WAIT_MS)
    expect(held(page.peerId)).toBe(true)
    expect(relay.admission.isStamped(page.peerId)).toBe(true)

    // A bare client that knows nothing of stamps.
    const bare = await bareRelayClient(undefined, [`${relay.bootstrapAddrs[0]}/p2p-circuit`]).catch((e: Error) => e)
    if (!(bare instanceof Error)) cleanup.push(async () => { await bare.stop() })
    await until('the stampless reservation refused', async () => await relayMetric(relay.httpUrl, REFUSED) >= 1, WAIT_MS)
    expect(bare instanceof Error || !held(bare.peerId.toString())).toBe(true)

    // A swarm peer told to present no stamp: refused the same way, however long it waits.
    const none = await join({ bootstrap: [relay.bootstrapAddrs[0]], reservationPowBits: 0 })
    await until('its reservation refused', async () => await relayMetric(relay.httpUrl, REFUSED) >= 2, WAIT_MS)
    expect(held(none.peerId)).toBe(false)
    expect(held(page.peerId)).toBe(true)
  })

  it('a relay that takes no stamps (no /webswarm/pow/1.0.0: a plain libp2p relay) still gets our reservation ask', async () => {
    // A stamp that cannot be shown there is not a refusal: before this, every ask waited for a
    // stamp the relay could never take, and the peer reserved only if libp2p's own discovery did.
    const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
    cleanup.push(async () => { await relay.stop() })
    const lines: string[] = []
    const peer = await join({ bootstrap: [relay.getMultiaddrs()[0].toString()], reservationPowBits: 10, log: (l) => { lines.push(l) } })
    await peer.peers.ready(WAIT_MS)
    expect([...relay.services.relay.reservations.keys()].map(String)).toContain(peer.peerId)
    expect(lines.filter(l => /stamp not accepted|refused the identity stamp/.test(l))).toEqual([])
  })
})
