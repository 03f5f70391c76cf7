/**
 * Framed tensor streams between real libp2p peers over direct WebRTC on 127.0.0.1 (signalled
 * through a relay), and a peer SIGKILLed mid-transfer.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, handle, openStream, handleStream, StreamTimeoutError, StreamEndedError } from '../../web/src/net/stream/index.ts'
import { SINK_PROTOCOL } from './stream-child.ts'
import type { RelayNode, WebSwarmNode } from '../../web/src/net/node.ts'
import { connectDirect, connectionsWithProtocol, isDirectWebRTC, sha256Hex, startPeer, startRelay } from './stream-peers.ts'
import { patternBytes } from './stream-harness.ts'

const MiB = 1024 * 1024
const HASH_PROTOCOL = '/webswarm/test-hash/1.0.0'
const PIPE_PROTOCOL = '/webswarm/test-pipe/1.0.0'

let relay: RelayNode
let relayAddr: Multiaddr
let a: WebSwarmNode
let b: WebSwarmNode

beforeAll(async () => {
  ({ relay, addr: relayAddr } = await startRelay())
  a = await startPeer(relayAddr)
  b = await startPeer(relayAddr)
  await connectDirect(a, b, relayAddr)
})

afterAll(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()])
  await relay?.stop()
})

describe('tensor streams over direct WebRTC', () => {
  it('moves a 64 MiB tensor a → b; b hashes it; the stream ran on the direct connection', async () => {
    const carriers: Connection[] = []
    await handle(b, HASH_PROTOCOL, async (req, ctx) => {
      carriers.push(ctx.connection, ...connectionsWithProtocol(a, b.peerId, HASH_PROTOCOL)) // both ends, while the stream is open
      const t = req.tensors[0]
      return { meta: { sha256: t === undefined ? null : await sha256Hex(t.data), shape: t?.shape ?? null }, tensors: [] }
    }, { maxMessageBytes: 64 * MiB })
    const data = patternBytes(64 * MiB, 42)
    const res = await call(a, b.peerId, HASH_PROTOCOL, { tensors: [{ name: 'w', dtype: 'f32', shape: [16 * MiB], data }] }, { timeoutMs: 110_000 })
    expect(res.meta).toEqual({ sha256: await sha256Hex(data), shape: [16 * MiB] })
    expect(carriers).toHaveLength(2)
    for (const c of carriers) {
      expect(isDirectWebRTC(c)).toBe(true)
      expect(c.limits).toBeUndefined()
    }
  })

  it('streams 32 × 256 KiB messages both ways with credit flow control', async () => {
    await handleStream(b, PIPE_PROTOCOL, async (ch) => {
      for await (const m of ch) await ch.send({ meta: m.meta, tensors: [{ ...m.tensors[0], data: m.tensors[0].data.map(v => v ^ 0xff) }] })
    })
    const ch = await openStream(a, b.peerId, PIPE_PROTOCOL, { windowMessages: 4 })
    const N = 32
    const sending = (async () => {
      for (let i = 0; i < N; i++) await ch.send({ meta: { i }, tensors: [{ name: 'x', dtype: 'u8', shape: [256 * 1024], data: patternBytes(256 * 1024, i + 1) }] })
      await ch.closeWrite()
    })()
    let i = 0
    for await (const m of ch) {
      expect(m.meta).toEqual({ i })
      expect(m.tensors[0].data).toEqual(patternBytes(256 * 1024, i + 1).map(v => v ^ 0xff))
      i++
    }
    await sending
    expect(i).toBe(N)
  })
})

describe('a peer killed mid-transfer', () => {
  let child: ChildProcess | undefined
  afterAll(() => { child?.kill('SIGKILL') })

  async function spawnPeer (): Promise<string> {
    child = spawn('node_modules/.bin/node', ['--import', 'tsx', 'test/net/stream-child.ts', relayAddr.toString()], { stdio: ['ignore', 'pipe', 'inherit'] })
    return await new Promise((resolve, reject) => {
      let out = ''
      child?.stdout?.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /READY (\S+)/.exec(out)
        if (m !== null) resolve(m[1])
      })
      child?.on('exit', (code) => { reject(new Error(`child exited ${code}`)) })
    })
  }

  it('the sender fails with a typed error within the idle timeout, no hang; the node keeps serving', async () => {
    const id = peerIdFromString(await spawnPeer())
    const conn = await connectDirect(a, id, relayAddr)
    expect(isDirectWebRTC(conn)).toBe(true)
    const idleTimeoutMs = 3000
    const ch = await openStream(a, id, SINK_PROTOCOL, { idleTimeoutMs })
    let sent = 0
    const sending = (async () => {
      const data = patternBytes(MiB, 7)
      for (;;) { await ch.send({ tensors: [{ name: 'x', dtype: 'u8', shape: [MiB], data }] }); sent++ }
    })().then(() => 'resolved', (e: Error) => e)
    while (sent < 8) await new Promise(resolve => setTimeout(resolve, 20)) // mid-transfer: several MiB through
    const killedAt = Date.now()
    child?.kill('SIGKILL')
    const err = await sending
    const after = Date.now() - killedAt
    expect([StreamTimeoutError, StreamEndedError].some(E => err instanceof E)).toBe(true)
    // No hang: the error comes once the idle timeout runs out (slack for a loaded machine's late timers).
    expect(after).toBeLessThan(idleTimeoutMs + 30_000)
    // the node keeps working with its other peer
    const back = await call(a, b.peerId, HASH_PROTOCOL, { tensors: [{ name: 'x', dtype: 'u8', shape: [3], data: new Uint8Array([1, 2, 3]) }] })
    expect(back.meta?.sha256).toBe(await sha256Hex(new Uint8Array([1, 2, 3])))
  })
})
