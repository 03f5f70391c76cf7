import { afterEach, describe, expect, it } from 'vitest'
import type { BlockRecord } from '../../web/src/swarm/records.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import { ServerRole, type ServerRoleOptions } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import { ManualClock } from '../../web/src/util/clock.ts'
import { BLOCKS, FakeSpanBackend } from './fakes.ts'

/**
 * The block server role's periodic work (re-announcing its record, checking whether to move) runs
 * on its injected Clock: a ManualClock decides when each period ends, whatever the machine's load.
 */
const roles: ServerRole[] = []
afterEach(async () => { for (const r of roles.splice(0)) await r.stop() })

/** Lets the role's async work (directory reads, span loads) run: it waits on promises, not on time. */
async function settle (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>(resolve => setImmediate(resolve))
}

async function role (net: MemoryNetwork, dir: MemoryDirectory, clock: ManualClock, peer: string, o: Partial<ServerRoleOptions>): Promise<ServerRole> {
  const r = new ServerRole({
    transport: net.endpoint(peer), directory: dir, model: 'fake', numBlocks: BLOCKS, numServed: 2,
    loadSpan: async (s, e) => new FakeSpanBackend('fake', s, e), cacheBudgetBytes: 1 << 20,
    clock, now: clock.now, ...o
  })
  await r.start()
  roles.push(r)
  return r
}

describe('ServerRole timers on the injected clock', () => {
  it('re-announces its record once per refresh period, with a lifetime from the clock, and stops when stopped', async () => {
    const clock = new ManualClock(1_000)
    const announced: BlockRecord[] = []
    const r = await role(new MemoryNetwork({ seed: 1 }), new MemoryDirectory(clock.now), clock, 'a', { span: { start: 0, end: 3 }, refreshMs: 500, ttlMs: 2_000, onAnnounce: rec => announced.push(rec) })
    expect(announced.map(a => a.state)).toEqual(['joining', 'online'])
    clock.advance(499)
    await settle()
    expect(announced).toHaveLength(2)
    clock.advance(1)
    await settle()
    expect(announced).toHaveLength(3)
    expect(announced[2]).toMatchObject({ state: 'online', expiresAt: 1_500 + 2_000 })
    clock.advance(1_000)
    await settle()
    expect(announced).toHaveLength(5)
    roles.splice(0)
    await r.stop()
    expect(announced.at(-1)?.state).toBe('offline')
    const n = announced.length
    clock.advance(10_000)
    await settle()
    expect(announced).toHaveLength(n)
    expect(clock.pending).toBe(0) // the refresher and the block server's sweeper are gone
  })

  it('checks for a better span once per rebalance period and moves onto the weakest span', async () => {
    const clock = new ManualClock()
    const net = new MemoryNetwork({ seed: 5 })
    const dir = new MemoryDirectory(clock.now)
    // d chooses first (nothing served: [0, 2)); then a and b cover [0, 4) fast and c [4, 6) slowly.
    const d = await role(net, dir, clock, 'd', { throughput: 100, rebalanceMs: 1_000 })
    expect(d.currentSpan).toEqual({ start: 0, end: 2 })
    await role(net, dir, clock, 'a', { throughput: 100, span: { start: 0, end: 2 } })
    await role(net, dir, clock, 'b', { throughput: 100, span: { start: 2, end: 4 } })
    await role(net, dir, clock, 'c', { throughput: 5, span: { start: 4, end: 6 } })
    clock.advance(999)
    await settle()
    expect(d.moves).toEqual([])
    clock.advance(1)
    await settle()
    expect(d.moves).toHaveLength(1)
    expect(d.currentSpan).toEqual({ start: 4, end: 6 })
    clock.advance(1_000)
    await settle()
    expect(d.moves).toHaveLength(1) // settled: the next check keeps it there
  })
})
