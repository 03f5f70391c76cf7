/**
 * Identity stamps are day-scoped (a relay takes one on its day and the next), so a peer that runs
 * for days re-mints before each UTC midnight and presents the new stamp after it
 * (web/src/net/stamp-renewal.ts): unit-tested on a ManualClock, then a CLI peer (`webswarm api`,
 * `generate --bootstrap`: cli/swarm-node.ts joinSwarm) over a real relay, whose clock crosses
 * midnight, gets its new stamp taken. Tests use a low cost (8–10 bits).
 */
import { afterAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../relay/config.ts'
import { startRelay } from '../../relay/relay.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId, Stream } from '@libp2p/interface'
import { joinSwarm } from '../../web/src/cli/swarm-node.ts'
import { createPeer } from '../../web/src/net/node.ts'
import { PeerManager } from '../../web/src/net/peers.ts'
import { mintStamp, powEpoch, stampProblem } from '../../web/src/net/pow.ts'
import { POW_STAMP, relayStampScope } from '../../web/src/net/pow-protocol.ts'
import { PREMINT_MS, RelayStamps, SKEW_MS, type Minter } from '../../web/src/net/stamp-renewal.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { relayMetric } from '../helpers/relay-client.ts'
import { until } from './peers-harness.ts'

const cleanup: Array<() => Promise<void>> = []
afterAll(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}) })

const DAY = 86_400_000
const MIN = 60_000
const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const RELAY = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const BITS = 8
/** Watchdog of each wait (minting yields on real timers; real sockets below); a passing run never reaches it. */
const WAIT_MS = 30_000

describe('RelayStamps: a stamp per relay and UTC day, renewed across midnight', () => {
  it('premints the next day before midnight, presents it after, and keeps doing so each day; stop ends it', async () => {
    const D = powEpoch(Date.UTC(2026, 11, 5))
    const clock = new ManualClock(D * DAY + 23 * 60 * MIN + 30 * MIN) // 23:30 UTC of day D
    const minted: number[] = []
    const mint: Minter = async (scope, peer, bits, now, o) => { minted.push(powEpoch(now)); return await mintStamp(scope, peer, bits, now, o) }
    const renewed: Array<{ relay: string, stamp: string, at: number }> = []
    const stamps = new RelayStamps({ peer: PEER, bits: BITS, clock, mint, onRenew: (relay, stamp) => { renewed.push({ relay, stamp, at: clock.now() }) } })
    const valid = (s: string, at: number): boolean => stampProblem(s, relayStampScope(RELAY), PEER, BITS, at) === undefined

    const today = await stamps.stampFor(RELAY)
    expect(today.startsWith(`${D}:`)).toBe(true)
    expect(await stamps.stampFor(RELAY)).toBe(today) // minted once a day
    expect(minted).toEqual([D])
    // Without renewal this stamp would be refused from day D + 2 on: the reason for all this.
    expect(valid(today, (D + 2) * DAY)).toBe(false)

    clock.advance(30 * MIN - PREMINT_MS) // PREMINT_MS before midnight: tomorrow's stamp is minted now
    expect(minted).toEqual([D, D + 1])
    expect(renewed).toEqual([])
    clock.advance(PREMINT_MS + SKEW_MS) // SKEW_MS after midnight: presented
    await until('the day D + 1 stamp handed on', () => renewed.length === 1, WAIT_MS)
    expect(renewed[0].relay).toBe(RELAY)
    expect(renewed[0].stamp.startsWith(`${D + 1}:`)).toBe(true)
    expect(valid(renewed[0].stamp, clock.now())).toBe(true)
    expect(await stamps.stampFor(RELAY)).toBe(renewed[0].stamp) // what a reconnect presents now
    expect(minted).toEqual([D, D + 1])

    // A relay first asked for today is renewed tonight too; and the next night again.
    const late = RELAY.slice(0, -1) + 'M'
    expect((await stamps.stampFor(late)).startsWith(`${D + 1}:`)).toBe(true)
    clock.advance(DAY)
    await until('the day D + 2 stamps handed on', () => renewed.length === 3, WAIT_MS)
    expect(renewed.slice(1).map(r => [r.relay, r.stamp.split(':')[0]]).sort()).toEqual([[late, String(D + 2)], [RELAY, String(D + 2)]].sort())
    expect(renewed.slice(1).every(r => r.at === (D + 2) * DAY + SKEW_MS)).toBe(true)

    stamps.stop()
    expect(clock.pending).toBe(0)
    clock.advance(2 * DAY)
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(renewed).toHaveLength(3)
  })

  it('started inside the premint window, it mints tomorrow at once and still presents after midnight', async () => {
    const D = powEpoch(Date.UTC(2026, 11, 5))
    const clock = new ManualClock((D + 1) * DAY - 2 * MIN) // 23:58
    const renewed: string[] = []
    const stamps = new RelayStamps({ peer: PEER, bits: BITS, clock, onRenew: (_, s) => { renewed.push(s) } })
    expect((await stamps.stampFor(RELAY)).startsWith(`${D}:`)).toBe(true)
    expect(clock.nextDue()).toBe((D + 1) * DAY + SKEW_MS)
    clock.advance(2 * MIN + SKEW_MS)
    await until('the new stamp handed on', () => renewed.length === 1, WAIT_MS)
    expect(renewed[0].startsWith(`${D + 1}:`)).toBe(true)
    stamps.stop()
  })
})

