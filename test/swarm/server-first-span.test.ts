import { afterEach, describe, expect, it } from 'vitest'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { BLOCKS, FakeSpanBackend } from './fakes.ts'

/** ServerRole.firstSpan: a span the caller chose (the page's role chooser) that may still move. */
describe('ServerRole firstSpan', () => {
  const roles: ServerRole[] = []
  afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

  const mk = (net: MemoryNetwork, dir: MemoryDirectory, peer: string, throughput: number, opts: { firstSpan?: { start: number, end: number } } = {}): ServerRole => {
    const r = new ServerRole({ transport: net.endpoint(peer), directory: dir, model: 'fake', numBlocks: BLOCKS, numServed: 2, loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e), cacheBudgetBytes: 1 << 20, throughput, ...opts })
    roles.push(r)
    return r
  }

  it('starts on the given blocks instead of choosing, and still rebalances off them', async () => {
    const net = new MemoryNetwork({ seed: 7 })
    const dir = new MemoryDirectory()
    for (const [p, tp] of [['a', 100], ['b', 100], ['c', 5]] as const) await mk(net, dir, p, tp).start()
    expect(roles.map(r => r.currentSpan)).toEqual([{ start: 0, end: 2 }, { start: 2, end: 4 }, { start: 4, end: 6 }])
    // Choosing would take the weakest span [4, 6); the caller's [0, 2) is where it starts.
    const d = mk(net, dir, 'd', 100, { firstSpan: { start: 0, end: 2 } })
    await d.start()
    expect(d.currentSpan).toEqual({ start: 0, end: 2 })
    expect(await d.rebalanceOnce()).toBe(true)
    expect(d.currentSpan).toEqual({ start: 4, end: 6 })
  })

  it('refuses a first span outside the model', async () => {
    const r = mk(new MemoryNetwork({ seed: 8 }), new MemoryDirectory(), 'e', 1, { firstSpan: { start: 4, end: BLOCKS + 1 } })
    await expect(r.start()).rejects.toThrow(SwarmArgumentError)
  })
})

describe('ServerRole servingEntry (the swarm-doc `serving` field the page map reads)', () => {
  it('leaves throughput out until a step is measured; the announced record keeps its starting guess for routing', async () => {
    const seen: Array<{ record: number, entry: unknown }> = []
    const role: ServerRole = new ServerRole({
      transport: new MemoryNetwork({ seed: 9 }).endpoint('p'),
      directory: new MemoryDirectory(),
      model: 'fake',
      numBlocks: BLOCKS,
      span: { start: 0, end: 1 },
      loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e),
      cacheBudgetBytes: 1 << 20,
      onAnnounce: r => { seen.push({ record: r.throughput, entry: role.servingEntry() }) }
    })
    await role.start()
    try {
      expect(seen).toEqual([
        { record: 1, entry: { model: 'fake', start: 0, end: 1, state: 'joining' } },
        { record: 1, entry: { model: 'fake', start: 0, end: 1, state: 'online' } }
      ])
      expect(Object.keys(role.servingEntry()!)).not.toContain('throughput')
    } finally {
      await role.stop()
    }
  })
})
