/**
 * The CLI end to end: a relay, two `webswarm serve` processes (one block of tiny-mixtral each)
 * and `webswarm generate --bootstrap`: the tokens written to --out equal the fixture's greedy.
 * Then MoE experts placed by the scheduler (`serve --experts auto`): two expert peers join one by
 * one and split layer 1's experts, a block server routes through them, the tokens still equal
 * the fixture's; every serve process mirrors what it serves into the swarm CRDT (the page reads it).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runTs, type TsRun } from '../helpers/spawn-ts.ts'
import { CrdtSync } from '../../web/src/net/crdt/sync.ts'
import { SwarmDoc } from '../../web/src/net/crdt/swarm-doc.ts'
import { joinSwarm, type Swarm } from '../../web/src/net/index.ts'
import { createRelay, type RelayNode, type WebSwarmNode } from '../../web/src/net/node.ts'
import { parseSummary } from '../../web/src/swarm/moe/summary.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
/**
 * Watchdog on each child process's milestone (first output line, a finished generate, an entry in
 * the CRDT), ms. Child processes run on real time, so this only has to stay far beyond any load:
 * idle, a serve process announces in ~5 s; on the 2-core machine next to two CPU burners and other
 * jobs, 60 s was not enough (tsx start-up, libp2p, DHT put). It reports what the child printed.
 */
const READY_MS = 240_000
/** Per test: several milestones in a row. */
const TEST_MS = 600_000

let relay: RelayNode
let relaySync: CrdtSync
let addr: string
let observer: Swarm | undefined
const children: ChildProcess[] = []

function run (args: string[]): TsRun & { out: Promise<string> } {
  // loopback: host candidates are enough, and no STUN server is reachable from CI
  const r = runTs('web/src/cli/bin.ts', [...args, '--ice-servers', 'none'], READY_MS)
  children.push(r.child)
  return { ...r, out: r.firstLine }
}

beforeAll(async () => {
  relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  // The relay keeps the swarm doc too (as relay/ does), so entries reach peers with no direct link.
  relaySync = new CrdtSync(relay as unknown as WebSwarmNode, new SwarmDoc('default', relay.peerId.toString()), { log: () => {} })
  await relaySync.start()
  addr = relay.getMultiaddrs()[0].toString()
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await observer?.stop()
  await relaySync?.stop()
  await relay?.stop()
})