describe('a CLI peer up across midnight presents its new stamp to the relay', () => {
  it('joinSwarm on a clock one minute before (its) midnight: the relay takes the next day\'s stamp, the reservation stays', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-renew-'))
    const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', '--reservation-pow-bits', '10'], {})!, () => {})
    cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
    // The relay runs on the real clock; ours starts at 23:59 of yesterday (real), so that our
    // first stamp is yesterday's (still taken) and the one after our midnight is today's.
    const today = powEpoch(Date.now())
    const clock = new ManualClock(today * DAY - MIN)
    const lines: string[] = []
    const peer = await joinSwarm({ addrs: relay.bootstrapAddrs, iceServers: [], reservationPowBits: 10 }, { numBlocks: 1, numExperts: 0 }, { clock, log: l => { lines.push(l) } })
    cleanup.push(async () => { await peer.node.stop() })
    const id = peer.node.peerId.toString()
    const held = (): boolean => [...relay.node.services.relay.reservations.keys()].some(p => p.toString() === id)
    expect(held()).toBe(true)
    expect(relay.admission.isStamped(id)).toBe(true)
    expect(lines.filter(l => l.includes('identity stamp'))).toEqual([])

    clock.advance(MIN + SKEW_MS)
    await until('the new stamp taken', () => lines.some(l => l.includes('identity stamp')), WAIT_MS)
    expect(lines.filter(l => l.includes('identity stamp'))).toEqual([`relay ${relay.node.peerId.toString()}: presented the identity stamp of UTC day ${today}`])
    expect(relay.admission.isStamped(id)).toBe(true)
    expect(held()).toBe(true)
  })

  it('a page or `serve` (PeerManager) presents the next day\'s stamp on its open relay connection too', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-renew-'))
    const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', '--reservation-pow-bits', '10'], {})!, () => {})
    cleanup.push(async () => { await relay.stop(); await fs.rm(dir, { recursive: true, force: true }) })
    const today = powEpoch(Date.now())
    const clock = new ManualClock(today * DAY - MIN)
    const node = await createPeer({ iceServers: [], privateKey: await generateKeyPair('Ed25519') })
    cleanup.push(async () => { await node.stop() })
    // The stamp streams it opens: presentStamp closes one once the relay took the stamp, aborts it on a refusal.
    const presented: Stream[] = []
    const dialProtocol = node.dialProtocol.bind(node)
    node.dialProtocol = (async (peer: PeerId, protocol: string, o?: object) => {
      const s = await dialProtocol(peer, protocol, o)
      if (protocol === POW_STAMP.id) presented.push(s)
      return s
    }) as typeof node.dialProtocol
    const log: string[] = []
    const pm = new PeerManager(node, { bootstrap: relay.bootstrapAddrs, swarm: 'renew', targetPeers: 0, reservationPowBits: 10, clock, log: l => { log.push(l) } })
    pm.start()
    cleanup.push(async () => { pm.stop() })
    await pm.ready(WAIT_MS)
    await until('the first stamp presented', () => presented.length === 1, WAIT_MS)

    clock.advance(MIN + SKEW_MS)
    await until('the new day\'s stamp presented', () => presented.length === 2, WAIT_MS)
    await until('the relay\'s answer', () => ['closed', 'aborted', 'reset'].includes(presented[1].status), WAIT_MS)
    expect(presented.map(p => p.status)).toEqual(['closed', 'closed'])
    expect(log.filter(l => l.includes('identity stamp'))).toEqual([])
    expect(await relayMetric(relay.httpUrl, 'webswarm_relay_refused_total{reason="bad-stamp"}')).toBe(0)
    expect(relay.admission.isStamped(node.peerId.toString())).toBe(true)
  })
})
