/**
 * Fuzzing every protocol handler of the tensor-stream layer: request/response (`handle`),
 * streaming (`handleStream`) and shards (`SHARD_PROTOCOL`). Thousands of random and mutated byte
 * sequences go to each handler over in-process libp2p stream pairs. A reference FrameDecoder run
 * on the same bytes says whether they form a valid exchange; the handler must then:
 *  - valid: run on exactly the decoded messages, no log line;
 *  - invalid: never see the bad message, reset the stream with one clear log line, keep serving;
 *  - and shards: leave the store untouched.
 * Seeded (FUZZ_SEED env to vary); counts are printed.
 */
import { describe, expect, it } from 'vitest'
import { SHARD_PROTOCOL, SHARD_REQUEST_LIMITS } from '../../web/src/net/protocols.ts'
import { answerShardRequest, chunkHash, MemoryShardStore } from '../../web/src/net/shard/index.ts'
import { encodeFrame, FrameType, writeCredit, writeStart } from '../../web/src/net/stream/codec.ts'
import { crc32 } from '../../web/src/net/stream/crc32.ts'
import { FrameDecoder } from '../../web/src/net/stream/decoder.ts'
import { resolveLimits } from '../../web/src/net/stream/framed.ts'
import { call, handle, handleStream, isPeerFault, type NamedTensor, type TensorMessage, type TensorStreamLimits } from '../../web/src/net/stream/index.ts'
import { memoryNetwork, type MemoryNode } from './stream-harness.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 20261123)
const CALL_CASES = 1500
const STREAM_CASES = 1000
const SHARD_CASES = 1000
const LOG_LINE = /^webswarm\/stream: reset \/webswarm\/\S+ stream \S+ from 12D3\w+: \w+Error: \S.*$/

class Rng {
  constructor (private s: number) {}
  u32 (): number { let x = this.s; x ^= x << 13; x ^= x >>> 17; x ^= x << 5; this.s = x >>> 0; return this.s }
  int (n: number): number { return this.u32() % n }
  pick<T> (a: readonly T[]): T { return a[this.int(a.length)] }
  bytes (n: number): Uint8Array { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff; return b }
}

const DTYPES = [['f32', 4], ['f16', 2], ['i32', 4], ['u32', 4], ['u8', 1], ['q8', 1]] as const

function randomMessage (r: Rng): TensorMessage {
  const tensors: NamedTensor[] = []
  for (let k = r.int(4); k > 0; k--) {
    const [dtype, size] = r.pick(DTYPES)
    const shape = Array.from({ length: r.int(4) }, () => r.int(6))
    const numel = shape.reduce((a, b) => a * b, 1)
    tensors.push({ name: `t${tensors.length}`, dtype, shape, data: r.bytes(numel * size + (dtype === 'q8' ? r.int(3) : 0)) })
  }
  return r.int(2) === 0 ? { tensors } : { meta: { k: r.int(100), s: 'x'.repeat(r.int(20)) }, tensors }
}

/** One frame: header + body, crc correct. */
const frame = (type: number, id: number, body: Uint8Array): Uint8Array => encodeFrame(type, id, body, crc32(body))

function messageFrames (id: number, m: TensorMessage, r: Rng): Uint8Array[] {
  const out = [frame(FrameType.START, id, writeStart(m))]
  const chunk = 1 + r.int(64)
  for (const t of m.tensors) for (let o = 0; o < t.data.byteLength; o += chunk) out.push(frame(FrameType.DATA, id, t.data.subarray(o, o + chunk)))
  return out
}

/** Mutates a list of frames: sometimes re-encoding a frame with a fixed crc so deeper checks run. */
function mutate (frames: Uint8Array[], r: Rng): Uint8Array {
  const f: Uint8Array[] = frames.map(x => x.slice())
  const op = r.int(10)
  const i = r.int(Math.max(1, f.length))
  if (f.length === 0) return r.bytes(r.int(64))
  switch (op) {
    case 0: { const b = f[i]; b[r.int(b.length)] ^= 1 << r.int(8); break } // bit flip (crc or header)
    case 1: { const b = f[i]; if (b.length > 16) { b[16 + r.int(b.length - 16)] = r.int(256); f[i] = reencode(b) } break } // body byte, crc fixed
    case 2: { const b = f[i]; b[r.pick([0, 1, 2, 3, 4, 5, 6, 7])] = r.int(256); break } // header field
    case 3: { f.splice(i, 1); break } // drop a frame
    case 4: { f.splice(i, 0, f[r.int(f.length)]); break } // duplicate a frame
    case 5: { const all = concat(f); return all.subarray(0, r.int(all.length + 1)) } // truncate
    case 6: { f.splice(i, 0, r.bytes(r.int(40))); break } // garbage between frames
    case 7: { f.splice(i, 0, frame(r.int(8), r.int(4), r.bytes(r.int(8)))); break } // random well-checksummed frame
    case 8: { const b = f[i]; new DataView(b.buffer).setUint32(8, r.pick([0, 1, 65535, 65537, 0xFFFFFFFF]), true); break } // length lies
    default: { f.splice(i, 0, frame(FrameType.CREDIT, 0, writeCredit(1 + r.int(3)))); break } // CREDIT where it may not belong
  }
  return concat(f)
}

