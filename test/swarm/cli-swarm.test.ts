/**
 * The CLI end to end: a relay, two `webswarm serve` processes (one block of tiny-mixtral each)
 * and `webswarm generate --bootstrap`: the tokens written to --out equal the fixture's greedy.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRelay, type RelayNode } from '../../web/src/net/node.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
const TSX = 'node_modules/.bin/tsx'
/** A `serve` process announces within this, ms (tsx start-up, libp2p, DHT put on 2 cores). */
const READY_MS = 60_000

let relay: RelayNode
let addr: string
const children: ChildProcess[] = []

function run (args: string[]): { child: ChildProcess, out: Promise<string>, code: Promise<number | null>, stderr: () => string, stdout: () => string } {
  const child = spawn(TSX, ['web/src/cli/bin.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  const code = new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  const firstLine = new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no output from ${args[0]} in ${READY_MS} ms; stderr: ${err}`)), READY_MS)
    child.stdout!.on('data', () => { if (out.includes('\n')) { clearTimeout(t); resolve(out) } })
    child.on('exit', c => { clearTimeout(t); reject(new Error(`${args[0]} exited ${c}: ${err}`)) })
  })
  return { child, out: firstLine, code, stderr: () => err, stdout: () => out }
}

beforeAll(async () => {
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  addr = relay.getMultiaddrs()[0].toString()
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await relay?.stop()
})

describe('webswarm serve + generate --bootstrap', () => {
  it('two serve processes and a client process produce the fixture greedy tokens', async () => {
    const servers = [run(['serve', '--model', DIR, '--bootstrap', addr, '--blocks', '0:1', '--device', 'cpu']), run(['serve', '--model', DIR, '--bootstrap', addr, '--blocks', '1:2', '--device', 'cpu'])]
    const ready = await Promise.all(servers.map(s => s.out))
    for (const line of ready) expect(JSON.parse(line.trim())).toMatchObject({ model: 'tiny-mixtral' })
    const outFile = join(mkdtempSync(join(tmpdir(), 'ws-gen-')), 'out.json')
    const gen = run(['generate', '--bootstrap', addr, '--model', DIR, '--tokens', ref.prompt.join(','), '--max-new-tokens', String(ref.greedy.length), '--device', 'cpu', '--out', outFile])
    const code = await Promise.race([gen.code, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`generate did not finish in ${READY_MS} ms; stdout: ${gen.stdout()}; stderr: ${gen.stderr()}; servers: ${servers.map(s => s.stderr()).join(' | ')}`)), READY_MS))])
    expect(code, gen.stderr()).toBe(0)
    expect(JSON.parse(readFileSync(outFile, 'utf8')).tokens).toEqual(ref.greedy)
    for (const s of servers) s.child.kill('SIGTERM')
    expect(await Promise.all(servers.map(s => s.code))).toEqual([0, 0])
  })
})
