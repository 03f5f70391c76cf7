/**
 * `npm run bench:net` — two measurements between Node peers on 127.0.0.1, in one run:
 *
 * 1. Throughput over one direct WebRTC connection (signalled through a local relay): a 64 MiB
 *    tensor sent with our framed tensor stream (`call`: START + DATA frames with crc32, batched
 *    sends honouring drain, reassembly into one buffer, a tiny response) beside "raw": the same
 *    kind of libp2p stream on the same connection carrying the same 64 MiB as plain 64 KiB send()
 *    calls honouring onDrain(), no framing, the receiver counting bytes and answering one byte.
 *    Both timed from the first send to the response. Trials alternate raw/framed so machine load
 *    hits both alike; the median of each is reported.
 * 2. CRDT sync time of a swarm doc holding 1,000 signed peer entries: NET-A's CrdtSync
 *    (`/webswarm/crdt-sync/2.0.0`, y-protocols SyncStep1/SyncStep2 over a libp2p stream) from an
 *    empty doc on peer B to peer A's doc, until B verified and holds all 1,000 entries.
 * 3. Simultaneous dials: two fresh peers call `dialThroughRelay` on each other at the same moment
 *    (two members starting an all-reduce exchange); the time until both hold a direct WebRTC
 *    connection, per trial (the slower side), and how many direct connections they end with.
 *
 * 4. `--idle` instead: an idle process's CPU per configuration (training worker, npm start, server
 *    peer) and, with --cpu-prof, where it goes (bench/net-idle.ts).
 *
 * Flags: --mib 64  --trials 5  --dial-trials 8
 * Writes bench/results/net.json {"stream_mb_s","raw_mb_s","crdt_sync_1000_ms","simultaneous_dial_ms"}
 * and net.meta.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as Y from 'yjs'
import { CrdtSync, SwarmDoc } from '../web/src/net/crdt/index.ts'
import { dialThroughRelay } from '../web/src/net/peers.ts'
import { call, handle } from '../web/src/net/stream/index.ts'
import { TENSOR_ECHO_PROTOCOL } from '../web/src/net/protocols.ts'
import type { Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { WebSwarmNode } from '../web/src/net/node.ts'
import { connectDirect, isDirectWebRTC, startPeer, startRelay } from '../test/net/stream-peers.ts'

const RAW_PROTOCOL = '/webswarm/bench-raw/1.0.0'
/** Raw send size: the 64 KiB chunks ENVIRONMENT.md's 43.5 MB/s baseline used. */
const RAW_SEND_BYTES = 64 * 1024
const CRDT_ENTRIES = 1000
const MB = 1e6

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

/** Waits for the stream's 'drain' event (what the framed writer does; see `drain` in framed.ts). */
async function drainEvent (s: Stream): Promise<void> {
  while (s.writableNeedsDrain) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('raw: no drain within 30 s')) }, 30_000)
      s.addEventListener('drain', () => { clearTimeout(timer); resolve() }, { once: true })
    })
    await Promise.resolve()
  }
}

/**
 * Raw: 64 KiB send() calls. `stock` waits with stream.onDrain() as the brief defines raw; in
 * @libp2p/utils 7.4 that promise stays resolved after the first drain, so it stops waiting and
 * queues the rest in the stream's write buffer. `drainEvent` waits for real, like our writer.
 */
async function rawTrial (a: WebSwarmNode, b: WebSwarmNode, data: Uint8Array, wait: 'stock' | 'event'): Promise<number> {
  const t0 = performance.now()
  const s = await a.dialProtocol(b.peerId, RAW_PROTOCOL)
  for (let o = 0; o < data.byteLength; o += RAW_SEND_BYTES) {
    if (!s.send(data.subarray(o, o + RAW_SEND_BYTES))) {
      if (wait === 'stock') await s.onDrain({ signal: AbortSignal.timeout(30_000) })
      else await drainEvent(s)
    }
  }
  await s.close()
  let ack = 0
  for await (const chunk of s) ack += chunk.byteLength
  if (ack !== 1) throw new Error(`raw: expected a 1-byte ack, got ${ack}`)
  return data.byteLength / MB / ((performance.now() - t0) / 1000)
}

