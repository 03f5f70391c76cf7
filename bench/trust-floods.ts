/**
 * bench:trust's floods: a relay started as relay/main.ts starts it (proof of work on reservations
 * and on swarm-doc `peers` entries, 8 bits so minting stays cheap; per-IP connection cap 4), and
 * against it:
 * 1. swarm doc (3 rounds), through the relay's own gossip validator (CrdtSync, its real token buckets and
 *    SwarmDoc checks; the gossipsub mesh in front of it is left out, so a message's author is
 *    whatever the flooder claims): four stamped honest peers write their entries each second; a
 *    stamped flooder writes 100 4 KiB values per round, last, and another stamped author a 300 KiB one; an
 *    identity looper writes `peers` entries from fresh unstamped keys; a Sybil flooder writes a
 *    free map from a fresh author id per message (what per-author buckets cannot stop);
 * 2. identities created in a loop over real connections: each a new key that dials the relay and
 *    asks for a reservation without a stamp; then a burst of connections from one IP.
 * Reported: the doc's encoded size after each round, the relay's heap after a GC (run with
 * --expose-gc, as `npm run bench:trust` does), refusals by kind, honest entries intact.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import * as Y from 'yjs'
import { parseConfig } from '../relay/config.ts'
import { startRelay, type RelayHandle } from '../relay/relay.ts'
import { GOSSIP_UPDATE, SwarmDoc } from '../web/src/net/crdt/index.ts'
import { mintStamp } from '../web/src/net/pow.ts'
import { presentStamp, relayStampScope } from '../web/src/net/pow-protocol.ts'
import { bareRelayClient, relayMetric } from '../test/helpers/relay-client.ts'
import { load } from './verify-swarm.ts'

const BITS = 8
const SWARM = 'default'
const ROUNDS = 3
/** Writes the stamped flooder attempts per round (its burst is 200, then 20 a second). */
const FLOOD_WRITES = 100
const CONNS_PER_IP = 4

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
async function until (cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (await cond()) return true
  return false
}
/** Heap in MiB after a full GC when the process allows one. */
function heapMiB (): number {
  (globalThis as { gc?: () => void }).gc?.()
  return process.memoryUsage().heapUsed / 2 ** 20
}
const metric = async (relay: RelayHandle, line: string): Promise<number> => await relayMetric(relay.httpUrl, line)
const client = bareRelayClient

