/**
 * The swarm on the real model (tiny-mixtral fixture, CPU twins) over the seeded in-process
 * network: greedy tokens equal PyTorch's through sharded servers, after a server dies mid-way,
 * and with one MoE layer's experts split over two peers.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../../web/src/model/source.ts'
import type { ModelConfig } from '../../web/src/model/config.ts'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../../web/src/swarm/client/generate.ts'
import type { InferenceSession } from '../../web/src/swarm/client/session.ts'
import { loadClientEnds, loadExpertRunner, loadSpanBackend } from '../../web/src/swarm/model-backend.ts'
import { ExpertHost } from '../../web/src/swarm/moe/expert-host.ts'
import { RemoteExperts } from '../../web/src/swarm/moe/remote-experts.ts'
import { CoSelectionStats } from '../../web/src/swarm/moe/coselection.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'

const DIR = 'test/fixtures/tiny-mixtral'
const ref = JSON.parse(readFileSync(`${DIR}/reference.json`, 'utf8')) as { prompt: number[], greedy: number[] }
const MODEL = 'tiny-mixtral'
const source = sourceFrom(DIR)

let ends: ClientEnds
let config: ModelConfig
const roles: ServerRole[] = []

beforeAll(async () => {
  const e = await loadClientEnds(source, cpu)
  ends = e.ends
  config = e.config
})
afterAll(async () => { for (const r of roles.splice(0)) await r.stop() })

async function serve (net: MemoryNetwork, dir: MemoryDirectory, peer: string, start: number, end: number, opts: Parameters<typeof loadSpanBackend>[5] = {}): Promise<ServerRole> {
  const role = new ServerRole({
    transport: net.endpoint(peer), directory: dir, model: MODEL, numBlocks: config.numLayers, span: { start, end },
    loadSpan: async (s, e) => await loadSpanBackend(source, cpu, MODEL, s, e, opts), cacheBudgetBytes: 1 << 20, throughput: 100
  })
  await role.start()
  roles.push(role)
  return role
}

function client (net: MemoryNetwork, dir: MemoryDirectory, id = 'client'): InferenceClient {
  return new InferenceClient({ transport: net.endpoint(id), directory: dir, model: MODEL, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, timeoutMs: 5000 })
}

describe('tiny-mixtral through the swarm (CPU twins, seeded network)', () => {
  it('greedy tokens through one server per block equal the fixture', async () => {
    const net = new MemoryNetwork({ seed: 1 })
    const dir = new MemoryDirectory()
    await serve(net, dir, 's0', 0, 1)
    await serve(net, dir, 's1', 1, 2)
    const r = await swarmGenerate(client(net, dir), ends, ref.prompt, { maxNewTokens: ref.greedy.length })
    expect(r.tokens).toEqual(ref.greedy)
    expect(r.session.route).toEqual([{ peer: 's0', start: 0, end: 1 }, { peer: 's1', start: 1, end: 2 }])
  })

  it('a server killed mid-generation while a spare covers its block: identical tokens', async () => {
    const net = new MemoryNetwork({ seed: 2 })
    const dir = new MemoryDirectory()
    await serve(net, dir, 's0', 0, 1)
    await serve(net, dir, 's1', 1, 2)
    const c = client(net, dir)
    await c.measureRtts(['s0', 's1'])
    await serve(net, dir, 'spare', 0, 2)
    c.rttMs.set('spare', 1e4) // far away: used only when needed
    let session: InferenceSession | undefined
    let n = 0
    const r = await swarmGenerate(c, ends, ref.prompt, {
      maxNewTokens: ref.greedy.length,
      onSession: s => { session = s },
      onToken: () => { if (++n === 5) net.kill('s1') }
    })
    expect(r.tokens).toEqual(ref.greedy)
    expect(session!.failovers.map(f => f.peer)).toEqual(['s1'])
    expect(session!.failovers[0].replayed).toBe(ref.prompt.length + 4)
    expect(session!.route.map(s => s.peer)).toEqual(['s0', 'spare'])
  })

  it('the experts of MoE layer 1 split over 2 peers: identical tokens, co-selection counted', async () => {
    const net = new MemoryNetwork({ seed: 3 })
    const dir = new MemoryDirectory()
    const groups = [[0, 1], [2, 3]]
    for (const [i, experts] of groups.entries()) {
      const peer = `x${i}`
      const runner = await loadExpertRunner(source, cpu, MODEL, new Map([[1, new Set(experts)]]))
      new ExpertHost({ transport: net.endpoint(peer), runner, log: () => {} }).start()
      await dir.announceExperts({ peer, model: MODEL, layer: 1, experts, throughput: 1, version: 1, expiresAt: Date.now() + 60_000 })
    }
    const stats = new CoSelectionStats(1, config.numExperts)
    let remote: RemoteExperts | undefined
    await serve(net, dir, 's0', 0, 1)
    const role = new ServerRole({
      transport: net.endpoint('s1'), directory: dir, model: MODEL, numBlocks: config.numLayers, span: { start: 1, end: 2 },
      loadSpan: async (s, e) => {
        remote = new RemoteExperts({ transport: net.endpoint('s1-moe'), directory: dir, model: MODEL, hiddenSize: config.hiddenSize, numExperts: config.numExperts })
        return await loadSpanBackend(source, cpu, MODEL, s, e, { remoteExperts: { layers: new Set([1]), experts: remote }, coselection: stats })
      },
      cacheBudgetBytes: 1 << 20
    })
    await role.start()
    roles.push(role)
    const r = await swarmGenerate(client(net, dir), ends, ref.prompt, { maxNewTokens: ref.greedy.length })
    expect(r.tokens).toEqual(ref.greedy)
    // Prefill + each decode step: at most one call per expert host per step.
    expect(remote!.stats.calls).toBeGreaterThan(0)
    expect(remote!.stats.calls).toBeLessThanOrEqual(2 * ref.greedy.length)
    expect(stats.tokens).toBe(ref.prompt.length + ref.greedy.length - 1)
    const picks = Array.from({ length: config.numExperts }, (_, e) => stats.pairs[0][e * config.numExperts + e])
    expect(picks.reduce((a, b) => a + b, 0)).toBe(stats.tokens * config.expertsPerToken)
  })
})