/** Polls `check` until it returns a value (not undefined), or fails after `ms` with `what`. */
async function until<T> (what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const t0 = Date.now()
  for (;;) {
    const v = await check()
    if (v !== undefined) return v
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

describe('webswarm serve + generate --bootstrap', { timeout: TEST_MS }, () => {
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

  it('a dense model: serve with no span or expert flags takes all blocks; generate gets the fixture tokens', async () => {
    const dense = 'test/fixtures/tiny-llama'
    const denseRef = JSON.parse(readFileSync(join(dense, 'reference.json'), 'utf8')) as { prompt: number[], greedy: number[] }
    const server = run(['serve', '--model', dense, '--bootstrap', addr, '--device', 'cpu'])
    expect(JSON.parse((await server.out).trim())).toMatchObject({ model: 'tiny-llama' })
    const outFile = join(mkdtempSync(join(tmpdir(), 'ws-gen-')), 'out.json')
    const gen = run(['generate', '--bootstrap', addr, '--model', dense, '--tokens', denseRef.prompt.join(','), '--max-new-tokens', String(denseRef.greedy.length), '--device', 'cpu', '--out', outFile])
    const code = await Promise.race([gen.code, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`generate did not finish in ${READY_MS} ms; stderr: ${gen.stderr()}; server: ${server.stderr()}`)), READY_MS))])
    expect(code, gen.stderr()).toBe(0)
    expect(JSON.parse(readFileSync(outFile, 'utf8')).tokens).toEqual(denseRef.greedy)
    server.child.kill('SIGTERM')
    expect(await server.code).toBe(0)
  })

  it('experts placed by the scheduler (--experts auto) on two peers: identical tokens; servers appear in the CRDT', async () => {
    // The page's view: a peer that reads the peers map.
    observer = await joinSwarm({ bootstrap: [addr], persist: false, iceServers: [], log: () => {} })
    const auto = ['serve', '--model', DIR, '--bootstrap', addr, '--experts', 'auto', '--expert-layers', '1', '--expert-slots', '2', '--device', 'cpu']
    // Block server: both blocks, layer 1's experts on the swarm. Expert peers join one by one
    // (the second sees the first's records); a re-check would fix a simultaneous join.
    const blocks = run(['serve', '--model', DIR, '--bootstrap', addr, '--blocks', '0:2', '--remote-experts', '1', '--device', 'cpu'])
    const a = run(auto)
    const peerA = JSON.parse((await a.out).trim()).peer as string
    const b = run(auto)
    const peerB = JSON.parse((await b.out).trim()).peer as string
    const peerS = JSON.parse((await blocks.out).trim()).peer as string
    const hosted = await until('both expert peers in the CRDT', READY_MS, async () => {
      const peers = await observer!.doc.peers()
      const h = [peerA, peerB].map(p => (peers.get(p)?.data.experts as { hosted?: string, state?: string } | undefined))
      return h.every(x => x?.state === 'online') ? h.map(x => x!.hosted!) : undefined
    })
    // Each took 2 of layer 1's 4 experts; together all 4.
    const experts = hosted.map(x => { expect(x).toMatch(/^1:\d,\d$/); return x.slice(2).split(',').map(Number) })
    expect(experts.flat().sort()).toEqual([0, 1, 2, 3])
    const serving = await until('the block server in the CRDT', READY_MS, async () => (await observer!.doc.peers()).get(peerS)?.data.serving as Record<string, unknown> | undefined)
    expect(serving).toMatchObject({ model: 'tiny-mixtral', start: 0, end: 2, state: 'online' })
    expect((await observer.doc.peers()).get(peerA)?.data.agent).toBe('node')

    const outFile = join(mkdtempSync(join(tmpdir(), 'ws-gen-')), 'out.json')
    const gen = run(['generate', '--bootstrap', addr, '--model', DIR, '--tokens', ref.prompt.join(','), '--max-new-tokens', String(ref.greedy.length), '--device', 'cpu', '--out', outFile])
    const code = await Promise.race([gen.code, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`generate did not finish in ${READY_MS} ms; stderr: ${gen.stderr()}; servers: ${[blocks, a, b].map(s => s.stderr()).join(' | ')}`)), READY_MS))])
    expect(code, gen.stderr()).toBe(0)
    expect(JSON.parse(readFileSync(outFile, 'utf8')).tokens).toEqual(ref.greedy)
    // An expert call may have timed out and been re-requested (each expert has one host): the
    // first call to a host waits for a WebRTC link through the relay, which on a loaded machine
    // took longer than EXPERT_TIMEOUT_MS (fresh-clone CI, session 10). The tokens above are what
    // must not change; test/swarm/moe.test.ts covers the ban and re-request.

    // The block server counted its router's choices and published a summary the placement reads.
    // Summaries are republished as tokens are counted: wait for one that covers the whole generation
    // (a loaded machine can show an earlier one first).
    const parsed = await until('a co-selection summary of the whole generation in the CRDT', READY_MS, async () => {
      const s = (await observer!.doc.peers()).get(peerS)?.data.coselection
      if (s === undefined) return undefined
      const p = parseSummary(s, 2, 4)
      return p.tokens >= ref.greedy.length ? p : undefined
    })
    expect(parsed.model).toBe('tiny-mixtral')
    expect(parsed.tokens).toBeGreaterThanOrEqual(ref.greedy.length)
    expect(parsed.layers.map(l => l.layer)).toEqual([0, 1])

    for (const s of [blocks, a, b]) s.child.kill('SIGTERM')
    expect(await Promise.all([blocks, a, b].map(s => s.code))).toEqual([0, 0, 0])
  }, 4 * READY_MS)
})