export async function floods (): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ws-bench-trust-'))
  const relay = await startRelay(parseConfig(['--port', '0', '--data-dir', dir, '--ice-server', 'none', '--max-conns-per-ip', String(CONNS_PER_IP), '--reservation-pow-bits', String(BITS), '--crdt-pow-bits', String(BITS)], {})!, () => {})
  try {
    return { doc: await docFlood(relay), relay: await identityLoop(relay) }
  } finally {
    await relay.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

async function docFlood (relay: RelayHandle): Promise<Record<string, unknown>> {
  const { sdoc, sync } = relay.swarms.get(SWARM)!
  // The validator gossipsub calls (private): the relay's whole admission path for a doc update.
  const validate = (sync as unknown as { validateGossip: (from: PeerId, msg: Message) => Promise<TopicValidatorResult> }).validateGossip
  const send = async (author: SwarmDoc, from: string, write: () => void | Promise<void>): Promise<TopicValidatorResult> => {
    const sv = Y.encodeStateVector(author.doc)
    await write()
    const u = Y.encodeStateAsUpdate(author.doc, sv)
    const data = new Uint8Array(u.length + 1)
    data[0] = GOSSIP_UPDATE
    data.set(u, 1)
    const id = { toString: () => from } as unknown as PeerId
    return await validate(id, { type: 'signed', from: id, data, topic: sync.topic } as unknown as Message)
  }
  const docBytes = (): number => Y.encodeStateAsUpdate(sdoc.doc).length
  const stamped = async (): Promise<SwarmDoc> => {
    const key = await generateKeyPair('Ed25519')
    return new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: BITS })
  }
  const honest = await Promise.all([0, 1, 2, 3].map(stamped))
  const flooder = await stamped()
  const tally = { honest: { sent: 0, accepted: 0 }, flooder: { sent: 0, accepted: 0, rateLimited: 0, refused: 0 }, looper: { sent: 0, accepted: 0, refused: 0 }, sybil: { sent: 0, accepted: 0 } }
  const count = (t: { sent: number, accepted: number, rateLimited?: number, refused?: number }, r: TopicValidatorResult): void => {
    t.sent++
    if (r === TopicValidatorResult.Accept) t.accepted++
    else if (r === TopicValidatorResult.Ignore && t.rateLimited !== undefined) t.rateLimited++
    else if (t.refused !== undefined) t.refused++
  }
  const heap0 = heapMiB()
  const bytes0 = docBytes()
  const rounds: Array<{ doc_bytes: number, pending_bytes: number, pending_updates: number, honest_apply_ms_max: number, heap_mib: number, ms: number, load: string }> = []
  // Updates the doc holds without their dependencies (a rate-limited author's later writes build
  // on its dropped ones): Yjs keeps them and retries them on every update.
  const pendingBytes = (): number => {
    const st = sdoc.doc.store as { pendingStructs: { update: Uint8Array } | null, pendingDs: Uint8Array | null }
    return (st.pendingStructs?.update.length ?? 0) + (st.pendingDs?.length ?? 0)
  }
  const big = await stamped() // oversized values from an author of their own: a refused update leaves a gap in its author's clock
  const pendingUpdates = (): number => (sdoc as unknown as { pending: unknown[] }).pending.length
  let k = 0
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = Date.now()
    let honestMs = 0
    for (const h of honest) {
      const t = Date.now()
      count(tally.honest, await send(h, h.selfId, async () => { await h.setSelf({ gflops: 1, round }) }))
      honestMs = Math.max(honestMs, Date.now() - t)
    }
    for (let i = 0; i < 20; i++) {
      const key = await generateKeyPair('Ed25519')
      const sybil = new SwarmDoc(SWARM, peerIdFromPrivateKey(key).toString(), key, undefined, { powBits: 0 })
      count(tally.looper, await send(sybil, sybil.selfId, async () => { await sybil.setSelf({ gflops: 1e6 }) }))
    }
    for (let i = 0; i < 50; i++) {
      const s = new SwarmDoc(SWARM, `sybil-${round}-${i}`, undefined, undefined, { powBits: 0 })
      count(tally.sybil, await send(s, `sybil-${round}-${i}`, () => { s.map('spam').set(`s${round}-${i}`, 'y'.repeat(4096)) }))
    }
    count(tally.flooder, await send(big, big.selfId, () => { big.map('spam').set(`big${round}`, 'x'.repeat(300 * 1024)) }))
    // Last in the round: once its bucket runs dry, its later writes wait on dropped ones.
    for (let i = 0; i < FLOOD_WRITES; i++, k++) count(tally.flooder, await send(flooder, flooder.selfId, () => { flooder.map('spam').set(`k${k}`, 'x'.repeat(4096)) }))
    rounds.push({ doc_bytes: docBytes(), pending_bytes: pendingBytes(), pending_updates: pendingUpdates(), honest_apply_ms_max: honestMs, heap_mib: heapMiB(), ms: Date.now() - t0, load: load() })
    console.log(`floods, doc round ${round}: ${JSON.stringify(rounds[round])} ${JSON.stringify(tally)}`)
    await sleep(Math.max(0, 1000 - (Date.now() - t0)))
  }
  // What the held updates cost: one more honest entry, applied after the flood.
  const probe = Date.now()
  count(tally.honest, await send(honest[0], honest[0].selfId, async () => { await honest[0].setSelf({ gflops: 1, round: ROUNDS - 1 }) }))
  const honestAfterMs = Date.now() - probe
  const peers = await sdoc.peers()
  const intact = honest.every(h => (peers.get(h.selfId) as { data?: { round?: number } } | undefined)?.data?.round === ROUNDS - 1)
  const result = {
    rounds: ROUNDS,
    per_round: `each ≥ 1 s, in this order: 4 honest setSelf; looper 20 unstamped identities; sybil 50 × 4 KiB from fresh author ids; another stamped author 1 × 300 KiB; flooder ${FLOOD_WRITES} × 4 KiB`,
    tally,
    doc_bytes: { before: bytes0, per_round: rounds.map(r => r.doc_bytes) },
    pending_bytes_per_round: rounds.map(r => r.pending_bytes),
    pending_updates_per_round: rounds.map(r => r.pending_updates),
    honest_apply_ms_max_per_round: rounds.map(r => r.honest_apply_ms_max),
    honest_apply_ms_after_flood: honestAfterMs,
    round_ms: rounds.map(r => r.ms),
    heap_mib: { before: heap0, per_round: rounds.map(r => r.heap_mib) },
    honest_entries_intact: intact,
    peers_entries: peers.size,
    doc_counters: { rejected: sdoc.rejected, refused_pow: sdoc.refusedPow, refused_size: sdoc.refusedSize },
    sync_counters: { ...sync.stats }
  }
  console.log(`floods, doc: ${JSON.stringify(result.tally)}; doc ${bytes0} → ${rounds.map(r => r.doc_bytes).join(', ')} B; honest intact ${intact} (load ${load()})`)
  return result
}

