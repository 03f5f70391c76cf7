/**
 * The relay's capacity limits (relay/limits.ts): past `--max-reservations` a newcomer's
 * reservation is refused while a held one stays; past `--max-connections` a newcomer's connection
 * is refused at the handshake; each refusal counted in /metrics by reason. Bad values are refused
 * at start, naming the flag.
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { parseConfig } from '../../relay/config.ts'
import { RelayAdmission } from '../../relay/limits.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { NetConfigError } from '../../web/src/net/errors.ts'
import { bareRelayClient, relayMetric } from '../helpers/relay-client.ts'
import { until } from './peers-harness.ts'

const cleanup: Array<() => Promise<void>> = []
afterAll(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}) })

/** Watchdog of each wait (real sockets on a loaded 2-core machine); a passing run never reaches it. */
const WAIT_MS = 30_000

async function relayWith (args: string[]): Promise<RelayHandle> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-capacity-'))
  const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', '--reservation-pow-bits', '0', ...args], {})!, () => {})
  cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
  return relay
}

/** A bare client, listening on the relay's circuit when `listen` is given; stopped after the file. */
async function client (listen: string[] = []): Promise<Libp2p> {
  const node = await bareRelayClient(undefined, listen)
  cleanup.push(async () => { await node.stop() })
  return node
}

const metric = async (relay: RelayHandle, line: string): Promise<number> => await relayMetric(relay.httpUrl, line, WAIT_MS)

describe('relay capacity limits', () => {
  it('refuses reservations past --max-reservations and connections past --max-connections, counting each', async () => {
    const relay = await relayWith(['--max-reservations', '1', '--max-connections', '2', '--max-conns-per-ip', '0'])
    const circuit = `${relay.bootstrapAddrs[0]}/p2p-circuit`

    // 1. A reserves; B's reservation is refused (counted); A keeps its own.
    const a = await client([circuit])
    await until('A\'s reservation', () => relay.node.services.relay.reservations.has(a.peerId), WAIT_MS)
    const b = await client([circuit]).catch((e: Error) => e)
    await until('a reservation refused as full', async () => await metric(relay, 'webswarm_relay_refused_total{reason="reservations-full"}') >= 1, WAIT_MS)
    expect(relay.node.services.relay.reservations.size).toBe(1)
    expect(relay.node.services.relay.reservations.has(a.peerId)).toBe(true)
    expect(b instanceof Error || !relay.node.services.relay.reservations.has(b.peerId)).toBe(true)
    // B's node gives up (its start fails on the refused listener) and closes: wait for that, then
    // fill the second slot.
    const bAlive = b instanceof Error ? 0 : 1
    await until('B settled', () => relay.node.getConnections().filter(x => !x.remotePeer.equals(a.peerId)).length === bAlive && relay.admission.openConnections === 1 + bAlive, WAIT_MS)
    if (bAlive === 0) await (await client()).dial(multiaddr(relay.bootstrapAddrs[0]), { signal: AbortSignal.timeout(WAIT_MS) })
    await until('two connections open at the relay', () => relay.admission.openConnections === 2, WAIT_MS)

    // 2. Two connections open (A, B): a third is refused at the handshake (counted).
    const c = await client()
    const third = await c.dial(multiaddr(relay.bootstrapAddrs[0]), { signal: AbortSignal.timeout(WAIT_MS) }).then(() => 'open', () => 'refused')
    expect(third).toBe('refused')
    expect(await metric(relay, 'webswarm_relay_refused_total{reason="connections-full"}')).toBeGreaterThanOrEqual(1)

    // 3. A leaves: its slot and its reservation free up, and a newcomer gets both.
    await a.stop()
    await until('A\'s connection and reservation gone', () => relay.admission.openConnections < 2 && relay.node.services.relay.reservations.size === 0, WAIT_MS)
    const d = await client([circuit])
    await until('D\'s reservation', () => relay.node.services.relay.reservations.has(d.peerId), WAIT_MS)
  }, 120_000)

  it('refuses bad capacity values at start, naming them', () => {
    expect(parseConfig([], {})!.maxConnections).toBe(1000)
    expect(parseConfig(['--max-connections', '0'], {})!.maxConnections).toBe(0)
    expect(() => parseConfig(['--max-connections', '-1'], {})).toThrow(/--max-connections/)
    expect(() => parseConfig([], { MAX_CONNECTIONS: 'lots' })).toThrow(/--max-connections/)
    const refuse = (): void => {}
    expect(() => new RelayAdmission({ maxConnsPerIp: 0, maxConnections: 1.5, reservationPowBits: 0, maxStamped: 1, onRefused: refuse })).toThrow(NetConfigError)
    expect(() => new RelayAdmission({ maxConnsPerIp: 0, maxReservations: -1, reservationPowBits: 0, maxStamped: 1, onRefused: refuse })).toThrow(/maxReservations must be an integer ≥ 0, got -1/)
  })
})
