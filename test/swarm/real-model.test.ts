/**
 * A quantized GGUF served through the swarm the way a newcomer would: the relay hosts it
 * (`--models-dir`), two `webswarm serve --model URL` processes take a block each, and
 * `webswarm generate --bootstrap … --model URL` gets the same greedy tokens as the whole model
 * run in one process. Also: a block server reads only its blocks' bytes, a client only the
 * embedding and head (ranges counted on the wire).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import * as fs from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runTs, type TsRun } from '../helpers/spawn-ts.ts'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { generate } from '../../web/src/model/generate.ts'
import { readGgufHeader, type GgufTensorInfo } from '../../web/src/model/gguf/read.ts'
import { loadBlocks, loadModel } from '../../web/src/model/model.ts'
import { urlSource, withFile } from '../../web/src/model/source.ts'
import { loadClientEnds } from '../../web/src/swarm/model-backend.ts'
import { q4kmMix, writeRandomLlamaGguf, type LlamaShape } from '../../bench/real-model.ts'

/** A child announces / finishes within this, ms (tsx start-up, libp2p, DHT put on 2 shared cores). */
const READY_MS = 90_000
const FILE = 'tiny-q4km.gguf'
/** 4 layers of K-quant rows (hidden 256 = one Q4_K block per row), big enough that the header is a small part. */
const SHAPE: LlamaShape = { name: 'tiny', layers: 4, hidden: 256, ffn: 1024, heads: 4, kvHeads: 2, vocab: 2000, experts: 0, expertsPerToken: 0, ropeTheta: 10000, rmsEps: 1e-5, context: 512 }
const PROMPT = [5, 900, 31, 1500, 77]
const NEW_TOKENS = 6

let relay: RelayHandle
let dir: string
let url: string
const children: ChildProcess[] = []

beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'webswarm-real-'))
  await fs.mkdir(join(dir, 'models'))
  await writeRandomLlamaGguf(join(dir, 'models', FILE), SHAPE, q4kmMix(SHAPE.layers), 3)
  relay = await startRelay({ ...parseConfig(['--port', '0', '--ice-server', 'none'], {})!, dataDir: join(dir, 'data'), staticDir: dir, modelsDir: join(dir, 'models') }, () => {})
  url = `${relay.httpUrl}/models/${FILE}`
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await relay?.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

function run (args: string[]): TsRun {
  const r = runTs('web/src/cli/bin.ts', [...args, '--ice-servers', 'none', '--device', 'cpu'], READY_MS)
  children.push(r.child)
  return r
}

/** A source for the relay's file that records every byte range read. */
function countingSource (): { source: ReturnType<typeof withFile>, ranges: Array<[number, number]> } {
  const ranges: Array<[number, number]> = []
  const counting: typeof fetch = async (input, init) => {
    const r = new Headers(init?.headers).get('range')
    const m = r === null ? null : /^bytes=(\d+)-(\d+)$/.exec(r)
    if (m !== null) ranges.push([Number(m[1]), Number(m[2]) + 1])
    return await fetch(input, init)
  }
  return { source: withFile(urlSource(`${relay.httpUrl}/models`, counting), FILE), ranges }
}

/** Every range after the header lies inside a tensor `wanted` picks, and every wanted tensor is covered. */
function expectOnly (ranges: ReadonlyArray<[number, number]>, tensors: Iterable<GgufTensorInfo>, dataStart: number, wanted: (name: string) => boolean): void {
  const data = ranges.filter(([a]) => a >= dataStart)
  const all = [...tensors]
  for (const [a, b] of data) {
    const inside = all.filter(t => t.offset < b && a < t.offset + t.bytes)
    expect(inside.length, `range ${a}-${b}`).toBeGreaterThan(0)
    for (const t of inside) expect(wanted(t.name), `range ${a}-${b} reads ${t.name}`).toBe(true)
  }
  for (const t of all.filter(t => wanted(t.name))) {
    expect(data.some(([a, b]) => a <= t.offset && t.offset + t.bytes <= b), `${t.name} read`).toBe(true)
  }
}

describe('a GGUF hosted by the relay', () => {
  it('a block server reads only its blocks\' bytes, a client only the embedding and head', async () => {
    const h = await readGgufHeader(withFile(urlSource(`${relay.httpUrl}/models`), FILE), FILE)
    const block = countingSource()
    const span = await loadBlocks(block.source, cpu, { start: 1, end: 3 })
    expectOnly(block.ranges, h.tensors.values(), h.dataStart, n => /^blk\.[12]\./.test(n))
    for (const t of span.params.values()) t.dispose()
    const client = countingSource()
    const { lm } = await loadClientEnds(client.source, cpu)
    // Tied head (no output.weight): token_embd serves both ends.
    expectOnly(client.ranges, h.tensors.values(), h.dataStart, n => n === 'token_embd.weight' || n === 'output_norm.weight')
    lm.dispose()
    const listing = await (await fetch(`${relay.httpUrl}/models`)).json() as { models: Array<{ name: string, format: string }> }
    expect(listing.models).toContainEqual(expect.objectContaining({ name: FILE, format: 'gguf' }))
  })

  it('two serve processes and a client process produce the one-process greedy tokens', async () => {
    const model = await loadModel(url, cpu)
    const want = await generate(model, PROMPT, { maxNewTokens: NEW_TOKENS, stopTokens: [] })
    model.dispose()
    expect(want).toHaveLength(NEW_TOKENS)

    const servers = [run(['serve', '--model', url, '--bootstrap', relay.httpUrl, '--blocks', '0:2']), run(['serve', '--model', url, '--bootstrap', relay.httpUrl, '--blocks', '2:4'])]
    for (const line of await Promise.all(servers.map(s => s.firstLine))) expect(JSON.parse(line.trim())).toMatchObject({ model: FILE })
    const outFile = join(mkdtempSync(join(tmpdir(), 'ws-gen-')), 'out.json')
    const gen = run(['generate', '--bootstrap', relay.httpUrl, '--model', url, '--tokens', PROMPT.join(','), '--max-new-tokens', String(NEW_TOKENS), '--out', outFile])
    const code = await Promise.race([gen.code, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`generate did not finish in ${READY_MS} ms; stderr: ${gen.stderr()}; servers: ${servers.map(s => s.stderr()).join(' | ')}`)), READY_MS))])
    expect(code, gen.stderr()).toBe(0)
    const got = (JSON.parse(readFileSync(outFile, 'utf8')) as { tokens: number[] }).tokens
    // Random weights may hit the vocabulary's EOS: then the swarm stops there, as the model would.
    expect(got).toEqual(want.slice(0, got.length))
    expect(got.length).toBeGreaterThan(0)
    for (const s of servers) s.child.kill('SIGTERM')
    expect(await Promise.all(servers.map(s => s.code))).toEqual([0, 0])
  }, 3 * READY_MS)

  it('serve refuses a span over --max-gpu-memory before joining, naming the numbers', async () => {
    const s = run(['serve', '--model', url, '--bootstrap', relay.httpUrl, '--blocks', '0:4', '--max-gpu-memory', '1MB', '--cache-tokens', '256'])
    expect(await s.code).toBe(1)
    expect(s.stderr()).toMatch(/^webswarm: span 0:4 needs [\d.]+ MB weights \+ [\d.]+ MB KV for 1 session × 256 \+ [\d.]+ MB scratch = [\d.]+ MB; budget 1\.00 MB\n$/)
  }, READY_MS)
})