async function identityLoop (relay: RelayHandle): Promise<Record<string, unknown>> {
  const heap0 = heapMiB()
  // A dial the relay cuts off (the per-IP cap closes it during the handshake) can surface from
  // libp2p's dial queue with nobody awaiting it: counted by phase, not fatal to the bench.
  let phase = 'loop'
  const outOfBand: Record<string, number> = {}
  const onStray = (e: unknown): void => {
    if (!(e instanceof Error && e.name === 'EncryptionFailedError')) throw e
    outOfBand[phase] = (outOfBand[phase] ?? 0) + 1
  }
  process.on('uncaughtException', onStray)
  try {
    return await identityLoopIn(relay, heap0, () => outOfBand, p => { phase = p })
  } finally {
    process.off('uncaughtException', onStray)
  }
}

async function identityLoopIn (relay: RelayHandle, heap0: number, stray: () => Record<string, number>, setPhase: (p: string) => void): Promise<Record<string, unknown>> {
  const boot = multiaddr(relay.bootstrapAddrs[0])
  const relayId = relay.node.peerId
  const LOOPED = 30
  const refusedBefore = await metric(relay, 'webswarm_relay_refused_total{reason="reservation-without-stamp"}')
  let refusedSeen = 0
  for (let i = 0; i < LOOPED; i++) {
    const node = await client(await generateKeyPair('Ed25519'), [`${boot.toString()}/p2p-circuit`]).catch(() => undefined)
    if (await until(async () => await metric(relay, 'webswarm_relay_refused_total{reason="reservation-without-stamp"}') > refusedBefore + refusedSeen, 15_000)) refusedSeen++
    await node?.stop()
    // The next identity dials once this one's connection is gone (the per-IP cap is not the point here).
    await until(async () => relay.admission.connectionsFrom('127.0.0.1') === 0, 10_000)
  }
  const heapLooped = heapMiB()
  setPhase('burst')
  const burst = await Promise.all(Array.from({ length: 3 * CONNS_PER_IP }, async () => await client(await generateKeyPair('Ed25519'))))
  const opened = (await Promise.all(burst.map(async c => await c.dial(boot, { signal: AbortSignal.timeout(10_000) }).then(() => true, () => false)))).filter(Boolean).length
  await Promise.all(burst.map(async c => { await c.stop() }))
  // An honest peer presents a stamp and reserves.
  setPhase('honest')
  await until(async () => relay.admission.connectionsFrom('127.0.0.1') === 0, 10_000)
  const key = await generateKeyPair('Ed25519')
  const first = await client(key)
  await first.dial(boot)
  await presentStamp(first, relayId, await mintStamp(relayStampScope(relayId), first.peerId.toString(), BITS, Date.now()))
  await first.stop()
  const honest = await client(key, [`${boot.toString()}/p2p-circuit`])
  const reserved = await until(async () => relay.node.services.relay.reservations.has(honest.peerId), 15_000)
  await honest.stop()
  const result = {
    looped_identities: LOOPED,
    reservations_refused: refusedSeen,
    reservations_held_after_loop: relay.node.services.relay.reservations.size - (reserved ? 1 : 0),
    connection_burst: { dialled: burst.length, opened, refused_ip_metric: await metric(relay, 'webswarm_relay_refused_total{reason="ip-connections"}') },
    honest_stamped_peer_reserved: reserved,
    dial_errors_out_of_band: stray(),
    heap_mib: { before: heap0, after_loop: heapLooped, after_all: heapMiB() },
    note: 'heap = this whole process (relay and the looping clients, stopped) after a GC'
  }
  console.log(`floods, relay: ${JSON.stringify(result)} (load ${load()})`)
  return result
}