async function framedTrial (a: WebSwarmNode, b: WebSwarmNode, data: Uint8Array): Promise<number> {
  const t0 = performance.now()
  const res = await call(a, b.peerId, TENSOR_ECHO_PROTOCOL, { tensors: [{ name: 'x', dtype: 'u8', shape: [data.byteLength], data }] }, { timeoutMs: 300_000 })
  if (res.meta?.bytes !== data.byteLength) throw new Error(`framed: peer got ${String(res.meta?.bytes)} bytes`)
  return data.byteLength / MB / ((performance.now() - t0) / 1000)
}

/** Identity-stamp difficulty of the CRDT benchmark's docs (web/src/net/pow.ts; the swarm uses DEFAULT_POW_BITS). */
const BENCH_POW = { powBits: 8 }

async function crdtSync1000 (a: WebSwarmNode, b: WebSwarmNode): Promise<number> {
  // 1,000 peers each sign their own entry (as they would when joining); A's doc merges them all.
  // Their identity stamps are minted at 8 bits, not the swarm's 16 (1,000 × ~0.25 s of set-up
  // outside the timed sync); B verifies each with one hash either way (BENCH_POW).
  const docA = new SwarmDoc('default', a.peerId.toString(), undefined, undefined, BENCH_POW)
  for (let i = 0; i < CRDT_ENTRIES; i++) {
    const key = await generateKeyPair('Ed25519')
    const sd = new SwarmDoc('default', peerIdFromPrivateKey(key).toString(), key, undefined, BENCH_POW)
    await sd.setSelf({ gflops: 1 + (i % 50), roles: [`blocks:${i % 24}-${(i % 24) + 3}`], caps: { f16: i % 2 === 0 } })
    Y.applyUpdate(docA.doc, Y.encodeStateAsUpdate(sd.doc))
  }
  const docB = new SwarmDoc('default', b.peerId.toString(), undefined, undefined, BENCH_POW)
  const syncA = new CrdtSync(a, docA, { antiEntropyIntervalMs: 0 })
  const syncB = new CrdtSync(b, docB, { antiEntropyIntervalMs: 0 })
  await syncA.start()
  const t0 = performance.now()
  await syncB.syncWith(a.peerId)
  while ((await docB.peers()).size < CRDT_ENTRIES) {
    if (performance.now() - t0 > 60_000) throw new Error(`crdt: B holds ${(await docB.peers()).size} of ${CRDT_ENTRIES} entries after 60 s`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const ms = performance.now() - t0
  await syncA.stop()
  return ms
}

/** Two fresh peers dial each other through the relay at once; ms until both have a direct connection (the slower), and direct connections left. */
async function simultaneousDial (relayAddr: Multiaddr): Promise<{ ms: number, connections: number }> {
  const [a, b] = await Promise.all([startPeer(relayAddr), startPeer(relayAddr)])
  try {
    const t0 = performance.now()
    const signal = AbortSignal.timeout(30_000)
    await Promise.all([dialThroughRelay(a, relayAddr.toString(), b.peerId, { signal }), dialThroughRelay(b, relayAddr.toString(), a.peerId, { signal })])
    const ms = performance.now() - t0
    await new Promise(resolve => setTimeout(resolve, 200)) // a late second connection would show up by now
    return { ms, connections: a.getConnections(b.peerId).filter(isDirectWebRTC).length }
  } finally {
    await Promise.allSettled([a.stop(), b.stop()])
  }
}

async function main (): Promise<void> {
  const mib = arg('mib', 64)
  const trials = arg('trials', 5)
  const { relay, addr } = await startRelay()
  const a = await startPeer(addr)
  const b = await startPeer(addr)
  const conn = await connectDirect(a, b, addr)
  if (!isDirectWebRTC(conn)) throw new Error('not a direct WebRTC connection')

  await b.handle(RAW_PROTOCOL, async (s) => {
    let n = 0
    for await (const c of s) n += c.byteLength
    if (n > 0) s.send(new Uint8Array(1))
    await s.close()
  })
  await handle(b, TENSOR_ECHO_PROTOCOL, async (req) => ({ meta: { bytes: req.tensors.reduce((n, t) => n + t.data.byteLength, 0) }, tensors: [] }), { maxMessageBytes: mib * 1024 * 1024 })

  const data = new Uint8Array(mib * 1024 * 1024)
  for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff
  // warm-up: ICE/SCTP windows and JIT
  await rawTrial(a, b, data.subarray(0, 8 << 20), 'stock')
  await framedTrial(a, b, data.subarray(0, 8 << 20))
  const raw: number[] = []
  const rawEvent: number[] = []
  const framed: number[] = []
  for (let t = 0; t < trials; t++) {
    raw.push(await rawTrial(a, b, data, 'stock'))
    framed.push(await framedTrial(a, b, data))
    rawEvent.push(await rawTrial(a, b, data, 'event'))
    console.log(`trial ${t + 1}: raw ${raw.at(-1)?.toFixed(1)} MB/s, framed ${framed.at(-1)?.toFixed(1)} MB/s, raw (drain event) ${rawEvent.at(-1)?.toFixed(1)} MB/s`)
  }
  const crdtMs = await crdtSync1000(a, b)
  const dials: Array<{ ms: number, connections: number }> = []
  for (let t = 0; t < arg('dial-trials', 8); t++) {
    dials.push(await simultaneousDial(addr))
    console.log(`simultaneous dial ${t + 1}: ${dials.at(-1)!.ms.toFixed(0)} ms, ${dials.at(-1)!.connections} direct connection(s)`)
  }

  const result = { stream_mb_s: round(median(framed)), raw_mb_s: round(median(raw)), crdt_sync_1000_ms: round(crdtMs), simultaneous_dial_ms: round(median(dials.map(d => d.ms))) }
  const meta = {
    command: `npm run bench:net -- --mib ${mib} --trials ${trials}`,
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    payload_mib: mib,
    trials: { raw_mb_s: raw.map(round), stream_mb_s: framed.map(round), raw_drain_event_mb_s: rawEvent.map(round) },
    raw_drain_event_mb_s: round(median(rawEvent)),
    ratio: Math.round(100 * result.stream_mb_s / result.raw_mb_s) / 100,
    raw: `same libp2p WebRTC stream kind, plain ${RAW_SEND_BYTES / 1024} KiB send() honouring onDrain(), no framing`,
    crdt: 'NET-A CrdtSync.syncWith (y-protocols SyncStep1/SyncStep2 over /webswarm/crdt-sync/2.0.0), 1,000 signed peer entries, until B verified all',
    simultaneous_dial: { what: 'two fresh peers dialThroughRelay each other at once: ms until both hold a direct WebRTC connection (the slower side), and direct connections between them after', trials_ms: dials.map(d => round(d.ms)), max_ms: round(Math.max(...dials.map(d => d.ms))), connections: dials.map(d => d.connections) }
  }
  mkdirSync('bench/results', { recursive: true })
  writeFileSync('bench/results/net.json', JSON.stringify(result, null, 2) + '\n')
  writeFileSync('bench/results/net.meta.json', JSON.stringify(meta, null, 2) + '\n')
  console.log(JSON.stringify(result), `framed/raw = ${(100 * meta.ratio).toFixed(0)} %`)
  const stop = Promise.allSettled([a.stop(), b.stop(), relay.stop()])
  await Promise.race([stop, new Promise(resolve => setTimeout(resolve, 5000))])
  process.exit(0)
}

function round (x: number): number { return Math.round(x * 10) / 10 }

if (process.argv.includes('--idle')) {
  await (await import('./net-idle.ts')).idleBench(process.argv.slice(2))
  process.exit(0)
} else {
  await main()
}