function reencode (b: Uint8Array): Uint8Array {
  const body = b.subarray(16)
  const out = b.slice()
  new DataView(out.buffer).setUint32(8, body.byteLength, true)
  new DataView(out.buffer).setUint32(12, crc32(body), true)
  return out
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.byteLength }
  return out
}

interface Reference { messages: TensorMessage[], fault: boolean, remoteError: boolean, partial: boolean, ended: boolean }

/** What a correct receiver concludes from `bytes` (credits: `window` messages, streaming only). */
function reference (bytes: Uint8Array, limits: TensorStreamLimits, streaming: boolean, window: number): Reference {
  const res: Reference = { messages: [], fault: false, remoteError: false, partial: false, ended: false }
  let credit = window
  let granted = 0
  const l = resolveLimits(limits)
  const dec = new FrameDecoder({ ...l, maxMessages: streaming ? l.maxMessages : 1 }, {
    onMessage: (_id, m) => { res.messages.push(m) },
    onCredit: (k) => {
      granted += k
      if (!streaming || granted > l.maxMessages) throw Object.assign(new Error('credit'), { name: 'UnexpectedFrameError' })
    },
    onRemoteError: () => { res.remoteError = true },
    onEnd: () => { if (!streaming) throw Object.assign(new Error('end'), { name: 'UnexpectedFrameError' }); res.ended = true },
    onStart: streaming ? () => { if (credit-- <= 0) throw Object.assign(new Error('credit'), { name: 'UnexpectedFrameError' }) } : undefined
  })
  try {
    dec.push(bytes)
    res.partial = dec.partial
  } catch (err) {
    res.fault = isPeerFault(err) || (err as Error).name === 'UnexpectedFrameError'
    if (!res.fault) throw err
  }
  return res
}

/** Sends raw bytes on a fresh stream to `protocol` on `server`, closes, waits for the handler to finish. */
async function sendRaw (client: MemoryNode, server: MemoryNode, protocol: string, bytes: Uint8Array): Promise<void> {
  const s = await client.dialProtocol(server.peerId, protocol)
  if (bytes.byteLength > 0) s.send(bytes)
  await s.close().catch(() => {})
  await server.served.at(-1)
  if (s.status === 'open') s.abort(new Error('fuzz case done'))
}

