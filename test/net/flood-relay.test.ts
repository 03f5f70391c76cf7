/**
 * Floods at the relay (issue #13 item 3), on a relay started as relay/main.ts starts it: too many
 * connections from one IP, reservations from identities without a stamp, malformed stamps — each
 * refused and counted in /metrics — while a stamped peer still reserves; too many concurrent
 * streams of one protocol on a connection are refused (libp2p's per-protocol cap); the doc's
 * flood counters are exported.
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { StampRefusedError } from '../../web/src/net/errors.ts'
import { mintStamp } from '../../web/src/net/pow.ts'
import { POW_STAMP, presentStamp, relayStampScope } from '../../web/src/net/pow-protocol.ts'
import { bareRelayClient, relayMetric } from '../helpers/relay-client.ts'
import { until } from './peers-harness.ts'

const cleanup: Array<() => Promise<void>> = []
afterAll(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}) })

async function relayLikeMain (args: string[]): Promise<RelayHandle> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-flood-'))
  const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', ...args], {})!, () => {})
  cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
  return relay
}

/** A bare client (circuit listening when `listen` is given); stopped after the file. */
async function client (key?: PrivateKey, listen: string[] = []): Promise<Libp2p> {
  const node = await bareRelayClient(key, listen)
  cleanup.push(async () => { await node.stop() })
  return node
}

const metric = async (relay: RelayHandle, line: string): Promise<number> => await relayMetric(relay.httpUrl, line)

describe('relay flood limits', () => {
  it('caps open connections per IP, refuses unstamped reservations and bad stamps, counts each; a stamped peer reserves', async () => {
    const relay = await relayLikeMain(['--max-conns-per-ip', '3', '--reservation-pow-bits', '8', '--crdt-pow-bits', '8'])
    const boot = multiaddr(relay.bootstrapAddrs[0])

    // 1. Five connections from 127.0.0.1: three are let in, two refused.
    const flood = await Promise.all(Array.from({ length: 5 }, async () => await client()))
    const results = []
    for (const c of flood) results.push(await c.dial(boot, { signal: AbortSignal.timeout(10_000) }).then(() => 'open', () => 'refused'))
    expect(results.filter(r => r === 'open').length).toBe(3)
    expect(results.filter(r => r === 'refused').length).toBe(2)
    expect(await metric(relay, 'webswarm_relay_refused_total{reason="ip-connections"}')).toBe(2)
    for (const c of flood) await c.stop()
    await until('the relay to see the connections close', () => relay.admission.connectionsFrom('127.0.0.1') === 0, 10_000)

    // 2. A reservation without a stamp is refused.
    const sybilKey = await generateKeyPair('Ed25519')
    const sybil = await client(sybilKey, [`${boot.toString()}/p2p-circuit`]).catch((e: Error) => e)
    await until('the unstamped reservation to be refused', async () => await metric(relay, 'webswarm_relay_refused_total{reason="reservation-without-stamp"}') >= 1, 15_000)
    expect(relay.node.services.relay.reservations.size).toBe(0)
    if (!(sybil instanceof Error)) await sybil.stop()

    // 3. A malformed or foreign stamp is refused (and counted), a valid one admits.
    const key = await generateKeyPair('Ed25519')
    const first = await client(key)
    await first.dial(boot)
    const relayId = relay.node.peerId
    await expect(presentStamp(first, relayId, 'garbage')).rejects.toBeInstanceOf(StampRefusedError)
    const foreign = await mintStamp('relay/someone-else', first.peerId.toString(), 8, Date.now())
    await expect(presentStamp(first, relayId, foreign)).rejects.toBeInstanceOf(StampRefusedError)
    expect(await metric(relay, 'webswarm_relay_refused_total{reason="bad-stamp"}')).toBe(2)
    // An oversized frame (41 B: the cap is 40) and one that is not UTF-8 get no answer: the relay
    // resets the stream, counts each as a bad stamp and goes on admitting.
    for (const raw of [new Uint8Array(41).fill(0x31), Uint8Array.of(0xff, 0xfe, 0x3a, 0x31)]) {
      const st = await first.dialProtocol(relayId, POW_STAMP.id, { signal: AbortSignal.timeout(10_000) })
      const lp = lpStream(st, { maxDataLength: 1 })
      await lp.write(raw, { signal: AbortSignal.timeout(10_000) })
      await expect(lp.read({ signal: AbortSignal.timeout(10_000) })).rejects.toThrow()
    }
    await until('both malformed stamps to be counted', async () => await metric(relay, 'webswarm_relay_refused_total{reason="bad-stamp"}') >= 4, 15_000)
    expect(await metric(relay, 'webswarm_relay_refused_total{reason="bad-stamp"}')).toBe(4)
    await presentStamp(first, relayId, await mintStamp(relayStampScope(relayId), first.peerId.toString(), 8, Date.now()))
    expect(relay.admission.isStamped(first.peerId.toString())).toBe(true)
    await first.stop()

    // 4. The stamped identity reserves (a node started with the same key, listening on the relay).
    const stamped = await client(key, [`${boot.toString()}/p2p-circuit`])
    await until('the stamped peer\'s reservation', () => relay.node.services.relay.reservations.has(stamped.peerId), 15_000)
    expect(await metric(relay, 'webswarm_relay_refused_total{reason="reservation-without-stamp"}')).toBeGreaterThanOrEqual(1)
    // 5. Streams: a third concurrent stamp stream on one connection is refused (per-protocol cap of 2).
    // (the dialer's open resolves optimistically; the relay resets the stream over the cap, so it gets no answer)
    const streams = await Promise.all([0, 1, 2].map(async () => await stamped.dialProtocol(relayId, POW_STAMP.id, { signal: AbortSignal.timeout(10_000) })))
    const stamp = await mintStamp(relayStampScope(relayId), stamped.peerId.toString(), 8, Date.now())
    const answered = await Promise.allSettled(streams.map(async (st) => {
      const lp = lpStream(st, { maxDataLength: 1 })
      await lp.write(new TextEncoder().encode(stamp), { signal: AbortSignal.timeout(10_000) })
      return (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()[0]
    }))
    expect(answered.filter(r => r.status === 'fulfilled' && r.value === 1).length).toBe(POW_STAMP.maxInboundStreams)
    expect(answered.filter(r => r.status === 'rejected').length).toBe(1)
    // the doc's flood counters are exported per swarm and reason
    expect(await metric(relay, 'webswarm_crdt_refused_total{swarm="default",reason="pow"}')).toBe(0)
  }, 90_000)
})