describe('fuzz: malformed input to every handler', () => {
  it(`request/response handler: ${CALL_CASES} cases`, async () => {
    const [client, server] = await memoryNetwork(2)
    const r = new Rng(SEED)
    const lines: string[] = []
    const seen: TensorMessage[] = []
    const limits: TensorStreamLimits = { maxMessageBytes: 4096, maxTensors: 3, maxMetaBytes: 64, idleTimeoutMs: 500, log: l => lines.push(l) }
    await handle(server, '/webswarm/fuzz-call/1.0.0', async (req) => { seen.push(req); return { tensors: [] } }, limits)
    const stats = { valid: 0, faults: 0, remoteError: 0, empty: 0 }
    for (let n = 0; n < CALL_CASES; n++) {
      const base = messageFrames(1, randomMessage(r), r)
      const bytes = r.int(8) === 0 ? r.bytes(r.int(200)) : r.int(6) === 0 ? concat(base) : mutate(base, r)
      const ref = reference(bytes, limits, false, 0)
      const before = { lines: lines.length, seen: seen.length }
      await sendRaw(client, server, '/webswarm/fuzz-call/1.0.0', bytes)
      const valid = !ref.fault && !ref.remoteError && !ref.partial && ref.messages.length === 1
      if (valid) {
        stats.valid++
        expect(seen.length - before.seen).toBe(1)
        expect(seen.at(-1)).toEqual(ref.messages[0])
        expect(lines.length).toBe(before.lines)
      } else {
        expect(seen.length, `case ${n}: handler ran on invalid input`).toBe(before.seen)
        if (ref.fault || ref.partial) {
          stats.faults++
          expect(lines.length - before.lines, `case ${n}: one log line per reset`).toBe(1)
          expect(lines.at(-1)).toMatch(LOG_LINE)
        } else if (ref.remoteError) stats.remoteError++
        else stats.empty++
      }
    }
    console.log('fuzz call', stats)
    expect(stats.faults).toBeGreaterThan(CALL_CASES / 2)
    expect(stats.valid).toBeGreaterThan(50)
    // still serving
    expect(await call(client, server.peerId, '/webswarm/fuzz-call/1.0.0', { tensors: [] })).toEqual({ tensors: [] })
  })

  it(`streaming handler: ${STREAM_CASES} cases`, async () => {
    const [client, server] = await memoryNetwork(2)
    const r = new Rng(SEED + 1)
    const lines: string[] = []
    const WINDOW = 4
    const limits: TensorStreamLimits = { maxMessageBytes: 4096, maxTensors: 3, maxMetaBytes: 64, idleTimeoutMs: 500, windowMessages: WINDOW, log: l => lines.push(l) }
    let got: TensorMessage[] = []
    await handleStream(server, '/webswarm/fuzz-stream/1.0.0', async (ch) => { for await (const m of ch) got.push(m) }, limits)
    const stats = { valid: 0, faults: 0, other: 0 }
    for (let n = 0; n < STREAM_CASES; n++) {
      const frames: Uint8Array[] = [frame(FrameType.CREDIT, 0, writeCredit(WINDOW))]
      for (let id = 1, k = r.int(WINDOW + 1); id <= k; id++) frames.push(...messageFrames(id, randomMessage(r), r))
      frames.push(frame(FrameType.END, 0, new Uint8Array(0)))
      const bytes = r.int(8) === 0 ? r.bytes(r.int(200)) : r.int(5) === 0 ? concat(frames) : mutate(frames, r)
      const ref = reference(bytes, limits, true, WINDOW)
      got = []
      const before = lines.length
      await sendRaw(client, server, '/webswarm/fuzz-stream/1.0.0', bytes)
      // whatever the handler consumed is a prefix of what a correct receiver decodes
      expect(got).toEqual(ref.messages.slice(0, got.length))
      if (!ref.fault && !ref.partial && !ref.remoteError && ref.ended) {
        stats.valid++
        expect(got.length, `case ${n}: ${lines.slice(before).join(' | ')}`).toBe(ref.messages.length)
        expect(got).toEqual(ref.messages)
        expect(lines.length).toBe(before)
      } else if (ref.fault || ref.partial || !ref.ended) {
        stats.faults++
        if (!ref.remoteError) {
          expect(lines.length - before, `case ${n}`).toBe(1)
          expect(lines.at(-1)).toMatch(LOG_LINE)
        }
      } else stats.other++
    }
    console.log('fuzz stream', stats)
    expect(stats.faults).toBeGreaterThan(STREAM_CASES / 2)
    expect(stats.valid).toBeGreaterThan(50)
  })

  it(`shard handler: ${SHARD_CASES} cases, store unchanged`, async () => {
    const [client, server] = await memoryNetwork(2)
    const r = new Rng(SEED + 2)
    const store = new MemoryShardStore()
    const root = await store.addFile(r.bytes(5000), 1024)
    const m = store.getManifest(root)
    if (m === undefined) throw new Error('manifest missing')
    const snapshot = (): string => JSON.stringify([root, store.assemble(root)?.reduce((a, b) => (a * 31 + b) >>> 0, 7)])
    const before0 = snapshot()
    const lines: string[] = []
    let answered = 0
    await handle(server, SHARD_PROTOCOL, async (req) => { answered++; return await answerShardRequest(store, req) }, { ...SHARD_REQUEST_LIMITS, idleTimeoutMs: 500, log: l => lines.push(l) })
    const metas: Array<Record<string, string>> = [{ op: 'manifest', root }, { op: 'chunk', hash: chunkHash(m, 2) }, { op: 'chunk', hash: 'z' }, { op: 'nope' }, {}]
    let valid = 0
    for (let n = 0; n < SHARD_CASES; n++) {
      const req: TensorMessage = { meta: r.pick(metas), tensors: [] }
      const base = messageFrames(1, req, r)
      const bytes = r.int(4) === 0 ? concat(base) : mutate(base, r)
      const ref = reference(bytes, SHARD_REQUEST_LIMITS, false, 0)
      const before = answered
      await sendRaw(client, server, SHARD_PROTOCOL, bytes)
      const ok = !ref.fault && !ref.remoteError && !ref.partial && ref.messages.length === 1
      if (ok) valid++
      expect(answered - before, `case ${n}`).toBe(ok ? 1 : 0)
    }
    console.log('fuzz shard', { valid, resets: lines.length })
    expect(snapshot()).toBe(before0)
    expect(lines.every(l => LOG_LINE.test(l))).toBe(true)
    expect(valid).toBeGreaterThan(50)
    const res = await call(client, server.peerId, SHARD_PROTOCOL, { meta: { op: 'manifest', root }, tensors: [] })
    expect(res.tensors[0].data).toEqual(m.hashes)
  })
})
